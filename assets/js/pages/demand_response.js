// The demand-response page and an event's report page: the events' timeline and the report's
// baseline against metered load (ECharts), kept up to date by the live feed's `dr_event`
// messages. The forms are plain HTML forms (they work without this script): an answer posts,
// the server answers with the page and a message.
import { axis, createChart } from "../lib/charts.js";
import { dateTime, number, time } from "../lib/format.js";
import { startPage } from "../lib/page.js";

const { config, feed } = startPage({ subscriptions: [{ type: "subscribe", all: true }] });

const STATUS_TEXT = {
  pending: "Pending",
  accepted: "Accepted",
  declined: "Declined",
  expired: "Expired",
  scheduled: "Scheduled",
  active: "Active",
  completed: "Completed",
  cancelled: "Cancelled",
};
// An axis label with the decimals its step needs (0.5 kW steps must not all read "1").
const tick = (v) => number(v, Number.isInteger(v) ? 0 : Number.isInteger(Math.round(v * 1e6) / 1e5) ? 1 : 2);
const kw = (value) => (value === null || value === undefined ? "–" : `${number(value, 1)} kW`);

// --- The events' timeline: each event's target and delivered kW over its window ------------

function steps(events, field) {
  // One flat segment per event, broken between events (a null point ends a line).
  const points = [];
  for (const event of [...events].sort((a, b) => Date.parse(a.start) - Date.parse(b.start))) {
    const value = event[field];
    if (value === null || value === undefined) continue;
    points.push([Date.parse(event.start), value], [Date.parse(event.end), value], [Date.parse(event.end), null]);
  }
  return points;
}

const timelineNode = document.querySelector('[data-chart="dr-timeline"]');
let timeline = null;
let timelineEvents = config.events || [];
let timelineInvitations = config.invitations || [];
function timelineOption() {
  const events = timelineEvents;
  const invitations = timelineInvitations;
  return (p) => ({
    legend: { top: 0, textStyle: { color: p.text } },
    xAxis: axis(p, {
      type: "time",
      axisLabel: { color: p.muted, hideOverlap: true, formatter: (v) => `${dateTime(v)}` },
    }),
    yAxis: axis(p, { type: "value", name: "kW", axisLabel: { color: p.muted, formatter: tick } }),
    tooltip: { trigger: "axis", valueFormatter: kw },
    series: [
      {
        name: "Target",
        type: "line",
        showSymbol: true,
        symbol: "rect",
        symbolSize: 7,
        areaStyle: { opacity: 0.12 },
        data: steps(events, "target_kw"),
        markLine: {
          silent: true,
          symbol: "none",
          label: { formatter: "now", color: p.muted },
          lineStyle: { color: p.muted, type: "dashed" },
          data: [{ xAxis: Date.now() }],
        },
      },
      {
        name: "Delivered (measured)",
        type: "line",
        showSymbol: true,
        symbol: "triangle",
        symbolSize: 8,
        lineStyle: { type: "dashed", width: 3 },
        data: steps(events, "measured_kw"),
      },
      {
        name: "Asked (pending invitations)",
        type: "line",
        showSymbol: true,
        symbol: "diamond",
        symbolSize: 9,
        lineStyle: { type: "dotted", width: 3 },
        data: steps(invitations, "reduction_kw"),
      },
    ],
  });
}
function ensureTimeline(node) {
  // The chart is drawn once; a page that had no event gets it when the first one arrives.
  if (timeline || !node) return;
  timeline = createChart(node, (p) => timelineOption()(p), {
    description: "Each event's target reduction over its window, the reduction measured after it, and what pending invitations ask.",
  });
}
ensureTimeline(timelineNode);

// --- An event's report: baseline and metered load per quarter-hour -------------------------

const reportNode = document.querySelector('[data-chart="dr-report"]');
if (reportNode && config.intervals) {
  const at = (row) => Date.parse(row.start);
  const committed = config.committedKw || 0;
  const QUARTER_MS = 15 * 60 * 1000;
  // Each value holds over its quarter-hour: a step at each interval's end, and a last point
  // at the end of the last interval so that it is drawn too.
  const held = (value) => {
    const points = config.intervals.map((row) => [at(row), value(row)]);
    const last = config.intervals[config.intervals.length - 1];
    if (last) points.push([at(last) + QUARTER_MS, value(last)]);
    return points;
  };
  createChart(
    reportNode,
    (p) => ({
      legend: { top: 0, textStyle: { color: p.text } },
      xAxis: axis(p, { type: "time", axisLabel: { color: p.muted, hideOverlap: true, formatter: (v) => time(v) } }),
      yAxis: axis(p, { type: "value", name: "kW", scale: true, axisLabel: { color: p.muted, formatter: tick } }),
      tooltip: { trigger: "axis", valueFormatter: (v) => (v === null || v === undefined ? "–" : `${number(v, 2)} kW`) },
      series: [
        {
          name: "Baseline",
          type: "line",
          step: "end",
          symbol: "circle",
          data: held((row) => row.baseline_kw),
        },
        {
          name: "Metered load",
          type: "line",
          step: "end",
          symbol: "triangle",
          symbolSize: 8,
          lineStyle: { width: 3 },
          areaStyle: { opacity: 0.1 },
          data: held((row) => row.actual_kw),
        },
        {
          name: "Baseline less the commitment",
          type: "line",
          step: "end",
          symbol: "none",
          lineStyle: { type: "dotted", width: 2 },
          data: held((row) => row.baseline_kw - committed),
        },
      ],
    }),
    { description: "Baseline load and metered load per quarter-hour of the event; the gap between them is what was delivered." },
  );
}

