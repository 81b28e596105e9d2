/**
 * Attribute constraints and accelerator matching shared by the scheduler and the autoscaler,
 * plus a posting-list index over attributes. Pure; does not place tasks or size groups.
 *
 * Taints: a taint is a plain attribute named `taint:<name>` and gets no special treatment here.
 * Jobs avoid tainted workers with a NOT_EXISTS constraint on the taint key (as Iris does);
 * a job that says nothing about a taint may land on a tainted worker.
 * @module
 */
import type { AcceleratorSpec, Attributes, AttributeScalar, ConstraintSpec } from "../types.ts";

/** Prefix of taint attribute keys. */
export const TAINT_PREFIX = "taint:";

/** A number for a number or a numeric string ("4", " 2.5 "); undefined otherwise. */
function toNumber(v: AttributeScalar): number | undefined {
  if (typeof v === "number") return Number.isFinite(v) ? v : undefined;
  if (typeof v !== "string") return undefined;
  const t = v.trim();
  if (t === "") return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * Canonical form of a value used for equality and indexing: numbers and numeric strings compare
 * numerically ("4" = 4 = "4.0"), booleans equal the strings "true"/"false", other strings as is.
 */
export function canonicalValue(v: AttributeScalar): string {
  const n = toNumber(v);
  if (n !== undefined) return `n:${n}`;
  if (typeof v === "boolean") return `b:${v}`;
  if (v === "true" || v === "false") return `b:${v}`;
  return `s:${v}`;
}

/** Equality under {@linkcode canonicalValue}. */
export function valuesEqual(a: AttributeScalar, b: AttributeScalar): boolean {
  return canonicalValue(a) === canonicalValue(b);
}

/**
 * Whether attributes satisfy one constraint (the `preferred` flag is ignored here).
 * - eq / in: key present and equal (numeric-aware) to the value / one of the values.
 * - ne: key absent, or present with a different value.
 * - exists / not_exists: key present / absent.
 * - gt, ge, lt, le: both sides numeric (number or numeric string); anything else fails.
 */
export function matchesConstraint(attrs: Attributes, c: ConstraintSpec): boolean {
  const has = Object.hasOwn(attrs, c.key);
  const v = has ? attrs[c.key] : undefined;
  switch (c.op) {
    case "exists":
      return has;
    case "not_exists":
      return !has;
    case "eq":
      return v !== undefined && c.value !== undefined && valuesEqual(v, c.value);
    case "ne":
      return v === undefined || c.value === undefined || !valuesEqual(v, c.value);
    case "in": {
      if (v === undefined || !c.values) return false;
      const cv = canonicalValue(v);
      return c.values.some((x) => canonicalValue(x) === cv);
    }
    case "gt":
    case "ge":
    case "lt":
    case "le": {
      if (v === undefined || c.value === undefined) return false;
      const a = toNumber(v);
      const b = toNumber(c.value);
      if (a === undefined || b === undefined) return false;
      if (c.op === "gt") return a > b;
      if (c.op === "ge") return a >= b;
      if (c.op === "lt") return a < b;
      return a <= b;
    }
  }
}

/** Whether attributes satisfy every REQUIRED constraint (preferred ones are skipped). */
export function matchesRequired(
  attrs: Attributes,
  constraints: readonly ConstraintSpec[],
): boolean {
  for (const c of constraints) {
    if (!c.preferred && !matchesConstraint(attrs, c)) return false;
  }
  return true;
}

/** How many PREFERRED constraints the attributes satisfy (higher ranks first). */
export function preferenceScore(attrs: Attributes, constraints: readonly ConstraintSpec[]): number {
  let score = 0;
  for (const c of constraints) {
    if (c.preferred && matchesConstraint(attrs, c)) score++;
  }
  return score;
}

/**
 * Whether an offered accelerator serves a request. Kinds must be equal: a "cpu" request runs only
 * on cpu (accelerator-less) machines, so cpu work never occupies TPU or GPU hosts. An empty or
 * "auto" requested variant matches any variant of the kind; otherwise variants compare
 * case-insensitively.
 */
export function acceleratorMatches(
  want: Pick<AcceleratorSpec, "kind" | "variant">,
  offer: Pick<AcceleratorSpec, "kind" | "variant">,
): boolean {
  if (want.kind !== offer.kind) return false;
  const v = want.variant.trim().toLowerCase();
  if (v === "" || v === "auto") return true;
  return v === offer.variant.trim().toLowerCase();
}

/** A stable cache key for a constraint list (order-sensitive, preferred flag included). */
export function constraintsKey(constraints: readonly ConstraintSpec[]): string {
  let key = "";
  for (const c of constraints) {
    key += `${c.preferred ? "?" : "!"}${c.key}\u0001${c.op}\u0001`;
    if (c.value !== undefined) key += canonicalValue(c.value);
    if (c.values) key += c.values.map(canonicalValue).join("\u0002");
    key += "\u0003";
  }
  return key;
}

/** Formats a constraint for people: `region = europe-west4`, `taint:spot not exists`. */
export function formatConstraint(c: ConstraintSpec): string {
  const v = c.value === undefined ? "" : String(c.value);
  switch (c.op) {
    case "eq":
      return `${c.key} = ${v}`;
    case "ne":
      return `${c.key} != ${v}`;
    case "exists":
      return `${c.key} exists`;
    case "not_exists":
      return `${c.key} not exists`;
    case "gt":
      return `${c.key} > ${v}`;
    case "ge":
      return `${c.key} >= ${v}`;
    case "lt":
      return `${c.key} < ${v}`;
    case "le":
      return `${c.key} <= ${v}`;
    case "in":
      return `${c.key} in [${(c.values ?? []).map(String).join(", ")}]`;
  }
}

/** Posting lists over the attributes of a list of items (workers, worker classes, groups). */
export interface AttributeIndex {
  /** Number of indexed items; ordinals are 0..size-1. */
  readonly size: number;
  /** key → canonical value → ascending ordinals of items with that value. */
  readonly postings: ReadonlyMap<string, ReadonlyMap<string, readonly number[]>>;
  /** key → ascending ordinals of items that have the key. */
  readonly keys: ReadonlyMap<string, readonly number[]>;
}

/** Builds posting lists for (key, value) → ordinals and key → ordinals. */
export function buildAttributeIndex(
  items: readonly { readonly attributes: Attributes }[],
): AttributeIndex {
  const postings = new Map<string, Map<string, number[]>>();
  const keys = new Map<string, number[]>();
  for (let i = 0; i < items.length; i++) {
    const attrs = items[i]!.attributes;
    for (const key in attrs) {
      let byValue = postings.get(key);
      if (!byValue) {
        byValue = new Map();
        postings.set(key, byValue);
        keys.set(key, []);
      }
      keys.get(key)!.push(i);
      const cv = canonicalValue(attrs[key]!);
      const list = byValue.get(cv);
      if (list) list.push(i);
      else byValue.set(cv, [i]);
    }
  }
  return { size: items.length, postings, keys };
}

/**
 * Candidates for one indexable constraint (eq, in, exists, not_exists), or undefined for the
 * operators answered by a scan (ne, gt, ge, lt, le).
 */
function postingFor(index: AttributeIndex, c: ConstraintSpec): readonly number[] | undefined {
  if (c.op === "exists") return index.keys.get(c.key) ?? [];
  if (c.op === "not_exists") {
    // The complement of the key's posting list (both ascending): e.g. workers without a taint.
    const having = index.keys.get(c.key) ?? [];
    const out: number[] = [];
    for (let o = 0, j = 0; o < index.size; o++) {
      if (j < having.length && having[j] === o) j++;
      else out.push(o);
    }
    return out;
  }
  if (c.op === "eq") {
    if (c.value === undefined) return [];
    return index.postings.get(c.key)?.get(canonicalValue(c.value)) ?? [];
  }
  if (c.op === "in") {
    const byValue = index.postings.get(c.key);
    if (!byValue || !c.values) return [];
    const seen = new Set<string>();
    const merged: number[] = [];
    for (const v of c.values) {
      const cv = canonicalValue(v);
      if (seen.has(cv)) continue;
      seen.add(cv);
      const list = byValue.get(cv);
      if (list) { for (const o of list) merged.push(o); }
    }
    return seen.size > 1 ? merged.sort((a, b) => a - b) : merged;
  }
  return undefined;
}

/**
 * Ordinals (ascending) of items satisfying every REQUIRED constraint. The most selective
 * eq/in/exists/not_exists constraint seeds the candidates from the index; the remaining constraints are
 * checked by a scan over those candidates only.
 */
export function filterByConstraints(
  index: AttributeIndex,
  items: readonly { readonly attributes: Attributes }[],
  constraints: readonly ConstraintSpec[],
): number[] {
  let seed: readonly number[] | undefined;
  let seedConstraint: ConstraintSpec | undefined;
  for (const c of constraints) {
    if (c.preferred) continue;
    const list = postingFor(index, c);
    if (list !== undefined && (seed === undefined || list.length < seed.length)) {
      seed = list;
      seedConstraint = c;
    }
  }
  const out: number[] = [];
  const check = (o: number): void => {
    const attrs = items[o]!.attributes;
    for (const c of constraints) {
      if (c === seedConstraint || c.preferred) continue;
      if (!matchesConstraint(attrs, c)) return;
    }
    out.push(o);
  };
  if (seed) { for (const o of seed) check(o); }
  else for (let o = 0; o < index.size; o++) check(o);
  return out;
}
