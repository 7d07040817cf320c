// Filling the hole a reconnect leaves: the readings stored while the page was not connected,
// fetched from the data API (POST /api/v1/data/query, raw rows) and handed to the page as if
// the live feed had pushed them, so that a wall screen that lost its server for a while shows
// a chart without a gap.
//
// The gap starts at the newest reading timestamp the feed delivered (the server's clock, not
// the browser's, which a wall screen may have wrong), less a small overlap for readings that
// arrive out of order; rows the feed already delivered since the reconnect are left out.
// Limits: at most MAX_GAP_MS back (a longer outage is filled for its last hour only) and at
// most MAX_ROWS rows; past either, `complete` is false and the page decides (reload, say).
import { api } from "./api.js";

const OVERLAP_MS = 2000;
const MAX_GAP_MS = 3600 * 1000;
const MAX_ROWS = 50000;
const PAGE_ROWS = 10000;
// The data API takes at most ANALYTICS_MAX_SERIES names per list (1,000 by default).
const NAMES_PER_QUERY = 500;
// The rows' end: a little past the browser's "now", in case its clock is behind the server's.
const END_SLACK_MS = 5 * 60 * 1000;

const key = (r) => `${r.sensor_id}\u0000${r.metric}\u0000${r.timestamp}`;

function chunks(list, size) {
  if (!list.length) return [[]];
  const out = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

/**
 * The readings of `sensors` and `rooms` (and of `metrics`, all when empty) stored from
 * `since` (ms) until now, oldest first, in the live feed's shape
 * ({sensor_id, room, metric, timestamp, value, quality}). Resolves to {readings, complete}.
 */
export async function fetchGap({ since, sensors = [], rooms = [], metrics = [], maxRows = MAX_ROWS, signal } = {}) {
  const now = Date.now();
  let complete = true;
  let start = since;
  if (start < now - MAX_GAP_MS) {
    start = now - MAX_GAP_MS;
    complete = false;
  }
  const end = new Date(Math.max(now, start) + END_SLACK_MS).toISOString();
  const seen = new Set();
  const readings = [];
  const sensorChunks = chunks(sensors, NAMES_PER_QUERY);
  const roomChunks = chunks(rooms, NAMES_PER_QUERY);
  const scopes = [];
  for (const s of sensorChunks) if (s.length) scopes.push({ sensors: s, rooms: [] });
  for (const r of roomChunks) if (r.length) scopes.push({ sensors: [], rooms: r });
  for (const scope of scopes) {
    let from = new Date(start).toISOString();
    // Rows come oldest first; a full page continues from its last timestamp (rows at that
    // very instant come again and are recognised by their key).
    for (;;) {
      const body = await api.post(
        "/api/v1/data/query",
        { ...scope, metrics, start: from, end, aggregation: "raw", limit: PAGE_ROWS },
        { signal },
      );
      let added = 0;
      for (const row of body.results) {
        const k = key(row);
        if (seen.has(k)) continue;
        seen.add(k);
        readings.push(row);
        added += 1;
      }
      if (readings.length >= maxRows) {
        complete = false;
        break;
      }
      if (!body.truncated || !added) break;
      from = body.results[body.results.length - 1].timestamp;
    }
    if (!complete && readings.length >= maxRows) break;
  }
  readings.sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
  return { readings, complete };
}

/**
 * On each `resume` of `feed` (after a reconnect, or when the server says the page lagged),
 * fetch what the page missed and call `onReadings(readings, {gap: true, complete})`.
 * `scope()` returns {sensors, rooms, metrics} (called each time: the page's rooms may change).
 * Readings the feed delivered after the reconnect are not handed over twice.
 * Returns a function that stops it.
 */
export function bindGapFill(feed, scope, onReadings) {
  let newest = null; // ms of the newest reading the feed delivered (server timestamps)
  let sinceResume = null; // keys delivered by the feed while a fill is running
  let controller = null;

  const onMessage = (event) => {
    const message = event.detail;
    if (message.type !== "reading") return;
    for (const r of message.readings) {
      const at = Date.parse(r.timestamp);
      if (newest === null || at > newest) newest = at;
      if (sinceResume) sinceResume.add(key(r));
    }
  };

  const onResume = async (event) => {
    const since = (newest ?? event.detail.since) - OVERLAP_MS;
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    sinceResume = new Set();
    const delivered = sinceResume;
    feed.dispatchEvent(new CustomEvent("gap", { detail: { state: "filling", since } }));
    try {
      const { readings, complete } = await fetchGap({ ...scope(), since, signal: mine.signal });
      const missed = readings.filter((r) => !delivered.has(key(r)));
      for (const r of missed) {
        const at = Date.parse(r.timestamp);
        if (newest === null || at > newest) newest = at;
      }
      if (missed.length) onReadings(missed, { gap: true, complete });
      feed.dispatchEvent(new CustomEvent("gap", { detail: { state: "filled", since, count: missed.length, complete } }));
    } catch (error) {
      if (error.name === "AbortError") return;
      // The feed is live again: the page shows what it has, and says the hole stays.
      feed.dispatchEvent(new CustomEvent("gap", { detail: { state: "failed", since, error: String(error.message) } }));
    } finally {
      if (controller === mine) {
        controller = null;
        sinceResume = null;
      }
    }
  };

  feed.addEventListener("message", onMessage);
  feed.addEventListener("resume", onResume);
  return () => {
    feed.removeEventListener("message", onMessage);
    feed.removeEventListener("resume", onResume);
    if (controller) controller.abort();
  };
}
