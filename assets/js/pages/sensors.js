// The sensors page: a server-rendered, filterable table (a GET form, whole without script);
// the script only writes the latest values with their units and the times in the building's
// zone.
import { metric } from "../lib/format.js";
import { startPage } from "../lib/page.js";

startPage();

for (const cell of document.querySelectorAll("[data-latest][data-value]")) {
  const value = Number.parseFloat(cell.dataset.value);
  if (!Number.isNaN(value)) cell.textContent = metric(cell.dataset.metric, value);
}
