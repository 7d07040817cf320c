// What every page's script does first: the theme button, the building's time zone, and, for
// pages that follow the live feed, the one WebSocket of the page with its status badge.
import { bindScrollRegions } from "./a11y.js";
import { pageConfig } from "./config.js";
import { setTimeZone, dateTime } from "./format.js";
import { LiveFeed } from "./live.js";
import { bindStatus } from "./status.js";
import { bindThemeToggle } from "./theme.js";

/**
 * Start the page. With `subscriptions`, opens the live feed and returns it (not started:
 * the page adds its listeners, then calls `feed.start()`).
 */
export function startPage({ subscriptions } = {}) {
  const config = pageConfig();
  setTimeZone(config.timeZone);
  bindThemeToggle();
  bindScrollRegions();
  for (const node of document.querySelectorAll("time[data-local-time]")) {
    node.textContent = dateTime(node.getAttribute("datetime"));
  }
  let feed = null;
  if (subscriptions && config.websocket) {
    feed = new LiveFeed(config.websocket, subscriptions);
    bindStatus(feed);
  }
  return { config, feed };
}
