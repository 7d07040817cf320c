// One WebSocket per page (the live feed, /api/v1/ws), subscribed to what the page shows.
//
// It reconnects by itself, with a growing, jittered delay, after a server restart or a
// network drop (also as soon as the browser says it is online again), and tells the page:
// - `state` events ("connecting", "live", "reconnecting", "offline"), for the status badge;
// - `resume(since)` after a reconnect or a `lagging` notice, with the instant the feed was
//   last known complete, so that the page fills the gap from the API;
// - `message` for every pushed message.
// A connection that goes quiet (a half-open TCP connection after a network change) is
// noticed by a ping every 15 s that gets no answer; one that never opens (the handshake
// waiting in a restarting server's backlog, or lost on the way) is given up after 10 s.
// When the browser says it went offline, the socket is closed at once (it may well still
// look open) and the next one is opened when the browser is back online.
//
// Benchmarks (bench/ui.py) set `window.__edTrace` to a sensor id: the arrival of that
// sensor's readings is then noted, with their values, in `window.__edTraced` (bounded).

const PING_EVERY_MS = 15000;
const SILENCE_MS = 35000;
const MAX_DELAY_MS = 15000;
// After this long without a connection the badge says "offline since ...".
const OFFLINE_AFTER_MS = 8000;
const CONNECT_TIMEOUT_MS = 10000;
const TRACE_KEEP = 5000;

export class LiveFeed extends EventTarget {
  /**
   * @param {string} url the feed's URL (the page configuration's `websocket`)
   * @param {object[]} subscriptions messages sent after each connect, e.g. {type: "subscribe", all: true}
   */
  constructor(url, subscriptions) {
    super();
    this.url = url;
    this.subscriptions = subscriptions;
    this.state = "connecting";
    this.socket = null;
    this.attempt = 0;
    this.lastComplete = null; // ms: until when the page has everything (null: never connected)
    this.downSince = null;
    this.lastHeard = 0;
    this.timers = {};
    this.stopped = false;
    this._onOnline = () => this._reconnectNow();
    this._onOffline = () => this._lost("offline");
  }

  start() {
    window.addEventListener("online", this._onOnline);
    window.addEventListener("offline", this._onOffline);
    this._connect();
    return this;
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this._onOnline);
    window.removeEventListener("offline", this._onOffline);
    for (const timer of Object.values(this.timers)) clearTimeout(timer);
    if (this.socket) this.socket.close(1000);
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, since: this.downSince } }));
  }

  _connect() {
    clearTimeout(this.timers.retry);
    if (this.stopped) return;
    if (navigator.onLine === false) {
      this._lost("offline");
      return;
    }
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      this._lost();
      return;
    }
    this.socket = socket;
    clearTimeout(this.timers.connect);
    this.timers.connect = setTimeout(() => {
      if (socket !== this.socket || socket.readyState !== WebSocket.CONNECTING) return;
      this._drop();
      this._lost();
    }, CONNECT_TIMEOUT_MS);
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      clearTimeout(this.timers.connect);
      this.lastHeard = Date.now();
      for (const message of this.subscriptions) socket.send(JSON.stringify(message));
      this._ping();
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      this.lastHeard = Date.now();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this._handle(message);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      if (event.code === 4401) {
        // The session ended: sign in again and come back.
        window.location.assign(`/accounts/login/?next=${encodeURIComponent(location.pathname + location.search)}`);
        return;
      }
      // A clean close: everything sent before it arrived.
      this._lost(undefined, Date.now());
    });
  }

  _handle(message) {
    if (message.type === "subscribed") {
      // Everything from here on arrives; what happened while down is fetched by the page.
      const resumed = this.lastComplete;
      this.attempt = 0;
      this.downSince = null;
      clearTimeout(this.timers.offline);
      this._setState("live");
      if (resumed !== null) this.dispatchEvent(new CustomEvent("resume", { detail: { since: resumed } }));
      this.lastComplete = Date.now();
      return;
    }
    if (message.type === "lagging") {
      // The server dropped frames this client was too slow to take: reload the gap.
      this.dispatchEvent(new CustomEvent("resume", { detail: { since: this.lastComplete ?? Date.now() } }));
      return;
    }
    if (message.type === "pong" || message.type === "welcome") return;
    if (this.state === "live") this.lastComplete = Date.now();
    if (message.type === "reading" && window.__edTrace) this._trace(message.readings);
    this.dispatchEvent(new CustomEvent("message", { detail: message }));
  }

  _ping() {
    clearTimeout(this.timers.ping);
    this.timers.ping = setTimeout(() => {
      const socket = this.socket;
      if (!socket || socket.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastHeard > SILENCE_MS) {
        this._drop(); // half-open: start over
        this._lost();
        return;
      }
      socket.send('{"type":"ping"}');
      this._ping();
    }, PING_EVERY_MS);
  }

  _trace(readings) {
    const at = performance.timeOrigin + performance.now();
    const traced = (window.__edTraced ||= []);
    for (const r of readings) if (r.sensor_id === window.__edTrace) traced.push([r.value, at]);
    if (traced.length > TRACE_KEEP) traced.splice(0, traced.length - TRACE_KEEP);
  }

  /** Forget the current socket (its late events are ignored) and close it. */
  _drop() {
    const socket = this.socket;
    this.socket = null;
    clearTimeout(this.timers.connect);
    if (!socket) return;
    try {
      socket.close(4000);
    } catch {
      // already closing
    }
  }

  /** The connection is gone; `completeUntil` (ms): until when nothing was missed, if known
   * better than "when the server was last heard from". */
  _lost(reason, completeUntil) {
    clearTimeout(this.timers.ping);
    if (this.stopped) return;
    if (this.state === "live") {
      const until = completeUntil ?? this.lastHeard;
      if (until) this.lastComplete = Math.max(this.lastComplete ?? 0, until);
    }
    if (reason === "offline") this._drop();
    if (this.downSince === null) {
      this.downSince = this.lastComplete ?? Date.now();
      this.timers.offline = setTimeout(() => this._setState("offline"), OFFLINE_AFTER_MS);
    }
    this._setState(reason === "offline" || Date.now() - this.downSince > OFFLINE_AFTER_MS ? "offline" : "reconnecting");
    if (reason === "offline") {
      // The browser says so: no attempt until its "online" event.
      clearTimeout(this.timers.retry);
      return;
    }
    const delay = Math.min(MAX_DELAY_MS, 500 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt += 1;
    clearTimeout(this.timers.retry);
    this.timers.retry = setTimeout(() => this._connect(), delay);
  }

  _reconnectNow() {
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) return;
    this.attempt = 0;
    this._setState("reconnecting");
    this._connect();
  }
}
