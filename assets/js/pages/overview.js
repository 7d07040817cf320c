// The overview: power now and over the last hour, and each room's card, live from the page's
// one WebSocket; the energy, demand-response and meter-file sections follow the server.
//
// Every reading batch moves the chart: the building's total (its top-level meters' newest
// power, a sub-meter counting in its parent) is pushed into the existing chart's series
// (lib/charts.js coalesces repaints to a few a second; the chart is never rebuilt). A room's
// power is its meters' net of their sub-meters, as the server counts it (sensors.hierarchy).
// After a reconnect, the readings stored meanwhile come from the data API (lib/gap.js) and
// are replayed into the chart in time order. Sections that change with aggregates, events and
// files are re-read from the page itself (the server renders them) at most every few seconds
// and after a reconnect.
import { axis, createChart } from "../lib/charts.js";
import { metric, power, time } from "../lib/format.js";
import { bindGapFill } from "../lib/gap.js";
import { startPage } from "../lib/page.js";

const HOUR_MS = 3600 * 1000;
const CURRENT_MS = 15 * 60 * 1000; // a power reading counts as "now" this long (analytics.CURRENT_WINDOW)
const REFRESH_MS = 4000;
const MIN_STEP_MS = 1000;
const CARDS_MS = 250;
const COMFORT = ["co2", "temperature", "humidity"];
const { config, feed } = startPage({ subscriptions: [{ type: "subscribe", all: true }] });

const parents = config.parents || {}; // sub-meter id -> {part_of, parent_room}
const bands = config.bands || {};
const latest = new Map(); // "sensor|metric" -> {sensor, room, metric, at, value}
let points = (config.recent || []).map(([at, watts]) => [Date.parse(at), watts]);

// Indexes of `latest`, so that a batch costs what it touches, not a walk over every sensor
// of the building per room it names: each room's keys (its sensors', and its meters'
// sub-meters' power, which is netted out), and the top-level meters' power keys.
const inRoom = new Map(); // room -> Set of keys
const topPower = new Set();

function index(room, key) {
  if (!room) return;
  let keys = inRoom.get(room);
  if (!keys) inRoom.set(room, (keys = new Set()));
  keys.add(key);
}

function remember(sensor, room, name, at, value) {
  const key = `${sensor}|${name}`;
  const known = latest.get(key);
  if (known && known.at > at) return;
  if (known && known.room !== room && inRoom.has(known.room)) inRoom.get(known.room).delete(key);
  latest.set(key, { sensor, room, metric: name, at, value });
  if (known && known.room === room) return; // indexed already
  index(room, key);
  if (name !== "power") return;
  const parent = parents[sensor];
  if (parent) index(parent.parent_room, key);
  else topPower.add(key);
}

for (const [sensor, room, name, at, value] of config.latest || []) remember(sensor, room, name, Date.parse(at), value);

const chartNode = document.querySelector('[data-chart="power-hour"]');
const emptyNode = document.querySelector("[data-chart-empty]");
const chart = createChart(
  chartNode,
  (p) => ({
    legend: { show: false },
    grid: { left: 8, right: 16, top: 16, bottom: 8, containLabel: true },
    xAxis: axis(p, { type: "time", axisLabel: { color: p.muted, formatter: (v) => time(v), hideOverlap: true } }),
    yAxis: axis(p, { type: "value", min: 0, axisLabel: { color: p.muted, formatter: (v) => power(v) } }),
    tooltip: { trigger: "axis", valueFormatter: (v) => power(v) },
    series: [
      {
        name: "Building power",
        type: "line",
        showSymbol: false,
        step: false,
        areaStyle: { opacity: 0.15 },
        data: points,
      },
    ],
  }),
  // At most about 7 repaints a second: bench/ui.py's POST -> repaint p99 target (250 ms)
  // cannot be met when a reading may wait charts.js's default 250 ms slot before its paint.
  { description: "Building power over the last hour, updated with every reading batch.", minIntervalMs: 150 },
);

const nowNode = document.querySelector("[data-power-now]");
const updatedNode = document.querySelector("[data-power-updated]");
const cards = new Map([...document.querySelectorAll("[data-room]")].map((node) => [node.dataset.room, node]));

/** The building's power at `now`: the top-level meters' newest readings of the 15 minutes
 * before it, from `known` (the page's newest values, or a gap's replay of them, which leaves
 * out what came later). A live reading stamped a little ahead of this browser's clock counts. */
function buildingPower(now, known = latest, replay = false) {
  let total = 0;
  let any = false;
  const records = known === latest ? [...topPower].map((key) => latest.get(key)) : known.values();
  for (const r of records) {
    if (r.metric !== "power" || parents[r.sensor] || now - r.at > CURRENT_MS || (replay && r.at > now)) continue;
    total += r.value;
    any = true;
  }
  return any ? total : null;
}

