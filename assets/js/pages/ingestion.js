// The ingestion page and a file's page: drag and drop onto the upload form (the form works
// without this script: choose a file, submit), and live updates from the feed's `ingestion`
// messages (a file processed by a worker, a scan's files) into the ledger.
import { api } from "../lib/api.js";
import { startPage } from "../lib/page.js";

const { config, feed } = startPage({ subscriptions: [{ type: "subscribe", all: true }] });

// --- Upload: drop a file on the zone, or choose it -----------------------------------------

const form = document.querySelector("[data-upload]");
if (form) {
  const zone = form.querySelector("[data-drop]");
  const input = form.querySelector('input[type="file"]');
  const chosen = form.querySelector("[data-chosen]");
  const limit = config.uploadLimit || Infinity;
  const show = () => {
    const file = input.files && input.files[0];
    if (!file) {
      chosen.textContent = "";
      return;
    }
    chosen.textContent =
      file.size > limit
        ? `${file.name} is larger than the upload limit (${limit.toLocaleString()} bytes).`
        : `${file.name}, ${file.size.toLocaleString()} bytes: ready to upload.`;
  };
  input.addEventListener("change", show);
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("ing-dragging");
    });
  }
  for (const type of ["dragleave", "dragend"]) {
    zone.addEventListener(type, () => zone.classList.remove("ing-dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("ing-dragging");
    const files = event.dataTransfer && event.dataTransfer.files;
    if (!files || !files.length) return;
    // The dropped file becomes the input's: the form posts it as if it had been chosen.
    const transfer = new DataTransfer();
    transfer.items.add(files[0]);
    input.files = transfer.files;
    show();
    input.focus();
  });
  form.addEventListener("submit", (event) => {
    const file = input.files && input.files[0];
    if (file && file.size > limit) {
      event.preventDefault();
      show();
      return;
    }
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    button.textContent = "Importing…";
  });
}

// --- Live: a processed file's status, and the ledger when new files arrive -----------------

const BADGES = ["imported", "duplicate", "queued", "downloaded", "processing", "rejected", "failed"];

function setStatus(badge, status) {
  if (!badge) return;
  for (const name of BADGES) badge.classList.remove(`st-file-${name}`);
  badge.classList.add(`st-file-${status}`);
  badge.textContent = status;
}

let refreshTimer = null;
async function refreshLedger() {
  const response = await fetch(window.location.pathname + window.location.search, {
    headers: { Accept: "text/html" },
    credentials: "same-origin",
  });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const region of document.querySelectorAll("[data-ing-region]")) {
    if (region.contains(document.activeElement) && document.activeElement !== document.body) continue;
    const next = fresh.querySelector(`[data-ing-region="${region.dataset.ingRegion}"]`);
    if (next) region.replaceWith(document.importNode(next, true));
  }
}

// After "scan now" (the server queued the scan, `?scanned=<source>`): reload the regions every
// few seconds until the source's last scan changes, at most for SCAN_WATCH_MS.
const SCAN_POLL_MS = 3000;
const SCAN_WATCH_MS = 120000;
const scanned = new URLSearchParams(window.location.search).get("scanned");
if (scanned && !config.file) {
  const sourceNode = () => [...document.querySelectorAll("[data-source]")].find((n) => n.dataset.source === scanned);
  const before = sourceNode()?.dataset.lastScan ?? "";
  const until = Date.now() + SCAN_WATCH_MS;
  const poll = async () => {
    await refreshLedger().catch(() => {});
    const node = sourceNode();
    if (!node || (node.dataset.lastScan !== before && !("scanning" in node.dataset)) || Date.now() > until) return;
    setTimeout(poll, SCAN_POLL_MS);
  };
  setTimeout(poll, SCAN_POLL_MS);
}

// A file's page while a worker has it: its outcome may come before the live feed is
// connected, so the page also asks the API now and then (bounded) and reloads when it changes.
const PENDING = ["queued", "downloaded", "processing"];
if (config.file && PENDING.includes(config.file.status)) {
  const until = Date.now() + 10 * 60 * 1000;
  const check = async () => {
    try {
      const row = await api.get(`/api/v1/ingestion/files/${config.file.id}`);
      if (row.status !== config.file.status) {
        window.location.reload();
        return;
      }
    } catch {
      // a failed check is retried at the next one
    }
    if (Date.now() < until) setTimeout(check, 3000);
  };
  setTimeout(check, 1500);
}

if (feed) {
  feed.addEventListener("message", (event) => {
    const message = event.detail;
    if (message.type !== "ingestion") return;
    if (config.file) {
      if (message.file_id === config.file.id && message.status !== config.file.status) window.location.reload();
      return;
    }
    setStatus(document.querySelector(`[data-file="${message.file_id}"] [data-status]`), message.status);
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => refreshLedger().catch(() => {}), 500);
  });
  feed.addEventListener("resume", () => {
    if (!config.file) refreshLedger().catch(() => {});
  });
  feed.start();
}
