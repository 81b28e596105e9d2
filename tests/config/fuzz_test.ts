/**
 * Fuzz: random mutations of the example configs either load or fail with a ConfigError whose
 * every problem has a non-empty path — never any other exception. Seeded, so failures replay.
 */
import assert from "node:assert/strict";
import { toBinary } from "@bufbuild/protobuf";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { ConfigError } from "../../src/errors.ts";
import { ConfigValidationError, parseConfig, parseConfigObject } from "../../src/config/mod.ts";
import { ClusterConfigSchema } from "../../src/rpc/gen/iris/v1/config_pb.ts";
import { rng } from "../_helpers/rng.ts";

const machine = { cpuCores: 4, memoryBytes: 16 * 2 ** 30 };
const EXAMPLES = ["local", "gcp", "manual"].map((name) =>
  Deno.readTextFileSync(new URL(`../../examples/${name}.yaml`, import.meta.url))
);

type Node = Record<string, unknown> | unknown[];

function containers(value: unknown, out: Node[] = []): Node[] {
  if (typeof value === "object" && value !== null) {
    out.push(value as Node);
    for (const child of Object.values(value)) containers(child, out);
  }
  return out;
}

function randomValue(next: () => number): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  return pick<() => unknown>([
    () => -Math.floor(next() * 100) - 1,
    () => next() * 10,
    () => Math.floor(next() * 1e6),
    () => 2 ** 53 + 10,
    () => NaN,
    () => Infinity,
    () => "",
    () => "abc",
    () => "5 parsecs",
    () => "-3s",
    () => "8GiB",
    () => "v5litepod-16",
    () => "gs://bucket/x",
    () => "10.0.0.9",
    () => "europe-west4-b",
    () =>
      String.fromCharCode(
        ...Array.from(
          { length: 1 + Math.floor(next() * 12) },
          () => 32 + Math.floor(next() * 0x2500),
        ),
      ),
    () => null,
    () => true,
    () => [],
    () => [1, "a", null],
    () => ({}),
    () => ({ local: {} }),
    () => ({ tpu: {}, manual: { hosts: ["h"] } }),
    () => ({ __proto__x: 1, constructor: "c" }),
  ])();
}

const KEYS = [
  "local",
  "gcp",
  "manual",
  "tpu",
  "hosts",
  "max_slices",
  "min_slices",
  "zone",
  "cpu",
  "memory",
  "provider",
  "x",
];

function mutate(tree: unknown, next: () => number): unknown {
  const nodes = containers(tree);
  const node = nodes[Math.floor(next() * nodes.length)];
  if (!node) return randomValue(next);
  const keys = Object.keys(node);
  const key = keys[Math.floor(next() * keys.length)];
  const op = Math.floor(next() * 6);
  if (Array.isArray(node)) {
    if (op < 2 && node.length > 0) node.splice(Math.floor(next() * node.length), 1);
    else if (op < 4 && node.length > 0) node[Math.floor(next() * node.length)] = randomValue(next);
    else node.push(randomValue(next));
    return tree;
  }
  if (op === 0 && key !== undefined) delete node[key];
  else if (op <= 2 && key !== undefined) node[key] = randomValue(next);
  else if (op === 3) node[KEYS[Math.floor(next() * KEYS.length)]!] = randomValue(next);
  else if (op === 4 && key !== undefined) {
    node[`${key}s`] = node[key];
    delete node[key];
  } else if (key !== undefined && typeof node[key] === "number") node[key] = -(node[key] as number);
  else if (key !== undefined) node[key] = structuredClone(nodes[Math.floor(next() * nodes.length)]);
  return tree;
}

function checkOutcome(run: () => unknown, what: string): "ok" | "rejected" {
  try {
    const config = run();
    toBinary(
      ClusterConfigSchema,
      config as Parameters<typeof toBinary<typeof ClusterConfigSchema>>[1],
    );
    return "ok";
  } catch (err) {
    if (!(err instanceof ConfigError)) {
      throw new Error(`${what}: threw ${err instanceof Error ? err.stack : String(err)}`);
    }
    assert.ok(err.path.length > 0, `${what}: empty path in ${err.message}`);
    if (err instanceof ConfigValidationError) {
      for (const issue of err.issues) {
        assert.ok(issue.path.length > 0 && issue.message.length > 0, what);
      }
      assert.equal(
        err.message.split("\n").length,
        err.issues.length,
        `${what}: one line per issue`,
      );
    }
    return "rejected";
  }
}

Deno.test("fuzz: mutated config trees load or fail with a ConfigError", () => {
  const counts = { ok: 0, rejected: 0 };
  for (let seed = 1; seed <= 3000; seed++) {
    const next = rng(seed);
    let tree: unknown = parseYaml(EXAMPLES[seed % EXAMPLES.length]!);
    const rounds = 1 + Math.floor(next() * 3);
    for (let i = 0; i < rounds; i++) tree = mutate(tree, next);
    counts[checkOutcome(() => parseConfigObject(tree, "fuzz.yaml", { machine }), `seed ${seed}`)]++;
  }
  assert.ok(
    counts.rejected > 1000,
    `mutations should mostly be rejected: ${JSON.stringify(counts)}`,
  );
  assert.ok(counts.ok > 10, `some mutations should still load: ${JSON.stringify(counts)}`);
});

Deno.test("fuzz: mutated trees round-tripped through YAML text behave the same", () => {
  for (let seed = 1; seed <= 500; seed++) {
    const next = rng(seed * 7919);
    const tree = mutate(parseYaml(EXAMPLES[seed % EXAMPLES.length]!), next);
    let text: string;
    try {
      text = stringifyYaml(tree);
    } catch {
      continue;
    }
    checkOutcome(() => parseConfig(text, "fuzz.yaml", { machine }), `seed ${seed}`);
  }
});

Deno.test("fuzz: character-level edits of YAML text load or fail with a ConfigError", () => {
  const alphabet = ":{}[]-#&*!|>'\"%@` \n\t,?0123456789abcxyz";
  for (let seed = 1; seed <= 1500; seed++) {
    const next = rng(seed * 104729);
    const chars = [...EXAMPLES[seed % EXAMPLES.length]!];
    const edits = 1 + Math.floor(next() * 4);
    for (let i = 0; i < edits; i++) {
      const at = Math.floor(next() * chars.length);
      const op = next();
      if (op < 0.4) chars.splice(at, 1);
      else if (op < 0.8) chars.splice(at, 0, alphabet[Math.floor(next() * alphabet.length)]!);
      else chars[at] = alphabet[Math.floor(next() * alphabet.length)]!;
    }
    checkOutcome(() => parseConfig(chars.join(""), "fuzz.yaml", { machine }), `text seed ${seed}`);
  }
});
