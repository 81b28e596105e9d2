import assert from "node:assert/strict";
import {
  acceleratorMatches,
  buildAttributeIndex,
  canonicalValue,
  constraintsKey,
  filterByConstraints,
  formatConstraint,
  matchesConstraint,
  matchesRequired,
  preferenceScore,
} from "../../src/controller/constraints.ts";
import type { Attributes, ConstraintSpec } from "../../src/types.ts";

const attrs: Attributes = {
  region: "europe-west4",
  "tpu-worker-id": "2",
  chips: 4,
  preemptible: true,
  "taint:maintenance": "yes",
  label: "abc",
};

function m(c: ConstraintSpec): boolean {
  return matchesConstraint(attrs, c);
}

Deno.test("matchesConstraint() eq compares numbers, numeric strings and booleans by value", () => {
  assert.equal(m({ key: "region", op: "eq", value: "europe-west4" }), true);
  assert.equal(m({ key: "region", op: "eq", value: "us-central1" }), false);
  assert.equal(m({ key: "tpu-worker-id", op: "eq", value: 2 }), true);
  assert.equal(m({ key: "tpu-worker-id", op: "eq", value: "2.0" }), true);
  assert.equal(m({ key: "chips", op: "eq", value: "4" }), true);
  assert.equal(m({ key: "preemptible", op: "eq", value: "true" }), true);
  assert.equal(m({ key: "preemptible", op: "eq", value: false }), false);
  assert.equal(
    m({ key: "preemptible", op: "eq", value: 1 }),
    false,
    "boolean never equals a number",
  );
  assert.equal(m({ key: "missing", op: "eq", value: "x" }), false);
  assert.equal(m({ key: "region", op: "eq" }), false, "eq without a value never matches");
});

Deno.test("matchesConstraint() ne passes when the key is absent or the value differs", () => {
  assert.equal(m({ key: "region", op: "ne", value: "us-central1" }), true);
  assert.equal(m({ key: "region", op: "ne", value: "europe-west4" }), false);
  assert.equal(m({ key: "missing", op: "ne", value: "x" }), true);
  assert.equal(m({ key: "chips", op: "ne", value: "4" }), false);
});

Deno.test("matchesConstraint() exists / not_exists test presence only (taints are avoided this way)", () => {
  assert.equal(m({ key: "taint:maintenance", op: "exists" }), true);
  assert.equal(m({ key: "taint:maintenance", op: "not_exists" }), false);
  assert.equal(m({ key: "taint:spot", op: "not_exists" }), true);
  assert.equal(m({ key: "taint:spot", op: "exists" }), false);
});

Deno.test("matchesConstraint() ordering operators are numeric and fail on mismatched types", () => {
  assert.equal(m({ key: "chips", op: "gt", value: 2 }), true);
  assert.equal(m({ key: "chips", op: "gt", value: 4 }), false);
  assert.equal(m({ key: "chips", op: "ge", value: 4 }), true);
  assert.equal(m({ key: "chips", op: "lt", value: "10" }), true, "numeric string value");
  assert.equal(m({ key: "tpu-worker-id", op: "le", value: 2 }), true, "numeric string attribute");
  assert.equal(m({ key: "tpu-worker-id", op: "lt", value: 2 }), false);
  assert.equal(
    m({ key: "tpu-worker-id", op: "gt", value: 10 }),
    false,
    "2 > 10 is false numerically",
  );
  assert.equal(
    m({ key: "label", op: "gt", value: "abb" }),
    false,
    "non-numeric strings never order",
  );
  assert.equal(m({ key: "chips", op: "gt", value: "many" }), false);
  assert.equal(m({ key: "preemptible", op: "ge", value: 0 }), false, "booleans never order");
  assert.equal(m({ key: "missing", op: "lt", value: 5 }), false);
  assert.equal(m({ key: "chips", op: "gt" }), false);
  assert.equal(
    matchesConstraint({ x: "" }, { key: "x", op: "lt", value: 1 }),
    false,
    "empty string is not 0",
  );
});

Deno.test("matchesConstraint() in matches any listed value", () => {
  assert.equal(m({ key: "region", op: "in", values: ["us-east1", "europe-west4"] }), true);
  assert.equal(m({ key: "region", op: "in", values: ["us-east1"] }), false);
  assert.equal(m({ key: "chips", op: "in", values: ["8", "4"] }), true);
  assert.equal(m({ key: "region", op: "in", values: [] }), false);
  assert.equal(m({ key: "region", op: "in" }), false);
  assert.equal(m({ key: "missing", op: "in", values: ["x"] }), false);
});

