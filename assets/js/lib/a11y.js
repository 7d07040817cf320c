// What the layout does for every page's accessibility that markup alone cannot.
//
// A region that scrolls sideways (a wide table in its `.table-wrap` on a phone) must be
// reachable by keyboard, or its hidden columns cannot be read without a mouse (WCAG 2.1.1;
// axe's scrollable-region-focusable): while it scrolls it is a focusable, named region; once
// it fits again it leaves the tab order. Tables that a page renders later (a section re-read
// from the server) are found by a MutationObserver.

const SCROLLERS = ".table-wrap";

function label(node) {
  const section = node.closest("[aria-labelledby]");
  const heading = section && document.getElementById(section.getAttribute("aria-labelledby").split(" ")[0]);
  const caption = node.querySelector("caption");
  return ((heading && heading.textContent) || (caption && caption.textContent) || "").trim();
}

function check(node) {
  const scrolls = node.scrollWidth > node.clientWidth + 1;
  if (scrolls && !node.hasAttribute("tabindex")) {
    node.tabIndex = 0;
    node.dataset.scrollRegion = "";
    const name = label(node);
    if (name && !node.hasAttribute("role")) {
      node.setAttribute("role", "region");
      node.setAttribute("aria-label", `${name} (scrolls sideways)`);
    }
  } else if (!scrolls && node.dataset.scrollRegion !== undefined) {
    node.removeAttribute("tabindex");
    if (node.getAttribute("aria-label")?.endsWith("(scrolls sideways)")) {
      node.removeAttribute("role");
      node.removeAttribute("aria-label");
    }
    delete node.dataset.scrollRegion;
  }
}

/** Keep every sideways-scrolling `.table-wrap` of the page reachable by keyboard. */
export function bindScrollRegions(root = document.body) {
  const seen = new WeakSet();
  const resized = new ResizeObserver((entries) => {
    for (const entry of entries) check(entry.target);
  });
  const scan = () => {
    for (const node of root.querySelectorAll(SCROLLERS)) {
      if (seen.has(node)) continue;
      seen.add(node);
      check(node);
      resized.observe(node);
    }
  };
  scan();
  new MutationObserver(scan).observe(root, { childList: true, subtree: true });
}
