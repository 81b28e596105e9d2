/** Formatting shared by the CLI, the worker and the smoke test. */

/** Bytes for people: "0 B", "512.0 KiB", "5.9 GiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
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