Deno.test("matchesRequired() ignores preferred constraints; preferenceScore() counts them", () => {
  const cs: ConstraintSpec[] = [
    { key: "region", op: "eq", value: "europe-west4" },
    { key: "zone", op: "eq", value: "a", preferred: true },
    { key: "chips", op: "ge", value: 4, preferred: true },
  ];
  assert.equal(matchesRequired(attrs, cs), true);
  assert.equal(preferenceScore(attrs, cs), 1);
  assert.equal(matchesRequired(attrs, [{ key: "zone", op: "exists" }]), false);
});

Deno.test("acceleratorMatches() requires equal kinds; empty or auto variant matches any", () => {
  assert.equal(
    acceleratorMatches({ kind: "tpu", variant: "" }, { kind: "tpu", variant: "v4-8" }),
    true,
  );
  assert.equal(
    acceleratorMatches({ kind: "tpu", variant: "auto" }, { kind: "tpu", variant: "v4-8" }),
    true,
  );
  assert.equal(
    acceleratorMatches({ kind: "tpu", variant: "V4-8" }, { kind: "tpu", variant: "v4-8" }),
    true,
  );
  assert.equal(
    acceleratorMatches({ kind: "tpu", variant: "v4-8" }, { kind: "tpu", variant: "v4-32" }),
    false,
  );
  assert.equal(
    acceleratorMatches({ kind: "cpu", variant: "" }, { kind: "tpu", variant: "v4-8" }),
    false,
  );
  assert.equal(
    acceleratorMatches({ kind: "gpu", variant: "" }, { kind: "cpu", variant: "" }),
    false,
  );
});

Deno.test("canonicalValue() and constraintsKey() agree with equality semantics", () => {
  assert.equal(canonicalValue(4), canonicalValue("4.0"));
  assert.equal(canonicalValue(true), canonicalValue("true"));
  assert.notEqual(canonicalValue("4"), canonicalValue("four"));
  const a: ConstraintSpec[] = [{ key: "k", op: "eq", value: 4 }];
  const b: ConstraintSpec[] = [{ key: "k", op: "eq", value: "4" }];
  const c: ConstraintSpec[] = [{ key: "k", op: "eq", value: 4, preferred: true }];
  assert.equal(constraintsKey(a), constraintsKey(b));
  assert.notEqual(constraintsKey(a), constraintsKey(c));
  assert.equal(formatConstraint({ key: "region", op: "eq", value: "x" }), "region = x");
  assert.equal(formatConstraint({ key: "r", op: "in", values: ["a", "b"] }), "r in [a, b]");
  assert.equal(formatConstraint({ key: "taint:spot", op: "not_exists" }), "taint:spot not exists");
});

const items: { attributes: Attributes }[] = [
  { attributes: { region: "us", zone: "us-a", cpu: 8 } },
  { attributes: { region: "eu", zone: "eu-a", cpu: 16, "taint:spot": true } },
  { attributes: { region: "eu", zone: "eu-b", cpu: "32" } },
  { attributes: { zone: "none" } },
];

Deno.test("buildAttributeIndex() posts (key, value) and key lists with canonical values", () => {
  const index = buildAttributeIndex(items);
  assert.equal(index.size, 4);
  assert.deepEqual(index.postings.get("region")?.get(canonicalValue("eu")), [1, 2]);
  assert.deepEqual(index.postings.get("cpu")?.get(canonicalValue(32)), [2]);
  assert.deepEqual(index.keys.get("zone"), [0, 1, 2, 3]);
  assert.deepEqual(index.keys.get("taint:spot"), [1]);
});

Deno.test("filterByConstraints() matches a brute-force scan for every operator", () => {
  const index = buildAttributeIndex(items);
  const cases: ConstraintSpec[][] = [
    [{ key: "region", op: "eq", value: "eu" }],
    [{ key: "region", op: "in", values: ["us", "eu"] }, { key: "cpu", op: "ge", value: 16 }],
    [{ key: "region", op: "exists" }, { key: "taint:spot", op: "not_exists" }],
    [{ key: "region", op: "ne", value: "eu" }],
    [{ key: "cpu", op: "lt", value: 20 }],
    [{ key: "zone", op: "eq", value: "nowhere" }],
    [{ key: "region", op: "eq", value: "eu", preferred: true }],
    [{ key: "taint:spot", op: "not_exists" }],
    [{ key: "taint:spot", op: "not_exists" }, { key: "zone", op: "not_exists" }],
    [{ key: "absent", op: "not_exists" }, { key: "cpu", op: "gt", value: 10 }],
    [{ key: "region", op: "in", values: ["eu"] }, { key: "taint:spot", op: "not_exists" }],
    [],
  ];
  for (const cs of cases) {
    const expected = items.map((_, i) => i).filter((i) =>
      matchesRequired(items[i]!.attributes, cs)
    );
    assert.deepEqual(filterByConstraints(index, items, cs), expected, JSON.stringify(cs));
  }
});
