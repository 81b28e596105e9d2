/**
 * Command descriptions, argument parsing (node:util parseArgs, strict) and generated --help.
 * Commands are plain data; each command's `run` gets parsed values and returns an exit code.
 * @module
 */
import { parseArgs } from "node:util";
export { formatBytes } from "../format.ts";

/** One option of a command. */
export interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly short?: string;
  readonly multiple?: boolean;
  readonly description: string;
  /** Shown in help as the value name: --port PORT. */
  readonly value?: string;
  readonly default?: string | boolean;
}

/** Parsed command-line values. */
export interface Parsed {
  readonly values: Record<string, string | boolean | string[] | undefined>;
  readonly positionals: string[];
  /** Everything after a bare `--`. */
  readonly rest: string[];
}

/** Where a command writes. Tests pass collectors. */
export interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** True when stdout is a terminal (enables live progress). */
  readonly isTty: boolean;
  /**
   * Asks a yes/no question on the terminal; undefined when stdin is not a terminal (commands
   * then refuse what needs confirmation unless told -y).
   */
  readonly confirm?: (question: string) => Promise<boolean>;
}

/** A command. */
export interface CommandSpec {
  /** "job run" */
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly description?: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
  readonly examples?: readonly string[];
  /** Positional arguments allowed (besides those after `--`). */
  readonly positionals?: { readonly min: number; readonly max: number; readonly names: string };
  run(args: Parsed, io: Io, signal: AbortSignal): Promise<number>;
}

/** A command-line mistake: printed with a hint to --help, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const HELP: OptionSpec = { type: "boolean", short: "h", description: "Show this help" };

/** Parses `argv` for `cmd`; throws UsageError on unknown options or wrong positionals. */
export function parseCommand(cmd: CommandSpec, argv: readonly string[]): Parsed {
  const dash = argv.indexOf("--");
  const head = dash >= 0 ? argv.slice(0, dash) : argv;
  const rest = dash >= 0 ? argv.slice(dash + 1) : [];
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean }
  > = { help: HELP };
  for (const [name, o] of Object.entries(cmd.options)) {
    options[name] = {
      type: o.type,
      ...(o.short ? { short: o.short } : {}),
      ...(o.multiple ? { multiple: true } : {}),
    };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: [...head], options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(
      err instanceof Error
        ? err.message.replace(/\. To specify a positional.*$/s, "")
        : String(err),
    );
  }
  const values = { ...parsed.values } as Record<string, string | boolean | string[] | undefined>;
  for (const [name, o] of Object.entries(cmd.options)) {
    if (values[name] === undefined && o.default !== undefined) values[name] = o.default;
  }
  if (!values.help) {
    const p = cmd.positionals ?? { min: 0, max: 0, names: "" };
    if (parsed.positionals.length < p.min) throw new UsageError(`missing ${p.names}`);
    if (parsed.positionals.length > p.max) {
      throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[p.max])}`);
    }
  }
  return { values, positionals: parsed.positionals, rest };
}

/** The --help text of a command. */
export function commandHelp(cmd: CommandSpec): string {
  const lines = [`Usage: iris ${cmd.usage}`, "", cmd.summary];
  if (cmd.description) lines.push("", cmd.description);
  const entries = Object.entries({ ...cmd.options, help: HELP });
  const left = entries.map(([name, o]) =>
    `  ${o.short ? `-${o.short}, ` : "    "}--${name}${
      o.type === "string" ? ` ${o.value ?? "VALUE"}` : ""
    }`
  );
  const width = Math.max(...left.map((l) => l.length)) + 2;
  lines.push("", "Options:");
  entries.forEach(([, o], i) => {
    const dflt = o.default !== undefined && o.default !== false ? ` (default: ${o.default})` : "";
    const rep = o.multiple ? " (repeatable)" : "";
    lines.push(`${left[i]!.padEnd(width)}${o.description}${rep}${dflt}`);
  });
  if (cmd.examples?.length) lines.push("", "Examples:", ...cmd.examples.map((e) => `  ${e}`));
  return lines.join("\n") + "\n";
}

/** A string option's value (or undefined). */
export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === "string" ? v : undefined;
}

/** A repeatable string option's values. */
export function strs(p: Parsed, name: string): string[] {
  const v = p.values[name];
  return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
}

/**
 * A repeatable option's values with comma lists split: `--state pending,running --state killed`
 * gives three values.
 */
export function list(p: Parsed, name: string): string[] {
  return strs(p, name).flatMap((v) => v.split(",")).map((v) => v.trim()).filter((v) => v !== "");
}

/** A boolean option. */
export function bool(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

/** Parses a number option with bounds; UsageError naming the flag otherwise. */
export function num(
  p: Parsed,
  name: string,
  opts: { min: number; max: number; integer?: boolean },
): number | undefined {
  const raw = str(p, name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (
    raw.trim() === "" || !Number.isFinite(n) || n < opts.min || n > opts.max ||
    (opts.integer && !Number.isInteger(n))
  ) {
    throw new UsageError(
      `--${name} must be ${
        opts.integer ? "an integer" : "a number"
      } between ${opts.min} and ${opts.max} (got ${JSON.stringify(raw)})`,
    );
  }
  return n;
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  ki: 2 ** 10,
  kib: 2 ** 10,
  mi: 2 ** 20,
  mib: 2 ** 20,
  gi: 2 ** 30,
  gib: 2 ** 30,
  ti: 2 ** 40,
  tib: 2 ** 40,
};

/** Parses "512MiB", "2GB", "1.5Gi", "1048576" into bytes; undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return undefined;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  return unit === undefined ? undefined : Math.round(Number(m[1]) * unit);
}

/** Renders rows as an aligned text table. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const fmt = (r: readonly string[]) =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [fmt(header), ...rows.map(fmt)].join("\n") + "\n";
}

export { Interrupted, interruptOf, signalExitCode } from "./interrupt.ts";