/** A room's figures: power net of sub-meters, the comfort figures as the mean of its sensors. */
function roomFigures(room, now) {
  let watts = null;
  const sums = {};
  for (const key of inRoom.get(room) || []) {
    const r = latest.get(key);
    if (r.metric === "power") {
      if (now - r.at > CURRENT_MS) continue;
      if (r.room === room) watts = (watts ?? 0) + r.value;
      const parent = parents[r.sensor];
      if (parent && parent.parent_room === room) watts = (watts ?? 0) - r.value;
    } else if (r.room === room) {
      const s = (sums[r.metric] ||= { total: 0, n: 0 });
      s.total += r.value;
      s.n += 1;
    }
  }
  const out = { power: watts };
  for (const name of COMFORT) out[name] = sums[name] ? sums[name].total / sums[name].n : null;
  return out;
}

function bandOf(name, value) {
  const band = bands[name];
  if (value === null || !band) return { state: "none", symbol: "–", text: "no data" };
  if (value < band[0]) return { state: "low", symbol: "▼", text: `low (below ${band[0]})` };
  if (value > band[1]) return { state: "high", symbol: "▲", text: `high (above ${band[1]})` };
  return { state: "ok", symbol: "✓", text: "in band" };
}

function updateCard(room, now) {
  const card = cards.get(room);
  if (!card) return;
  const figures = roomFigures(room, now);
  const powerNode = card.querySelector('[data-metric="power"]');
  if (powerNode && figures.power !== null) powerNode.textContent = power(figures.power);
  for (const name of COMFORT) {
    if (figures[name] === null) continue; // keep the server's figure until a reading arrives
    const wrap = card.querySelector(`[data-figure="${name}"]`);
    if (!wrap) continue;
    wrap.querySelector(`[data-metric="${name}"]`).textContent = metric(name, figures[name]);
    const band = bandOf(name, figures[name]);
    wrap.className = `room-figure comfort-${band.state}`;
    const state = wrap.querySelector("[data-state-of]");
    state.replaceChildren();
    const symbol = document.createElement("span");
    symbol.setAttribute("aria-hidden", "true");
    symbol.textContent = band.symbol;
    state.append(symbol, ` ${band.text}`);
  }
}

function pushTotal(at) {
  const total = buildingPower(Date.now());
  if (total === null) return;
  nowNode.textContent = power(total);
  if (updatedNode) updatedNode.textContent = `Updated ${time(at)}.`;
  const last = points[points.length - 1];
  const moment = Math.max(at, last ? last[0] : at);
  // At most one point a second: a feed of many batches a second keeps an hour's chart at
  // 3,600 points, not hundreds of thousands (the newest total of the second wins).
  if (last && moment - last[0] < MIN_STEP_MS && last.live) last[1] = total;
  else points.push(Object.assign([moment, total], { live: true }));
  const cutoff = Date.now() - HOUR_MS;
  let drop = 0;
  while (drop < points.length && points[drop][0] < cutoff) drop += 1;
  if (drop) points = points.slice(drop);
  if (emptyNode) emptyNode.hidden = true;
  chart.update({ series: [{ data: points }] });
}

function take(readings, rooms) {
  let newest = 0;
  let powerSeen = false;
  for (const r of readings) {
    const at = Date.parse(r.timestamp);
    remember(r.sensor_id, r.room || null, r.metric, at, r.value);
    if (r.room) rooms.add(r.room);
    if (r.metric === "power") {
      powerSeen = true;
      newest = Math.max(newest, at);
      // A sub-meter's reading changes its parent's room too.
      const parent = parents[r.sensor_id];
      if (parent && parent.parent_room) rooms.add(parent.parent_room);
    }
  }
  return powerSeen ? newest : null;
}

/** A gap's readings (oldest first) replayed second by second into the chart, in their place
 * in time (the feed may have brought newer points since the reconnect): the totals it would
 * have drawn live, not one point for the whole hole. */
function replayGap(readings) {
  if (!readings.length) return;
  const first = Date.parse(readings[0].timestamp);
  // The values known before the hole, then each second of it applied in turn.
  const known = new Map([...latest].filter(([, r]) => r.at < first));
  const added = [];
  let start = 0;
  while (start < readings.length) {
    const second = Math.floor(Date.parse(readings[start].timestamp) / MIN_STEP_MS);
    let end = start;
    let powerAt = null;
    for (; end < readings.length; end += 1) {
      const r = readings[end];
      const at = Date.parse(r.timestamp);
      if (Math.floor(at / MIN_STEP_MS) !== second) break;
      known.set(`${r.sensor_id}|${r.metric}`, { sensor: r.sensor_id, room: r.room || null, metric: r.metric, at, value: r.value });
      if (r.metric === "power") powerAt = Math.max(powerAt ?? 0, at);
    }
    if (powerAt !== null) {
      const total = buildingPower(powerAt, known, true);
      if (total !== null) added.push([powerAt, total]);
    }
    start = end;
  }
  const cutoff = Date.now() - HOUR_MS;
  points = [...points, ...added].filter(([at]) => at >= cutoff).sort((a, b) => a[0] - b[0]);
  if (emptyNode && points.length) emptyNode.hidden = true;
  chart.update({ series: [{ data: points }] });
}