// --- Live: status changes from the feed ----------------------------------------------------

function flash(node) {
  node.classList.remove("dr-changed");
  void node.offsetWidth; // restart the animation
  node.classList.add("dr-changed");
}

function setBadge(badge, status) {
  if (!badge) return;
  badge.className = badge.className.replace(/\bst-\S+/, `st-${status}`);
  badge.textContent = STATUS_TEXT[status] || status;
}

function onInvitation(message) {
  const item = document.querySelector(`[data-invitation="${message.id}"]`);
  if (!item) return message.previous_status === null; // a new invitation: fetch the list
  setBadge(item.querySelector("[data-status]"), message.status);
  if (message.status !== "pending") {
    // Answered (here, elsewhere, by the policy) or expired: nothing left to answer.
    const answer = item.querySelector("[data-answer]");
    if (answer) {
      const note = document.createElement("p");
      note.dataset.answeredNote = "";
      const who = message.detail.answered_by ? ` by ${message.detail.answered_by}` : "";
      note.textContent = `${STATUS_TEXT[message.status] || message.status}${who}${message.detail.reason ? `: ${message.detail.reason}` : ""}.`;
      answer.replaceWith(note);
    }
  }
  flash(item);
  return true;
}

let refreshTimer = null;
async function refreshRegions() {
  // The server renders the lists; fetch the page again and take its regions (never the
  // invitations being answered here: a typed reason is kept).
  const response = await fetch(window.location.pathname + window.location.search, {
    headers: { Accept: "text/html" },
    credentials: "same-origin",
  });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const region of document.querySelectorAll("[data-dr-region]")) {
    const name = region.dataset.drRegion;
    const next = fresh.querySelector(`[data-dr-region="${name}"]`);
    if (!next) continue;
    if (name === "pending") {
      mergePending(region, next);
      continue;
    }
    if (name === "events" && timeline) {
      const table = region.querySelector(".table-wrap");
      const nextTable = next.querySelector(".table-wrap");
      if (table && nextTable) table.replaceWith(document.importNode(nextTable, true));
      continue;
    }
    region.replaceWith(document.importNode(next, true));
  }
  const configNode = fresh.getElementById("page-config");
  if (configNode) {
    const freshEvents = JSON.parse(configNode.textContent || "{}");
    timelineEvents = freshEvents.events || [];
    timelineInvitations = freshEvents.invitations || [];
  }
  if (!timeline) ensureTimeline(document.querySelector('[data-chart="dr-timeline"]'));
  else {
    timeline.update({
      series: [
        { data: steps(timelineEvents, "target_kw") },
        { data: steps(timelineEvents, "measured_kw") },
        { data: steps(timelineInvitations, "reduction_kw") },
      ],
    });
  }
}

function mergePending(region, next) {
  // New invitations are added; those answered stay, with their new status, until a reload.
  let list = region.querySelector(".dr-invitations");
  const incoming = [...next.querySelectorAll("[data-invitation]")];
  if (!incoming.length) return;
  if (!list) {
    list = document.createElement("ul");
    list.className = "dr-invitations";
    region.querySelector("[data-empty]")?.remove();
    region.append(list);
  }
  for (const item of incoming) {
    if (document.getElementById(item.id)) continue;
    const added = document.importNode(item, true);
    list.prepend(added);
    flash(added);
  }
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refreshRegions().catch(() => {}), 300);
}

function onEventPage(message) {
  if (!config.event || message.kind !== "event" || message.id !== config.event.id) return;
  const badge = document.querySelector("[data-event-status]");
  setBadge(badge, message.status);
  if (message.status === "completed" && message.detail.measured_kw !== null) window.location.reload();
}

if (feed) {
  feed.addEventListener("message", (event) => {
    const message = event.detail;
    if (message.type !== "dr_event") return;
    if (config.event) {
      onEventPage(message);
      return;
    }
    if (message.kind === "invitation") onInvitation(message);
    scheduleRefresh();
  });
  feed.addEventListener("resume", () => {
    if (!config.event) scheduleRefresh();
  });
  feed.start();
}
