// The room page: a chart per metric for the chosen range (drawn from GET /rooms/{name}/series
// at the resolution the server chose to fit the range), the month's energy carpet, the CSV of
// exactly what the charts show, and live readings appended while the range includes now.
//
// Times are the building's (the page configuration's `timeZone`), never the browser's: the x
// axis, the tooltips, the carpet's hours and the CSV's timestamps with their offset.
import { api } from "../lib/api.js";
import { axis, createChart } from "../lib/charts.js";
import { pageConfig } from "../lib/config.js";
import { dateTime, day, metric, number, power, time } from "../lib/format.js";
import { bindGapFill } from "../lib/gap.js";
import { startPage } from "../lib/page.js";
import { localIso, localMidnight } from "../lib/zoned.js";

const DAY_MS = 86400000;
const STEP_MS = { "5m": 300000, "15m": 900000, "1h": 3600000 };
const RESOLUTION_LABEL = {
  raw: "raw readings",
  "5m": "5-minute averages",
  "15m": "15-minute averages",
  "1h": "hourly averages",
  "1d": "daily averages",
};
// Energy is kWh per interval (summed); power and occupancy add up over the room's sensors;
// the climate metrics average (as the server combines them).
const SUMMED = new Set(["power", "occupancy"]);

const initial = pageConfig();
const { config, feed } = startPage({ subscriptions: [{ type: "subscribe", rooms: [initial.room] }] });
const zone = config.timeZone;
const start = Date.parse(config.start);
const end = Date.parse(config.end);
const spanMs = end - start;

const statusNode = document.querySelector("[data-series-status]");
const state = {
  resolution: null,
  // metric -> [{key, sensorId, points: [[ms, value]], stamps: [local ISO]}]
  series: new Map(),
  charts: new Map(), // metric -> createChart entry
  live: new Map(), // metric -> bucket ms -> sensor -> {sum, count} (readings seen live)
};

function axisLabel(ms) {
  if (spanMs <= 2 * DAY_MS) return time(ms);
  if (spanMs <= 62 * DAY_MS) return day(ms);
  return new Intl.DateTimeFormat(undefined, { timeZone: zone, month: "short", year: "numeric" }).format(
    new Date(ms),
  );
}

function valueLabel(name, value) {
  if (name === "power") return power(value);
  const m = config.metrics.find((entry) => entry.name === name);
  return `${number(value, name === "energy" ? 2 : name === "temperature" ? 1 : 0)} ${m ? m.unit : ""}`;
}

function chartOption(name) {
  const list = state.series.get(name) || [];
  const bars = name === "energy";
  return (p) => ({
    legend: { show: list.length > 1, top: 0, textStyle: { color: p.text } },
    grid: { left: 8, right: 16, top: list.length > 1 ? 36 : 16, bottom: 8, containLabel: true },
    xAxis: axis(p, {
      type: "time",
      min: start,
      max: end,
      axisLabel: { color: p.muted, hideOverlap: true, formatter: (v) => axisLabel(v) },
    }),
    yAxis: axis(p, {
      type: "value",
      scale: !bars,
      axisLabel: { color: p.muted, formatter: (v) => valueLabel(name, v) },
    }),
    tooltip: {
      trigger: "axis",
      formatter: (items) => {
        const rows = (Array.isArray(items) ? items : [items]).map(
          (item) => `${item.marker}${item.seriesName}: ${valueLabel(name, item.value[1])}`,
        );
        return [dateTime(items[0].value[0]), ...rows].join("<br>");
      },
    },
    series: list.map((s) => ({
      name: s.sensorId || config.room,
      type: bars ? "bar" : "line",
      showSymbol: s.points.length < 60,
      symbolSize: 5,
      barMaxWidth: 24,
      sampling: s.points.length > 2000 ? "lttb" : undefined,
      data: s.points,
    })),
  });
}

