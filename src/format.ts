/**
 * The one place quantities are spelled for people: bytes, CPU, durations and times, used alike by
 * the CLI, the dashboard (bundled into the browser: this module imports nothing), the worker, the
 * smoke test and error messages. The config-file spellings ("8GiB", "1h30m": what a config may say
 * and `src/config/units.ts` parses back) live here too, under their own names.
 * @module
 */

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"] as const;

/** Below this many bytes a size is given exactly ("2000 B"), so limits close together differ. */
const EXACT_BYTES_BELOW = 10 * 1024;

/**
 * Bytes for people: exact below 10 KiB ("0 B", "2000 B"), then binary units with three
 * significant digits and no trailing zeros ("12.3 MiB", "1.25 TiB", "64 GiB", "183 MiB").
 * Missing, negative or non-finite → "0 B".
 */
export function formatBytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n) || n <= 0) return "0 B";
  if (n < EXACT_BYTES_BELOW) return `${Math.round(n)} B`;
  let v = n;
  let i = 0;
  while (v >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${trimZeros(v.toFixed(digits))} ${BYTE_UNITS[i]}`;
}

/**
 * CPU as a number of cores, to the millicore and without trailing zeros: 4000 → "4", 500 → "0.5",
 * 1250 → "1.25", 1234.4 → "1.234" (tables, config summaries and the `--cpu` flag). Missing or
 * non-finite → "0".
 */
export function formatCores(millicores: number | undefined): string {
  if (millicores === undefined || !Number.isFinite(millicores)) return "0";
  // Integer millicores over 1000 print exactly ("1.234"); `+ 0` turns a rounded -0 into 0.
  return String(Math.round(millicores) / 1000 + 0);
}

/** CPU for people, with its unit: 500 → "0.5 cpu", 2000 → "2 cpu"; missing → "0 cpu". */
export function formatCpu(millicores: number | undefined): string {
  return `${formatCores(millicores)} cpu`;
}

/**
 * A duration for people: "0s", "850ms", "12.3s", "4m05s", "2h03m", "3d04h". Missing, negative
 * or non-finite → "0s".
 */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms) || ms <= 0) return "0s";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const totalSeconds = Math.round(ms / 1000);
  const m = Math.floor(totalSeconds / 60);
  if (m < 60) return `${m}m${pad2(totalSeconds % 60)}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${pad2(m % 60)}m`;
  return `${Math.floor(h / 24)}d${pad2(h % 24)}h`;
}

/** A point in time, UTC to the second: "2026-12-02T15:32:56Z". Zero or missing → "-". */
export function formatTimestamp(epochMs: number | undefined): string {
  return epochMs ? new Date(epochMs).toISOString().slice(0, 19) + "Z" : "-";
}

/** "2026-11-23 09:20:31" in local time (or UTC when `utc`). Zero or missing → "—". */
export function formatDateTime(epochMs: number | undefined, utc = false): string {
  if (!epochMs) return "—";
  const d = new Date(epochMs);
  const [y, mo, da, h, mi, s] = utc
    ? [
      d.getUTCFullYear(),
      d.getUTCMonth() + 1,
      d.getUTCDate(),
      d.getUTCHours(),
      d.getUTCMinutes(),
      d.getUTCSeconds(),
    ]
    : [
      d.getFullYear(),
      d.getMonth() + 1,
      d.getDate(),
      d.getHours(),
      d.getMinutes(),
      d.getSeconds(),
    ];
  return `${y}-${pad2(mo)}-${pad2(da)} ${pad2(h)}:${pad2(mi)}:${pad2(s)}`;
}

/** "09:20:31.042" for log lines, local time (or UTC when `utc`). */
export function formatClock(epochMs: number, utc = false): string {
  const d = new Date(epochMs);
  const [h, mi, s, ms] = utc
    ? [d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds()]
    : [d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()];
  return `${pad2(h)}:${pad2(mi)}:${pad2(s)}.${String(ms).padStart(3, "0")}`;
}

/**
 * A size as a config file spells it, which `parseBytes` reads back: "8GiB", "512MiB", "1.5GiB",
 * "100B" (config summaries and validation messages).
 */
export function formatConfigBytes(bytes: number): string {
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < BYTE_UNITS.length - 1) {
    value /= 1024;
    i++;
  }
  const text = Number.isInteger(value) ? String(value) : value.toFixed(1).replace(/\.0$/, "");
  return `${text}${BYTE_UNITS[i]}`;
}

/**
 * A duration as a config file spells it, which `parseDurationMs` reads back: "250ms", "30s",
 * "5m", "1h30m", "1m30s".
 */
export function formatConfigDuration(msValue: number): string {
  if (msValue < 1000 || msValue % 1000 !== 0) {
    return msValue < 1000 ? `${msValue}ms` : `${msValue / 1000}s`;
  }
  const s = msValue / 1000;
  if (s < 60) return `${s}s`;
  if (s < 3600) return s % 60 === 0 ? `${s / 60}m` : `${Math.floor(s / 60)}m${s % 60}s`;
  const m = Math.floor(s / 60);
  return m % 60 === 0 && s % 60 === 0 ? `${m / 60}h` : `${Math.floor(m / 60)}h${m % 60}m`;
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

function trimZeros(s: string): string {
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
}

/**
 * A possibly multi-line message on one line: its lines trimmed and joined with " | ", so
 * "exited with code 1; last stderr lines:\nA\nB" reads "…; last stderr lines: A | B" in a log
 * line or a table cell instead of stopping at the colon.
 */
export function oneLine(text: string): string {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "");
  return lines.map((l, i) => i > 0 && lines[i - 1]!.endsWith(":") ? ` ${l}` : i > 0 ? ` | ${l}` : l)
    .join("");
}

/**
 * A function giving `new Date(epochMs).toISOString()` that makes the date and time of day once
 * per second, for many stamps in a row (a controller's log lines).
 */
export function isoStamper(): (epochMs: number) => string {
  let stampSecond = NaN;
  let prefix = "";
  return (epochMs) => {
    // Date truncates a fractional time toward zero.
    const ms = Math.trunc(epochMs);
    const second = Math.floor(ms / 1000);
    if (second !== stampSecond) {
      const iso = new Date(second * 1000).toISOString();
      // Years past 9999 (or before 0) are written longer: those are stamped whole.
      if (iso.length !== 24) return new Date(epochMs).toISOString();
      stampSecond = second;
      prefix = iso.slice(0, 20);
    }
    const frac = ms - second * 1000;
    return `${prefix}${frac < 10 ? "00" : frac < 100 ? "0" : ""}${frac}Z`;
  };
}
