/**
 * `iris job run -f job.yaml`: a job file holds the same fields as `job run`'s flags (snake_case
 * or kebab-case keys), and a `command`. Read into flag values, with each key's line kept so an
 * error names `job.yaml:LINE`.
 * @module
 */
import { isMap, isScalar, isSeq, LineCounter, type Pair, parseDocument } from "yaml";
import { suggestKey } from "../config/mod.ts";
import { UsageError } from "./args.ts";

/** What a job file gives: flag-shaped values and where each came from. */
export interface JobFile {
  readonly source: string;
  readonly values: Record<string, string | boolean | string[]>;
  /** Command (argv) from `command:`, if any. */
  readonly command?: string[];
  /** Line of each key (flag name). */
  readonly lines: Record<string, number>;
}

/** Keys a job file may not set (they are about this command, not the job). */
const NOT_IN_FILE = new Set(["controller", "token-file", "file", "detach", "cancel-on-exit"]);

/** Reads and checks a job file against `options` (the flag names of `job run`). */
export async function readJobFile(
  path: string,
  options: Readonly<Record<string, { type: "string" | "boolean"; multiple?: boolean }>>,
): Promise<JobFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new UsageError(
      `--file: cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return parseJobFile(text, path, options);
}

/** Parses job-file text (see {@linkcode readJobFile}). */
export function parseJobFile(
  text: string,
  source: string,
  options: Readonly<Record<string, { type: "string" | "boolean"; multiple?: boolean }>>,
): JobFile {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number | undefined) => lineCounter.linePos(offset ?? 0).line;
  const fail = (line: number, message: string): never => {
    throw new UsageError(`${source}:${line}: ${message}`);
  };
  const e = doc.errors[0];
  if (e) fail(at(e.pos[0]), `YAML syntax error: ${e.message.split("\n")[0]}`);
  if (!isMap(doc.contents)) fail(1, "a job file is a mapping of fields (name: …, command: …)");
  const allowed = [
    "command",
    ...Object.keys(options).filter((k) => !NOT_IN_FILE.has(k)),
  ];
  const values: Record<string, string | boolean | string[]> = {};
  const lines: Record<string, number> = {};
  let command: string[] | undefined;
  const scalarText = (v: unknown, line: number, key: string): string => {
    if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") return String(v);
    return fail(line, `${key}: expected a single value, got ${v === null ? "nothing" : typeof v}`);
  };
  for (const pair of (doc.contents as { items: Pair[] }).items) {
    const keyNode = pair.key;
    const line = at(isScalar(keyNode) ? keyNode.range?.[0] : undefined);
    const raw = isScalar(keyNode) ? String(keyNode.value) : "";
    const key = raw.replaceAll("_", "-");
    if (!allowed.includes(key)) {
      const hint = suggestKey(key, allowed);
      fail(
        line,
        `unknown field ${JSON.stringify(raw)}${
          hint ? ` (did you mean ${hint.replaceAll("-", "_")}?)` : ""
        }`,
      );
    }
    const value = (pair.value as { toJSON?: () => unknown } | null)?.toJSON?.() ??
      (isScalar(pair.value) ? pair.value.value : null);
    const valueLine = at(
      (pair.value as { range?: [number, number, number] } | null)?.range?.[0] ??
        (isScalar(keyNode) ? keyNode.range?.[0] : undefined),
    );
    lines[key] = line;
    if (key === "command") {
      if (typeof value === "string") command = ["sh", "-c", value];
      else if (Array.isArray(value) && value.length > 0) {
        command = value.map((v) => scalarText(v, valueLine, "command"));
      } else fail(line, "command: give a string (run by sh -c) or a list of arguments");
      continue;
    }
    const spec = options[key]!;
    if (key === "env" && value !== null && typeof value === "object" && !Array.isArray(value)) {
      values.env = Object.entries(value as Record<string, unknown>).map(([k, v]) =>
        `${k}=${scalarText(v, line, `env.${k}`)}`
      );
      continue;
    }
    if (spec.type === "boolean") {
      if (typeof value !== "boolean") fail(line, `${raw}: expected true or false`);
      values[key] = value as boolean;
    } else if (spec.multiple) {
      const items = Array.isArray(value) ? value : [value];
      if (isSeq(pair.value) && items.length === 0) continue;
      values[key] = items.map((v) => scalarText(v, line, raw));
    } else {
      values[key] = scalarText(value, line, raw);
    }
  }
  return { source, values, command, lines };
}

/**
 * Rewrites a flag error (`--cpu must be …`) about a value that came from the job file as
 * `job.yaml:LINE: cpu must be …`; other errors pass through.
 */
export function fileError(err: unknown, file: JobFile, fromFlags: ReadonlySet<string>): unknown {
  if (!(err instanceof UsageError)) return err;
  const m = /^--([a-z-]+)\b(.*)$/s.exec(err.message);
  if (!m || fromFlags.has(m[1]!) || file.lines[m[1]!] === undefined) return err;
  return new UsageError(
    `${file.source}:${file.lines[m[1]!]}: ${m[1]!.replaceAll("-", "_")}${m[2]}`,
  );
}
