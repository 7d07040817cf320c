// Instants as wall-clock times of one time zone (the building's, not the browser's): the
// ISO 8601 text with its offset that the API writes (2026-10-25T01:00:00+01:00), and the
// instant of a local midnight, correct on daylight-saving days (23 or 25 hours).

const formatters = new Map();

function partsOf(ms, zone) {
  let format = formatters.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-GB", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    formatters.set(zone, format);
  }
  const out = {};
  for (const { type, value } of format.formatToParts(new Date(ms))) out[type] = Number(value);
  return out;
}

/** The zone's offset from UTC at an instant, in minutes (Lisbon in summer: 60). */
export function offsetMinutes(ms, zone) {
  const p = partsOf(ms, zone);
  const wall = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return Math.round((wall - Math.floor(ms / 1000) * 1000) / 60000);
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** "2026-10-25T01:00:00+01:00": the instant as the zone's wall clock, with its offset. */
export function localIso(ms, zone) {
  const p = partsOf(ms, zone);
  const offset = offsetMinutes(ms, zone);
  const sign = offset < 0 ? "-" : "+";
  const size = Math.abs(offset);
  const millis = ms % 1000 ? `.${pad(((ms % 1000) + 1000) % 1000, 3)}000` : "";
  return (
    `${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}T${pad(p.hour)}:${pad(p.minute)}:${pad(p.second)}${millis}` +
    `${sign}${pad(Math.floor(size / 60))}:${pad(size % 60)}`
  );
}

/** The instant of the local midnight that starts the zone's day holding `ms`. */
export function localMidnight(ms, zone) {
  const p = partsOf(ms, zone);
  const wallMidnight = Date.UTC(p.year, p.month - 1, p.day);
  // The offset at midnight may differ from the offset at `ms` (a daylight-saving day): take
  // the offset of the first guess, then once more of the corrected instant.
  let guess = wallMidnight - offsetMinutes(wallMidnight, zone) * 60000;
  guess = wallMidnight - offsetMinutes(guess, zone) * 60000;
  return guess;
}
