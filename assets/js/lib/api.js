// The JSON API as the pages use it: same-origin requests with the session cookie, the CSRF
// token on every write, and errors turned into one message a person can read.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `The server answered ${status}.`);
    this.status = status;
    this.body = body;
  }
}

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

function withParams(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
  }
  return url;
}

async function send(method, path, { params, body, signal } = {}) {
  const headers = { Accept: "application/json" };
  let payload;
  if (body instanceof FormData) {
    payload = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  const response = await fetch(withParams(path, params), {
    method,
    headers,
    body: payload,
    credentials: "same-origin",
    signal,
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text.slice(0, 200) };
  }
  if (response.status === 401 || (response.status === 403 && data && data.code === "not_authenticated")) {
    // The session ended: sign in again and come back here.
    window.location.assign(`/accounts/login/?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  get: (path, params, options = {}) => send("GET", path, { ...options, params }),
  post: (path, body, options = {}) => send("POST", path, { ...options, body }),
};
