// Light, dark, or the system's choice: the choice is a cookie, so the server renders the
// page in it (no flash of the other theme, and no inline script needed).
const ORDER = ["auto", "light", "dark"];
const LABEL = { auto: "Theme: system", light: "Theme: light", dark: "Theme: dark" };

function current() {
  return document.documentElement.dataset.theme || "auto";
}

function apply(choice) {
  if (choice === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = choice;
  document.cookie = `theme=${choice}; path=/; max-age=31536000; samesite=lax`;
  window.dispatchEvent(new Event("themechange"));
}

/** Wire the theme button(s) of the page. */
export function bindThemeToggle() {
  for (const button of document.querySelectorAll("[data-theme-toggle]")) {
    const show = () => {
      button.textContent = LABEL[current()];
      button.setAttribute("aria-label", `${LABEL[current()]} (change)`);
    };
    show();
    button.addEventListener("click", () => {
      apply(ORDER[(ORDER.indexOf(current()) + 1) % ORDER.length]);
      show();
    });
  }
  // Following the system: its change is a theme change too.
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    if (current() === "auto") window.dispatchEvent(new Event("themechange"));
  });
}