function drawMetric(name) {
  const card = document.querySelector(`[data-metric-card="${name}"]`);
  if (!card) return;
  const element = card.querySelector("[data-chart]");
  const list = state.series.get(name) || [];
  const count = list.reduce((n, s) => n + s.points.length, 0);
  card.querySelector("[data-empty]").hidden = count > 0;
  element.hidden = count === 0;
  let entry = state.charts.get(name);
  if (count === 0) return;
  const label = config.metrics.find((m) => m.name === name).label;
  if (!entry) {
    entry = createChart(element, chartOption(name), {
      description: `${label} of ${config.room}, ${RESOLUTION_LABEL[state.resolution]}, ${count} point${count === 1 ? "" : "s"}.`,
    });
    state.charts.set(name, entry);
  } else {
    // Same series (live points appended): a merge of their data, repainted at the next slot.
    entry.update({ series: list.map((s) => ({ data: s.points })), legend: { show: list.length > 1 } });
  }
  element.dataset.points = String(count);
}

function rebuild(name) {
  const entry = state.charts.get(name);
  if (entry) {
    entry.dispose();
    state.charts.delete(name);
  }
  drawMetric(name);
}

async function loadHistory() {
  statusNode.textContent = "Loading…";
  try {
    const body = await api.get(config.seriesUrl, {
      start: config.start,
      end: config.end,
      resolution: config.resolution,
      metrics: config.metrics.map((m) => m.name).join(","),
    });
    state.resolution = body.resolution;
    state.series.clear();
    state.live.clear();
    for (const s of body.series) {
      if (!state.series.has(s.metric)) state.series.set(s.metric, []);
      if (!s.points.length && s.sensor_id === null && state.series.get(s.metric).length) continue;
      state.series.get(s.metric).push({
        sensorId: s.sensor_id,
        points: s.points.map(([at, value]) => [Date.parse(at), value]),
        stamps: s.points.map(([at]) => at),
      });
    }
    for (const m of config.metrics) rebuild(m.name);
    const total = [...state.series.values()].flat().reduce((n, s) => n + s.points.length, 0);
    statusNode.textContent = `${RESOLUTION_LABEL[body.resolution]} · ${total} point${total === 1 ? "" : "s"}${
      config.live ? " · live" : ""
    }`;
    document.body.dataset.resolution = body.resolution;
    document.body.dataset.loaded = "history";
  } catch (error) {
    statusNode.textContent = `The history could not be loaded: ${error.message}`;
  }
}

// --- The carpet: energy per hour of day (rows) and day of the month (columns) -------------