function onReadings(readings, { gap = false } = {}) {
  const rooms = new Set();
  const now = Date.now();
  if (gap) replayGap(readings);
  const at = take(readings, rooms);
  if (!gap && at !== null) pushTotal(Math.min(at, now));
  else if (gap) nowNode.textContent = power(buildingPower(now));
  // Room cards at most every CARDS_MS: a feed of many batches a second rewrites each card's
  // text once per slot, not once per batch.
  for (const room of rooms) dirtyRooms.add(room);
  if (cardsTimer === null) cardsTimer = setTimeout(flushCards, CARDS_MS);
}

const dirtyRooms = new Set();
let cardsTimer = null;

function flushCards() {
  cardsTimer = null;
  const now = Date.now();
  for (const room of dirtyRooms) updateCard(room, now);
  dirtyRooms.clear();
}

// --- Stale sensors ---------------------------------------------------------------------------

const stale = new Map(Object.entries(config.stale || {}).map(([room, rows]) => [room, new Map(rows)]));

function renderStale(room) {
  const card = cards.get(room);
  const node = card && card.querySelector("[data-stale]");
  if (!node) return;
  const rows = [...(stale.get(room) || new Map())];
  node.replaceChildren();
  node.classList.toggle("room-stale-none", rows.length === 0);
  const icon = document.createElement("span");
  icon.setAttribute("aria-hidden", "true");
  if (!rows.length) {
    icon.textContent = "✓";
    node.append(icon, " All sensors reporting");
    return;
  }
  icon.textContent = "⚠";
  node.append(icon, ` ${rows.length} sensor${rows.length === 1 ? "" : "s"} not reporting: `);
  const shown = config.staleShown || 3;
  for (const [sensor, status] of rows.slice(0, shown)) {
    const badge = document.createElement("span");
    badge.className = `badge badge-${status === "fault" ? "poor" : "fair"}`;
    badge.textContent = `${sensor} ${status}`;
    node.append(badge, " ");
  }
  if (rows.length > shown) node.append(` and ${rows.length - shown} more`);
}

function onSensorStatus(message) {
  if (!message.room) return;
  let rows = stale.get(message.room);
  if (!rows) stale.set(message.room, (rows = new Map()));
  if (message.status === "stale" || message.status === "fault") rows.set(message.sensor_id, message.status);
  else if (!rows.delete(message.sensor_id)) return;
  renderStale(message.room);
}

// --- Sections the server renders --------------------------------------------------------------

const SECTIONS = [".ov-compare", ".ov-breakdown", "[data-dr]", "[data-ingestion]"];
let refreshTimer = null;
let refreshGap = false;

/** Re-read the page and take its server-rendered sections (and, after a gap, its chart data). */
async function refresh() {
  refreshTimer = null;
  const gap = refreshGap;
  refreshGap = false;
  let html;
  try {
    const response = await fetch(window.location.pathname + window.location.search, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    });
    if (!response.ok) return;
    html = await response.text();
  } catch {
    return; // offline: the next message or reconnect tries again
  }
  const fresh = new DOMParser().parseFromString(html, "text/html");
  for (const selector of SECTIONS) {
    const now = document.querySelector(selector);
    const next = fresh.querySelector(selector);
    if (now && next) now.replaceWith(document.importNode(next, true));
  }
  if (!gap) return;
  // After a reconnect: the server's newest values too (a room's comfort figures from sensors
  // whose readings fell into the hole past the data API's hour).
  const configNode = fresh.getElementById("page-config");
  if (!configNode) return;
  const next = JSON.parse(configNode.textContent || "{}");
  for (const [sensor, room, name, at, value] of next.latest || []) remember(sensor, room, name, Date.parse(at), value);
  for (const room of cards.keys()) updateCard(room, Date.now());
}

function scheduleRefresh({ gap = false } = {}) {
  refreshGap ||= gap;
  if (refreshTimer === null) refreshTimer = setTimeout(refresh, gap ? 0 : REFRESH_MS);
}

if (feed) {
  feed.addEventListener("message", (event) => {
    const message = event.detail;
    if (message.type === "reading") onReadings(message.readings);
    else if (message.type === "sensor_status") onSensorStatus(message);
    else if (message.type === "room_metrics" || message.type === "dr_event" || message.type === "ingestion") {
      scheduleRefresh();
    }
  });
  feed.addEventListener("resume", () => scheduleRefresh({ gap: true }));
  // The rooms on the page, and the sensors in no room it knows (a main meter, often).
  const unroomed = () => [...new Set([...latest.values()].filter((r) => !r.room).map((r) => r.sensor))];
  bindGapFill(
    feed,
    () => ({ rooms: [...cards.keys()], sensors: unroomed(), metrics: ["power", "co2", "temperature", "humidity"] }),
    (readings, options) => onReadings(readings, options),
  );
  feed.start();
}
