/**
 * Typed, path-aware reads from an untrusted YAML tree. Every read either returns a valid value,
 * returns undefined for an absent key, or records a `path: problem` and returns undefined; it
 * never throws. Successful reads are remembered in `present` so later checks and defaults can
 * tell "given" from "absent" (proto3 scalars cannot).
 * @module
 */
import {
  CPU_HINT,
  DURATION_HINT,
  parseCpuMillicores,
  parseDurationMs,
  parseSizeBytes,
  SIZE_HINT,
} from "./units.ts";
import { parseDuration } from "../time.ts";
import { formatGot, formatGotTyped, Issues, joinPath, suggestKey } from "./issues.ts";

/** A YAML mapping with string keys. */
export type YamlMap = Readonly<Record<string, unknown>>;

/** Bounds of an integer field. */
export interface IntBounds {
  readonly min: number;
  readonly max?: number;
}

const INT32_MAX = 2 ** 31 - 1;

/** Plain mappings only: lists, Maps, Sets and byte arrays (YAML !!omap, !!set, !!binary) are not. */
function isMap(value: unknown): value is YamlMap {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Reads fields, collecting problems instead of throwing. */
export class YamlReader {
  readonly issues: Issues;
  /** Paths whose values were given and valid. */
  readonly present: Set<string> = new Set();
  /** The YAML path each list-item message came from (list indices are lost in the proto). */
  readonly origins: WeakMap<object, string> = new WeakMap();

  constructor(issues: Issues = new Issues()) {
    this.issues = issues;
  }

  /** Records a problem at `path`. */
  problem(path: string, message: string): void {
    this.issues.add(path, message);
  }

  /**
   * Checks that `value` is a mapping whose keys are all in `keys` (unknown keys are reported with
   * a "did you mean" hint). With `nullIsEmpty`, a bare `key:` counts as `{}`.
   */
  mapping(
    value: unknown,
    path: string,
    keys: readonly string[],
    options: { nullIsEmpty?: boolean } = {},
  ): YamlMap | undefined {
    if (value === null && options.nullIsEmpty) return {};
    if (!isMap(value)) {
      this.problem(path, `must be a mapping (got ${formatGotTyped(value)})`);
      return undefined;
    }
    for (const key of Object.keys(value)) {
      if (keys.includes(key)) continue;
      if (keys.length === 0) {
        this.problem(joinPath(path, key), "unknown key (this mapping takes no keys)");
        continue;
      }
      const hint = suggestKey(key, keys);
      this.problem(
        joinPath(path, key),
        hint
          ? `unknown key (did you mean ${hint}?)`
          : `unknown key (expected one of ${keys.join(", ")})`,
      );
    }
    return value;
  }

  /** A mapping with user-chosen keys (group names, env names): its entries, or undefined. */
  entries(value: unknown, path: string): [string, unknown][] | undefined {
    if (value === null) return [];
    if (!isMap(value)) {
      this.problem(path, `must be a mapping (got ${formatGotTyped(value)})`);
      return undefined;
    }
    return Object.entries(value);
  }

  #get(map: YamlMap, key: string): unknown {
    return Object.hasOwn(map, key) ? map[key] : undefined;
  }

  #ok<T>(path: string, value: T): T {
    this.present.add(path);
    return value;
  }

  /** A string, optionally non-empty and matching `pattern` (described by `patternHint`). */
  string(
    map: YamlMap,
    key: string,
    path: string,
    options: { nonEmpty?: boolean; pattern?: RegExp; patternHint?: string } = {},
  ): string | undefined {
    const p = joinPath(path, key);
    const value = this.#get(map, key);
    if (value === undefined) return undefined;
    if (typeof value !== "string") {
      this.problem(p, `must be a string (got ${formatGot(value)})`);
      return undefined;
    }
    if (options.nonEmpty && value.trim() === "") {
      this.problem(p, "must not be empty");
      return undefined;
    }
    if (options.pattern && !options.pattern.test(value)) {
      this.problem(
        p,
        `must be ${options.patternHint ?? `a string matching ${options.pattern}`} (got ${
          formatGot(value)
        })`,
      );
      return undefined;
    }
    return this.#ok(p, value);
  }

  /** An integer within bounds (int32 by default). */
  integer(map: YamlMap, key: string, path: string, bounds: IntBounds): number | undefined {
    const p = joinPath(path, key);
    const value = this.#get(map, key);
    if (value === undefined) return undefined;
    const max = bounds.max ?? INT32_MAX;
    if (
      typeof value !== "number" || !Number.isInteger(value) || value < bounds.min || value > max
    ) {
      const range = bounds.max === undefined ? `≥ ${bounds.min}` : `${bounds.min}..${bounds.max}`;
      this.problem(p, `must be an integer ${range} (got ${formatGot(value)})`);
      return undefined;
    }
    return this.#ok(p, value);
  }

  /** A boolean (YAML true/false). */
  boolean(map: YamlMap, key: string, path: string): boolean | undefined {
    const p = joinPath(path, key);
    const value = this.#get(map, key);
    if (value === undefined) return undefined;
    if (typeof value !== "boolean") {
      this.problem(p, `must be true or false (got ${formatGot(value)})`);
      return undefined;
    }
    return this.#ok(p, value);
  }

  /** A duration in milliseconds; `positive` rejects 0. */
  duration(
    map: YamlMap,
    key: string,
    path: string,
    options: { positive?: boolean } = {},
  ): number | undefined {
    const p = joinPath(path, key);
    const value = this.#get(map, key);
    if (value === undefined) return undefined;
    const msValue = parseDurationMs(value);
    if (msValue === undefined) {
      const tooLong = (typeof value === "number" || typeof value === "string") &&
        parseDuration(value) !== undefined;
      this.problem(
        p,
        `must be ${tooLong ? "at most 1 year" : DURATION_HINT} (got ${formatGot(value)})`,
      );
      return undefined;
    }
    if (options.positive && msValue <= 0) {
      this.problem(p, `must be > 0 (got ${formatGot(value)})`);
      return undefined;
    }
    return this.#ok(p, msValue);
  }

  /** A size in bytes; `positive` rejects 0. */
  size(
    map: YamlMap,
    key: string,
    path: string,
    options: { positive?: boolean } = {},
  ): number | undefined {
    const p = joinPath(path, key);
    const value = this.#get(map, key);
    if (value === undefined) return undefined;
    const bytes = parseSizeBytes(value);
    if (bytes === undefined) {
      this.problem(p, `must be ${SIZE_HINT} (got ${formatGot(value)})`);
      return undefined;
    }
    if (options.positive && bytes <= 0) {
      this.problem(p, `must be > 0 (got ${formatGot(value)})`);
      return undefined;
    }
    return this.#ok(p, bytes);
  }

  /** CPU in millicores, > 0. */
  cpu(map: YamlMap, key: string, path: string): number | undefined {
    const p = joinPath(path, key);
    const value = this.#get(map, key);
    if (value === undefined) return undefined;
    const millicores = parseCpuMillicores(value);
    if (millicores === undefined || millicores <= 0) {
      this.problem(p, `must be ${CPU_HINT}, > 0 (got ${formatGot(value)})`);
      return undefined;
    }
    return this.#ok(p, millicores);
  }

  /** One of a fixed set of strings. */
  oneOf<T extends string>(
    map: YamlMap,
    key: string,
    path: string,
    values: readonly T[],
  ): T | undefined {
    const p = joinPath(path, key);
    const value = this.#get(map, key);
    if (value === undefined) return undefined;
    const found = values.find((v) => v === value);
    if (found === undefined) {
      this.problem(p, `must be one of ${values.join(", ")} (got ${formatGot(value)})`);
      return undefined;
    }
    return this.#ok(p, found);
  }

  /** A list of non-empty strings. */
  stringList(map: YamlMap, key: string, path: string): string[] | undefined {
    const p = joinPath(path, key);
    const value = this.#get(map, key);
    if (value === undefined) return undefined;
    if (!Array.isArray(value)) {
      this.problem(p, `must be a list of strings (got ${formatGot(value)})`);
      return undefined;
    }
    const out: string[] = [];
    let bad = false;
    value.forEach((item: unknown, i) => {
      if (typeof item === "string" && item.trim() !== "") out.push(item);
      else {
        this.problem(`${p}[${i}]`, `must be a non-empty string (got ${formatGot(item)})`);
        bad = true;
      }
    });
    return bad ? undefined : this.#ok(p, out);
  }

  /**
   * A mapping of string keys to scalar values; numbers and booleans are kept as their YAML text
   * ("1", "true"). Keys must match `keyPattern` when given.
   */
  stringMap(
    map: YamlMap,
    key: string,
    path: string,
    options: { keyPattern?: RegExp; keyHint?: string } = {},
  ): Record<string, string> | undefined {
    const p = joinPath(path, key);
    const value = this.#get(map, key);
    if (value === undefined) return undefined;
    const entries = this.entries(value, p);
    if (!entries) return undefined;
    const out: Record<string, string> = {};
    let bad = false;
    for (const [k, v] of entries) {
      const kp = joinPath(p, k);
      if (k.trim() === "" || (options.keyPattern && !options.keyPattern.test(k))) {
        this.problem(kp, `key must be ${options.keyHint ?? "a non-empty string"}`);
        bad = true;
      } else if (
        typeof v === "string" || typeof v === "boolean" ||
        (typeof v === "number" && Number.isFinite(v))
      ) {
        out[k] = String(v);
      } else {
        this.problem(kp, `must be a string, number or boolean (got ${formatGot(v)})`);
        bad = true;
      }
    }
    return bad ? undefined : this.#ok(p, out);
  }

  /** A sub-mapping at `map[key]` (checked against `keys`), or undefined when absent. */
  child(
    map: YamlMap,
    key: string,
    path: string,
    keys: readonly string[],
    options: { nullIsEmpty?: boolean } = {},
  ):
    | YamlMap
    | undefined {
    const value = this.#get(map, key);
    if (value === undefined) return undefined;
    return this.mapping(value, joinPath(path, key), keys, options);
  }

  /**
   * The one key of a oneof group (`local`, `gcp`, …) set in `map`, or undefined after recording
   * "must set exactly one of …" at `path`.
   */
  oneofKey<T extends string>(map: YamlMap, path: string, kinds: readonly T[]): T | undefined {
    const set = kinds.filter((k) => Object.hasOwn(map, k) && map[k] !== undefined);
    const [only] = set;
    if (set.length === 1 && only !== undefined) return only;
    this.problem(
      path,
      `must set exactly one of ${kinds.join(", ")} (got ${
        set.length === 0 ? "none" : set.join(", ")
      })`,
    );
    return undefined;
  }
}
