// The overview: power now and over the last hour, and each room's card, live from the feed.
import { axis, createChart } from "../lib/charts.js";
import { metric, power, time } from "../lib/format.js";
import { bindGapFill } from "../lib/gap.js";
import { startPage } from "../lib/page.js";

const HOUR_MS = 3600 * 1000;
const { config, feed } = startPage({ subscriptions: [{ type: "subscribe", all: true }] });

const latestPower = new Map(); // sensor id -> newest power (W)
const roomLatest = new Map(); // room -> metric -> sensor id -> value
const points = []; // [ms, W] of the building's power
if (config.summary) points.push([Date.parse(config.summary.as_of), config.summary.current_power_w]);

const chart = createChart(
  document.querySelector('[data-chart="power-hour"]'),
  (p) => ({
    legend: { show: false },
    xAxis: axis(p, { type: "time", axisLabel: { color: p.muted, formatter: (v) => time(v), hideOverlap: true } }),
    yAxis: axis(p, { type: "value", axisLabel: { color: p.muted, formatter: (v) => power(v) } }),
    tooltip: { trigger: "axis", valueFormatter: (v) => power(v) },
    series: [{ name: "Building power", type: "line", showSymbol: false, areaStyle: { opacity: 0.15 }, data: points }],
  }),
  { description: "Building power over the last hour, updated live." },
);

const nowNode = document.querySelector("[data-power-now]");
const cards = new Map([...document.querySelectorAll("[data-room]")].map((node) => [node.dataset.room, node]));

function updateCard(room) {
  const card = cards.get(room);
  const known = roomLatest.get(room);
  if (!card || !known) return;
  for (const [name, values] of known) {
    const node = card.querySelector(`[data-metric="${name}"]`);
    if (!node) continue;
    const list = [...values.values()];
    const value = name === "power" ? list.reduce((a, b) => a + b, 0) : list.reduce((a, b) => a + b, 0) / list.length;
    node.textContent = metric(name, value);
  }
}

function onReadings(readings) {
  let changed = false;
  const rooms = new Set();
  for (const r of readings) {
    if (r.room) {
      let perMetric = roomLatest.get(r.room);
      if (!perMetric) roomLatest.set(r.room, (perMetric = new Map()));
      let perSensor = perMetric.get(r.metric);
      if (!perSensor) perMetric.set(r.metric, (perSensor = new Map()));
      perSensor.set(r.sensor_id, r.value);
      rooms.add(r.room);
    }
    if (r.metric !== "power") continue;
    latestPower.set(r.sensor_id, r.value);
    changed = true;
  }
  for (const room of rooms) updateCard(room);
  if (!changed) return;
  let total = 0;
  for (const value of latestPower.values()) total += value;
  const now = Date.now();
  points.push([now, total]);
  while (points.length && points[0][0] < now - HOUR_MS) points.shift();
  nowNode.textContent = power(total);
  chart.update({ series: [{ data: points }] });
}

if (feed) {
  feed.addEventListener("message", (event) => {
    const message = event.detail;
    if (message.type === "reading") onReadings(message.readings);
  });
  // After a reconnect, what was stored meanwhile (the kiosk's wall screen must not show a hole).
  bindGapFill(feed, () => ({ rooms: [...cards.keys()] }), (readings) => onReadings(readings));
  feed.start();
}
