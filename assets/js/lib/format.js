// Numbers and times as the pages show them: the building's time zone (not the browser's),
// tabular figures, units that fit the magnitude.

let zone = "UTC";
let locale;

/** Set once from the page's configuration. */
export function setTimeZone(name) {
  zone = name || "UTC";
}

const cache = new Map();
function formatter(key, options) {
  let found = cache.get(key + zone);
  if (!found) {
    found = new Intl.DateTimeFormat(locale, { timeZone: zone, hourCycle: "h23", ...options });
    cache.set(key + zone, found);
  }
  return found;
}

/** 14:05 */
export function time(value) {
  return formatter("t", { hour: "2-digit", minute: "2-digit" }).format(new Date(value));
}

/** 14:05:09 */
export function timeSeconds(value) {
  return formatter("ts", { hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(new Date(value));
}

/** 3 Dec 2026, 14:05 */
export function dateTime(value) {
  return formatter("dt", { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" }).format(
    new Date(value),
  );
}

/** 3 Dec */
export function day(value) {
  return formatter("d", { day: "numeric", month: "short" }).format(new Date(value));
}

/** Thu 3 Dec */
export function weekday(value) {
  return formatter("wd", { weekday: "short", day: "numeric", month: "short" }).format(new Date(value));
}

/** Dec 2026 */
export function month(value) {
  return formatter("m", { month: "short", year: "numeric" }).format(new Date(value));
}

/** The building-local wall-clock parts of an instant: {year, month, day, hour, minute, weekday}. */
export function localParts(value) {
  const parts = {};
  for (const { type, value: v } of formatter("parts", {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    weekday: "short",
  }).formatToParts(new Date(value))) {
    parts[type] = v;
  }
  return parts;
}

const numberCache = new Map();
/** A number with `digits` decimals, grouped. */
export function number(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  let found = numberCache.get(digits);
  if (!found) {
    found = new Intl.NumberFormat(locale, { minimumFractionDigits: digits, maximumFractionDigits: digits });
    numberCache.set(digits, found);
  }
  return found.format(value);
}

/** Power given in W: "850 W", "12.4 kW", "1.20 MW". */
export function power(watts) {
  if (watts === null || watts === undefined) return "–";
  const size = Math.abs(watts);
  if (size >= 1e6) return `${number(watts / 1e6, 2)} MW`;
  if (size >= 1e3) return `${number(watts / 1e3, 1)} kW`;
  return `${number(watts, 0)} W`;
}

/** Energy given in kWh: "850 Wh", "12.4 kWh", "3.20 MWh". */
export function energy(kwh) {
  if (kwh === null || kwh === undefined) return "–";
  const size = Math.abs(kwh);
  if (size >= 1e3) return `${number(kwh / 1e3, 2)} MWh`;
  if (size < 1 && size > 0) return `${number(kwh * 1e3, 0)} Wh`;
  return `${number(kwh, 1)} kWh`;
}

/** The unit and digits of each metric. */
export const METRICS = {
  power: { label: "Power", unit: "W", digits: 0 },
  energy: { label: "Energy", unit: "kWh", digits: 2 },
  co2: { label: "CO₂", unit: "ppm", digits: 0 },
  temperature: { label: "Temperature", unit: "°C", digits: 1 },
  humidity: { label: "Humidity", unit: "%", digits: 0 },
  occupancy: { label: "Occupancy", unit: "people", digits: 0 },
};

/** "412 ppm", "21.5 °C" ... */
export function metric(name, value) {
  const m = METRICS[name];
  if (!m) return number(value, 1);
  if (name === "power") return power(value);
  if (name === "energy") return energy(value);
  return value === null || value === undefined ? "–" : `${number(value, m.digits)} ${m.unit}`;
}

/** "3 min ago", "2 h ago", "4 days ago" from an instant. */
export function ago(value, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - new Date(value).getTime()) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}
