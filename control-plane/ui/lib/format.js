// Numbers, money and times for display, in the chosen language and the
// configured time zone.
import { lang } from "./i18n.js";

let timeZone = "UTC";

export function setTimeZone(tz) {
  timeZone = tz || "UTC";
}

export function zone() {
  return timeZone;
}

function locale() {
  return lang() === "zh" ? "zh-CN" : "en-US";
}

/** A decimal string from the API as US dollars: cents, or up to six
 * decimals with `precise` and for any sum under a cent (one request often
 * costs less than a cent, and "$0.00" would hide it). */
export function money(value, { precise = false } = {}) {
  if (value === null || value === undefined || value === "") return "—";
  const n = Number(value);
  const tiny = n !== 0 && Math.abs(n) < 0.01;
  return new Intl.NumberFormat(locale(), {
    style: "currency",
    currency: "USD",
    minimumFractionDigits: 2,
    maximumFractionDigits: precise || tiny ? 6 : 2,
  }).format(n);
}

export function count(value) {
  if (value === null || value === undefined) return "—";
  return new Intl.NumberFormat(locale()).format(value);
}

export function time(value, { short = false } = {}) {
  if (!value) return "—";
  const options = short
    ? { timeZone, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
    : { timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
  return new Intl.DateTimeFormat(locale(), options).format(new Date(value));
}

/** HH:MM in the configured zone. */
export function clock(value) {
  return new Intl.DateTimeFormat(locale(), { timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(new Date(value));
}

export function ms(value) {
  return value === null || value === undefined ? "—" : `${count(value)} ms`;
}

/** An RFC 3339 instant as the value of an <input type="datetime-local"> in
 * the configured zone, and back. */
export function toLocalInput(value) {
  if (!value) return "";
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-CA", {
      timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    })
      .formatToParts(new Date(value))
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}`;
}

export function fromLocalInput(value) {
  if (!value) return null;
  // The wall time in `timeZone`: guess it as UTC, then correct by the zone's
  // offset at that instant (twice, for the rare guess across a DST change).
  const [date, clock] = value.split("T");
  const [y, mo, d] = date.split("-").map(Number);
  const [hh, mm] = clock.split(":").map(Number);
  const wall = Date.UTC(y, mo - 1, d, hh, mm);
  let instant = wall;
  for (let i = 0; i < 2; i += 1) {
    const shown = new Date(toLocalInput(new Date(instant).toISOString()) + ":00Z").getTime();
    instant += wall - shown;
  }
  return new Date(instant).toISOString().replace(".000Z", "Z");
}
