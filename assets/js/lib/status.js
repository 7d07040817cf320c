// The live badge: "Live", "Reconnecting…", "Offline since 14:02" (building time), in words
// and a shape, announced politely to screen readers.
import { time } from "./format.js";

const TEXT = {
  connecting: () => "Connecting…",
  live: () => "Live",
  reconnecting: () => "Reconnecting…",
  offline: (since) => (since ? `Offline since ${time(since)}` : "Offline"),
};

/** Keep every `[data-live-status]` element in step with `feed`. */
export function bindStatus(feed) {
  const nodes = document.querySelectorAll("[data-live-status]");
  const show = ({ state, since }) => {
    for (const node of nodes) {
      node.dataset.state = state;
      node.textContent = TEXT[state](since);
    }
  };
  show({ state: feed.state, since: feed.downSince });
  feed.addEventListener("state", (event) => show(event.detail));
}
