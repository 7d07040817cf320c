// What the server hands a page's script: the JSON of `{{ page|json_script:"page-config" }}`
// in the page (never string-built JavaScript; the CSP forbids inline script anyway).

/** The page's configuration object, or {} when the page has none. */
export function pageConfig() {
  const node = document.getElementById("page-config");
  return node ? JSON.parse(node.textContent || "{}") : {};
}

/** JSON handed to the page under another element id (a chart's initial data, say). */
export function jsonData(id, fallback = null) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent || "null") : fallback;
}
