/**
 * Config problems: collecting every `path: problem` of a config file and turning them into one
 * {@linkcode ConfigError}, plus the helpers that word them ("got" values, "did you mean" hints).
 * @module
 */
import { ConfigError } from "../errors.ts";

/** One problem found in a config, at a YAML path such as `scale_groups.tpu.max_slices`. */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

/**
 * A config with one or more problems. `path` is the first problem's path and `message` lists
 * every problem, one `path: problem` per line; `issues` holds them as data.
 */
export class ConfigValidationError extends ConfigError {
  readonly issues: readonly ConfigIssue[];
  /** Name of the file (or other source) the config came from, when known. */
  readonly source: string | undefined;
  constructor(issues: readonly ConfigIssue[], source?: string) {
    const [first, ...rest] = issues;
    if (!first) throw new RangeError("Cannot create ConfigValidationError: no issues");
    const lines = [first.message, ...rest.map((i) => `${i.path}: ${i.message}`)];
    super(first.path, lines.join("\n"));
    this.issues = issues;
    this.source = source;
  }
}

/** The path used for problems with the document as a whole. */
export const ROOT_PATH = "(root)";

/** `parent.key`, or `key` at the top level. */
export function joinPath(parent: string, key: string): string {
  return parent === "" || parent === ROOT_PATH ? key : `${parent}.${key}`;
}

/** Collects problems in document order. */
export class Issues {
  readonly #list: ConfigIssue[] = [];
  /** Records a problem. */
  add(path: string, message: string): void {
    this.#list.push({ path: path || ROOT_PATH, message });
  }
  /** Problems recorded so far. */
  get list(): readonly ConfigIssue[] {
    return this.#list;
  }
  /** Number of problems recorded so far. */
  get count(): number {
    return this.#list.length;
  }
  /** Throws a {@linkcode ConfigValidationError} when any problem was recorded. */
  throwIfAny(source?: string): void {
    if (this.#list.length > 0) throw new ConfigValidationError([...this.#list], source);
  }
}

/** A value as it appears in "(got …)": strings quoted, objects as short JSON. */
export function formatGot(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "number") return String(value);
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** A value with its YAML type for error messages: `a string "abc"`, `a list [1,2]`, `null`. */
export function formatGotTyped(value: unknown): string {
  if (value === null || value === undefined) return formatGot(value);
  const type = Array.isArray(value)
    ? "a list"
    : typeof value === "object"
    ? "a mapping"
    : `a ${typeof value}`;
  return `${type} ${formatGot(value)}`;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] ?? 0;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] ?? 0;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      prev[j] = Math.min(up + 1, (prev[j - 1] ?? 0) + 1, diag + cost);
      diag = up;
    }
  }
  return prev[b.length] ?? 0;
}

const squash = (s: string) => s.toLowerCase().replace(/[_\-\s]/g, "");

/**
 * The allowed key closest to `key`, if it is close enough to be a likely typo
 * (`max_slice` → `max_slices`, `maxSlices` → `max_slices`, `scale_down_delay_ms` → `scale_down_delay`).
 */
export function suggestKey(key: string, allowed: readonly string[]): string | undefined {
  const squashed = squash(key);
  const exact = allowed.find((a) =>
    squash(a) === squashed || squash(a) === squashed.replace(/ms$/, "")
  );
  if (exact) return exact;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of allowed) {
    const d = editDistance(squashed, squash(candidate));
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(squashed.length / 3)));
  return bestDistance <= limit ? best : undefined;
}