async function loadCarpet() {
  const element = document.querySelector('[data-chart="carpet"]');
  const card = element.closest("section");
  let body;
  try {
    body = await api.get(config.seriesUrl, {
      start: config.carpet.start,
      end: config.carpet.end,
      resolution: "1h",
      metrics: "energy",
    });
  } catch (error) {
    card.querySelector("[data-empty]").textContent = `The month could not be loaded: ${error.message}`;
    card.querySelector("[data-empty]").hidden = false;
    element.hidden = true;
    return;
  }
  const first = localIso(Date.parse(config.carpet.start), zone).slice(0, 10);
  const [year, month] = first.split("-").map(Number);
  const days = new Date(Date.UTC(year, month, 0)).getUTCDate();
  // Summed per local (day, hour): the hour that happens twice when the clocks go back holds
  // both; the hour skipped when they go forward stays empty.
  const cells = new Map();
  let top = 0;
  for (const [at, kwh] of body.series[0].points) {
    const dayIndex = Number(at.slice(8, 10)) - 1;
    const hour = Number(at.slice(11, 13));
    const key = dayIndex * 24 + hour;
    const value = (cells.get(key) || 0) + kwh;
    cells.set(key, value);
    top = Math.max(top, value);
  }
  card.querySelector("[data-empty]").hidden = cells.size > 0;
  element.hidden = cells.size === 0;
  if (!cells.size) return;
  const data = [...cells].map(([key, value]) => [Math.floor(key / 24), key % 24, value]);
  const dayNames = Array.from({ length: days }, (_, i) => String(i + 1));
  const hours = Array.from({ length: 24 }, (_, h) => `${String(h).padStart(2, "0")}:00`);
  createChart(
    element,
    (p) => ({
      tooltip: {
        trigger: "item",
        formatter: (item) =>
          `${item.value[0] + 1} ${new Intl.DateTimeFormat(undefined, { month: "short", year: "numeric" }).format(
            new Date(Date.UTC(year, month - 1, 1)),
          )}, ${hours[item.value[1]]}<br>${metric("energy", item.value[2])}`,
      },
      grid: { left: 8, right: 16, top: 8, bottom: 56, containLabel: true },
      xAxis: axis(p, {
        type: "category",
        data: dayNames,
        name: "Day",
        nameLocation: "middle",
        nameGap: 24,
        splitLine: { show: false },
      }),
      yAxis: axis(p, {
        type: "category",
        data: hours,
        inverse: true,
        axisLabel: { color: p.muted, interval: 5 },
        splitLine: { show: false },
      }),
      visualMap: {
        min: 0,
        max: top || 1,
        calculable: false,
        orient: "horizontal",
        left: "center",
        bottom: 0,
        // The scale and its two labels fit a phone's width too.
        itemHeight: element.clientWidth < 480 ? 70 : 120,
        textStyle: { color: p.muted },
        text: [metric("energy", top), metric("energy", 0)],
        textGap: 6,
        // Viridis: light to dark, readable with any colour vision.
        inRange: { color: ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"] },
      },
      // The colour scale says the value (a pattern over it would hide it); no legend: one series.
      aria: {
        enabled: true,
        label: { description: `Energy of ${config.room} per hour of day for each day of ${config.carpet.label}.` },
        decal: { show: false },
      },
      legend: { show: false },
      series: [{ name: "Energy", type: "heatmap", data, emphasis: { itemStyle: { borderColor: p.text } } }],
    }),
    { description: `Energy of ${config.room} per hour of day for each day of ${config.carpet.label}.` },
  );
  element.dataset.cells = String(cells.size);
}

// --- The CSV: exactly the points the charts show, local timestamps with their offset ------

function csvText() {
  const lines = ["metric,sensor_id,timestamp,value"];
  for (const m of config.metrics) {
    for (const s of state.series.get(m.name) || []) {
      s.points.forEach(([, value], i) => {
        lines.push([m.name, s.sensorId || "", s.stamps[i], String(value)].join(","));
      });
    }
  }
  return `${lines.join("\r\n")}\r\n`;
}

const download = document.querySelector("[data-csv-download]");
if (download) {
  download.addEventListener("click", (event) => {
    if (!state.resolution) return; // not loaded: the API's CSV of the same range
    event.preventDefault();
    const url = URL.createObjectURL(new Blob([csvText()], { type: "text/csv" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = `${config.room}-${localIso(start, zone).slice(0, 10)}-${state.resolution}.csv`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });
}

// --- Live: readings of this room appended while the range includes now ------------------

function bucketOf(ms) {
  if (state.resolution === "1d") return localMidnight(ms, zone);
  const step = STEP_MS[state.resolution];
  return Math.floor(ms / step) * step;
}

function place(s, ms, value) {
  // In time order: a reading is almost always the newest; an equal instant replaces.
  const points = s.points;
  let i = points.length;
  while (i > 0 && points[i - 1][0] > ms) i -= 1;
  if (i > 0 && points[i - 1][0] === ms) {
    points[i - 1] = [ms, value];
    return;
  }
  points.splice(i, 0, [ms, value]);
  s.stamps.splice(i, 0, localIso(ms, zone));
}

function onReading(r) {
  if (r.room !== config.room || !state.resolution) return false;
  const ms = Date.parse(r.timestamp);
  if (!(ms >= start && ms < end)) return false;
  if (!state.series.has(r.metric)) return false;
  const list = state.series.get(r.metric);
  if (state.resolution === "raw") {
    let s = list.find((entry) => entry.sensorId === r.sensor_id);
    if (!s) {
      const empty = list.findIndex((entry) => entry.sensorId === null);
      if (empty >= 0) list.splice(empty, 1);
      s = { sensorId: r.sensor_id, points: [], stamps: [] };
      list.push(s);
      list.sort((a, b) => String(a.sensorId).localeCompare(String(b.sensorId)));
      place(s, ms, r.value);
      return "rebuild";
    }
    place(s, ms, r.value);
    return true;
  }
  // An aggregate: the reading joins its bucket's running figures (readings seen live only).
  const bucket = bucketOf(ms);
  let perBucket = state.live.get(r.metric);
  if (!perBucket) state.live.set(r.metric, (perBucket = new Map()));
  let perSensor = perBucket.get(bucket);
  if (!perSensor) perBucket.set(bucket, (perSensor = new Map()));
  const acc = perSensor.get(r.sensor_id) || { sum: 0, count: 0 };
  acc.sum += r.value;
  acc.count += 1;
  perSensor.set(r.sensor_id, acc);
  const figures = [...perSensor.values()];
  let value;
  if (r.metric === "energy") value = figures.reduce((a, f) => a + f.sum, 0);
  else if (SUMMED.has(r.metric)) value = figures.reduce((a, f) => a + f.sum / f.count, 0);
  else value = figures.reduce((a, f) => a + f.sum / f.count, 0) / figures.length;
  place(list[0], bucket, value);
  return true;
}

// The sensors table follows the feed too: each sensor's latest value, last seen and status.
const BADGE = {
  active: ["badge-good", "Active"],
  stale: ["badge-fair", "Stale"],
  fault: ["badge-poor", "Fault"],
  inactive: ["badge-neutral", "Inactive"],
};

function sensorRow(sensorId) {
  return document.querySelector(`tr[data-sensor="${CSS.escape(sensorId)}"]`);
}

function updateSensorRow(r) {
  const row = sensorRow(r.sensor_id);
  if (!row) return;
  // Late data (older than what the row shows) changes nothing.
  const at = Date.parse(r.timestamp);
  if (at <= Number(row.dataset.newest || 0)) return;
  row.dataset.newest = String(at);
  const latest = row.querySelector("[data-latest]");
  if (latest && latest.dataset.metric === r.metric) {
    latest.dataset.value = String(r.value);
    latest.textContent = metric(r.metric, r.value);
  }
  const seen = row.querySelector("[data-last-seen]");
  if (seen) seen.textContent = dateTime(r.timestamp);
}

// What the server rendered is the newest known until the feed says otherwise.
for (const row of document.querySelectorAll("tr[data-sensor]")) {
  const seen = row.querySelector("time[data-last-seen]");
  if (seen) row.dataset.newest = String(Date.parse(seen.getAttribute("datetime")));
}

function updateSensorStatus(message) {
  const row = message.sensor_id && sensorRow(message.sensor_id);
  const badge = row && row.querySelector(".badge[data-status]");
  const shown = BADGE[message.status];
  if (!badge || !shown) return;
  badge.className = `badge ${shown[0]}`;
  badge.dataset.status = message.status;
  badge.textContent = shown[1];
}

/** Readings into the charts (from the feed, or from the gap fill after a reconnect). */
function applyReadings(readings) {
  for (const r of readings) updateSensorRow(r);
  if (!config.live) return;
  const touched = new Map();
  for (const r of readings) {
    const result = onReading(r);
    if (result) touched.set(r.metric, touched.get(r.metric) === "rebuild" ? "rebuild" : result);
  }
  for (const [name, how] of touched) {
    if (how === "rebuild" || !state.charts.has(name)) rebuild(name);
    else drawMetric(name);
  }
}

let historyLoaded = null;

if (feed) {
  feed.addEventListener("message", (event) => {
    const message = event.detail;
    if (message.type === "sensor_status") updateSensorStatus(message);
    if (message.type === "reading") applyReadings(message.readings);
  });
  // After a reconnect the history is read again; its aggregates lack the window the job has not
  // computed yet, so the readings stored meanwhile come from the data API (lib/gap.js) and join
  // the reloaded charts as live ones do. (This listener is added first, so the reload has begun
  // when the gap fill runs.)
  feed.addEventListener("resume", () => {
    historyLoaded = loadHistory();
  });
  bindGapFill(
    feed,
    () => ({ rooms: [config.room] }),
    async (readings) => {
      await historyLoaded;
      applyReadings(readings);
    },
  );
  feed.start();
}

// --- The range picker: only the fields of the chosen kind of range -----------------------

const kind = document.querySelector("[data-range-kind]");
if (kind) {
  const show = () => {
    for (const field of document.querySelectorAll("[data-range-for]")) {
      field.hidden = !field.dataset.rangeFor.split(" ").includes(kind.value);
    }
  };
  kind.addEventListener("change", show);
  show();
}

// The latest values in the sensors table, with their units.
for (const cell of document.querySelectorAll("[data-latest][data-value]")) {
  const value = Number.parseFloat(cell.dataset.value);
  if (!Number.isNaN(value)) cell.textContent = metric(cell.dataset.metric, value);
}

historyLoaded = loadHistory();
loadCarpet();
