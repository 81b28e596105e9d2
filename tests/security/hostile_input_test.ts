/**
 * Hostile input against a real controller over loopback: absurd LaunchJob values get
 * invalid_argument naming the field and leave state unchanged; a seeded fuzz drives hundreds of
 * malformed requests and auth configs; request size and per-client submit rate limits answer
 * resource_exhausted.
 */
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { startController } from "../../src/controller/server.ts";
import { controllerClient } from "../../src/rpc/client.ts";
import {
  type ConstraintOp,
  type ExistingJobPolicy,
  type JobSpecSchema,
  LaunchJobRequestSchema,
  type PriorityBand,
} from "../../src/rpc/mod.ts";
import { ConfigError } from "../../src/errors.ts";
import { ConfigValidationError, parseConfig } from "../../src/config/mod.ts";
import { hashToken } from "../../src/auth/mod.ts";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { makeTokens, policyFor } from "./_cluster.ts";
import { rng } from "../_helpers/rng.ts";

type SpecInit = MessageInitShape<typeof JobSpecSchema>;

const MB = "x".repeat(1 << 20);

function baseSpec(name: string): SpecInit {
  return {
    name,
    entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
    resources: { cpuMillicores: 100, memoryBytes: 2 ** 20 },
    replicas: 1,
  };
}

/** [what, spec change, field the error must name]. */
const CASES: [string, (s: SpecInit) => void, string][] = [
  ["negative cpu", (s) => s.resources = { cpuMillicores: -1 }, "spec.resources.cpu_millicores"],
  [
    "huge cpu",
    (s) => s.resources = { cpuMillicores: 2 ** 31 - 1 },
    "spec.resources.cpu_millicores",
  ],
  ["NaN memory", (s) => s.resources = { memoryBytes: NaN }, "spec.resources.memory_bytes"],
  ["∞ memory", (s) => s.resources = { memoryBytes: Infinity }, "spec.resources.memory_bytes"],
  ["negative disk", (s) => s.resources = { diskBytes: -1 }, "spec.resources.disk_bytes"],
  ["10^6 replicas", (s) => s.replicas = 1_000_000, "spec.replicas"],
  ["negative replicas", (s) => s.replicas = -3, "spec.replicas"],
  ["1 MB name", (s) => s.name = MB, "spec.name"],
  ["deep name", (s) => s.name = "/alice/" + "a/".repeat(100) + "b", "spec.name"],
  ["control char name", (s) => s.name = "bad\u0007name", "spec.name"],
  ["newline name", (s) => s.name = "bad\nname", "spec.name"],
  ["lone surrogate name", (s) => s.name = "bad\uD800name", "spec.name"],
  ["1 MB user", (s) => s.user = MB, "spec.user"],
  ["traversal user", (s) => s.user = "../root", "spec.user"],
  ["bad env key", (s) => s.env = { "BAD KEY": "1" }, "spec.env"],
  ["NUL env value", (s) => s.env = { OK: "a\0b" }, "spec.env.OK"],
  ["huge env value", (s) => s.env = { OK: MB }, "spec.env.OK"],
  // "KEY=VALUE" over MAX_ARG_STRLEN (128 KiB) although the value alone is 128 KiB - 2 (#16).
  ["env string over MAX_ARG_STRLEN", (s) => s.env = { LONG: "x".repeat(131070) }, "spec.env.LONG"],
  ["multibyte env value", (s) => s.env = { U: "é".repeat(70_000) }, "spec.env.U"],
  [
    "env over exec's budget",
    (s) => s.env = Object.fromEntries([...Array(9)].map((_, i) => [`V${i}`, "x".repeat(120_000)])),
    "spec.env",
  ],
  [
    "argument over MAX_ARG_STRLEN",
    (s) =>
      s.entrypoint = { kind: { case: "command", value: { argv: ["echo", "x".repeat(131072)] } } },
    "spec.entrypoint.command.argv[1]",
  ],
  [
    "empty argv",
    (s) => s.entrypoint = { kind: { case: "command", value: { argv: [] } } },
    "spec.entrypoint.command.argv",
  ],
  [
    "10^5 args",
    (s) => s.entrypoint = { kind: { case: "command", value: { argv: Array(100_000).fill("a") } } },
    "spec.entrypoint.command.argv",
  ],
  [
    "NUL arg",
    (s) => s.entrypoint = { kind: { case: "command", value: { argv: ["a\0"] } } },
    "spec.entrypoint.command.argv",
  ],
  [
    "module escape",
    (s) => {
      s.bundleId = "sha256-" + "0".repeat(64);
      s.entrypoint = { kind: { case: "module", value: { path: "../../etc/passwd" } } };
    },
    "spec.entrypoint.module.path",
  ],
  [
    "module permission flood",
    (s) => {
      s.bundleId = "sha256-" + "0".repeat(64);
      s.entrypoint = {
        kind: {
          case: "module",
          value: { path: "main.ts", permissions: { read: Array(10_000).fill("/data") } },
        },
      };
    },
    "spec.entrypoint.module.permissions.read",
  ],
  [
    "constraint flood",
    (s) => s.constraints = Array(10_000).fill({ key: "a", op: 1 }),
    "spec.constraints",
  ],
  ["1 MB constraint key", (s) => s.constraints = [{ key: MB, op: 1 }], "spec.constraints[0].key"],
  [
    "unknown constraint op",
    (s) => s.constraints = [{ key: "zone", op: 99 as ConstraintOp }],
    "spec.constraints[0].op",
  ],
  [
    "1 MB accelerator variant",
    (s) => s.resources = { accelerator: { type: 3, variant: MB, count: 1 } },
    "spec.resources.accelerator.variant",
  ],
  ["port names", (s) => s.ports = ["ok", "ok"], "spec.ports"],
  ["negative timeout", (s) => s.timeoutMs = -1, "spec.timeout_ms"],
  ["NaN timeout", (s) => s.timeoutMs = NaN, "spec.timeout_ms"],
  ["unknown priority", (s) => s.priority = 42 as PriorityBand, "spec.priority"],
  [
    "unknown policy",
    (s) => s.existingJobPolicy = 42 as ExistingJobPolicy,
    "spec.existing_job_policy",
  ],
  ["huge retries", (s) => s.maxRetriesFailure = 2 ** 31 - 1, "spec.max_retries_failure"],
  ["bad group_by", (s) => s.coscheduling = { groupBy: "a b" }, "spec.coscheduling.group_by"],
  ["1 MB parent", (s) => s.parentJobId = MB, "spec.parent_job_id"],
];

Deno.test("hostile input: absurd LaunchJob values name the field and change nothing", async () => {
  await using server = startController();
  const rpc = controllerClient(server.url);
  const jobs = () => server.controller.jobs.jobs.size;
  for (const [what, change, field] of CASES) {
    const spec = baseSpec("hostile");
    change(spec);
    const err = await rpc.launchJob({ spec, requestId: "r" }).then(() => undefined, (e) => e);
    assert(err instanceof ConnectError, `${what}: accepted`);
    assertEquals(err.code, Code.InvalidArgument, `${what}: ${err.rawMessage}`);
    assert(
      err.rawMessage.startsWith(field),
      `${what}: "${err.rawMessage.slice(0, 200)}" does not start with ${field}`,
    );
    assert(err.rawMessage.length < 600, `${what}: the message echoes the input`);
    assertEquals(jobs(), 0, `${what}: state changed`);
  }
  // A request id over the limit, and parent chains nested too deep.
  const longId = await rpc.launchJob({ spec: baseSpec("x"), requestId: MB }).catch((e) => e);
  assertMatch(longId.rawMessage, /^request_id/);
  let parent = (await rpc.launchJob({ spec: baseSpec("root") })).jobId;
  let deepErr: ConnectError | undefined;
  for (let depth = 0; depth < 100 && !deepErr; depth++) {
    const spec = { ...baseSpec("c"), parentJobId: parent };
    await rpc.launchJob({ spec }).then((r) => parent = r.jobId, (e) => deepErr = e);
  }
  assert(deepErr, "a 100-deep parent chain was accepted");
  assertEquals(deepErr.code, Code.InvalidArgument);
  assertMatch(deepErr.rawMessage, /^spec\.name: .*deep/);
  assert((await rpc.getControllerStatus({})).healthy);
});

Deno.test("hostile input: undecodable requests (invalid UTF-8, out-of-range ints) are invalid_argument", async () => {
  await using server = startController();
  const placeholder = "PLACEHOLDERNAME";
  const body = toBinary(
    LaunchJobRequestSchema,
    create(LaunchJobRequestSchema, { spec: baseSpec(placeholder) }),
  );
  const at = indexOf(body, new TextEncoder().encode(placeholder));
  body.set([0x62, 0xff, 0xfe, 0xc0, 0x80], at); // "b", then bytes that are never valid UTF-8
  const res = await fetch(`${server.url}/iris.v1.ControllerService/LaunchJob`, {
    method: "POST",
    headers: { "content-type": "application/proto", "connect-protocol-version": "1" },
    body,
  });
  const err = await res.json() as { code: string; message: string };
  assertEquals(err.code, "invalid_argument", err.message);
  assertMatch(err.message, /^request: cannot be decoded/);
  assertEquals(server.controller.jobs.jobs.size, 0);
  // Out-of-range numbers in JSON are refused the same way.
  const json = await fetch(`${server.url}/iris.v1.ControllerService/LaunchJob`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify({ spec: { name: "j", resources: { cpuMillicores: 1e15 } } }),
  });
  const jsonErr = await json.json() as { code: string; message: string };
  assertEquals(jsonErr.code, "invalid_argument", jsonErr.message);
  assertEquals(server.controller.jobs.jobs.size, 0);
  assert((await controllerClient(server.url).getControllerStatus({})).healthy);
});

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  throw new Error("needle not found");
}

const HOSTILE_STRINGS = [
  "",
  " ",
  "../..",
  "/",
  "a/b",
  "\0",
  "\u0007",
  "\uD800",
  "é",
  MB.slice(0, 5000),
  "*",
  "-1",
];
const HOSTILE_NUMBERS = [
  -1,
  0,
  1,
  2 ** 31 - 1,
  -(2 ** 31),
  1e300,
  NaN,
  Infinity,
  -Infinity,
  0.5,
  1e6,
];

function mutate(spec: SpecInit, next: () => number): void {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const str = () => pick(HOSTILE_STRINGS);
  const num = () => pick(HOSTILE_NUMBERS);
  const mutations: ((s: SpecInit) => void)[] = [
    (s) => s.name = str(),
    (s) => s.user = str(),
    (s) => s.replicas = num() | 0,
    (s) => s.resources = { cpuMillicores: num() | 0, memoryBytes: num(), diskBytes: num() },
    (s) => s.resources = { accelerator: { type: num() | 0, variant: str(), count: num() | 0 } },
    (s) => s.env = { [pick(["A", "B C", "", "1X", "OK"])]: str() },
    (s) => s.entrypoint = { kind: { case: "command", value: { argv: [str(), str()] } } },
    (s) =>
      s.entrypoint = {
        kind: { case: "module", value: { path: str(), permissions: { read: [str()] } } },
      },
    (s) => s.constraints = [{ key: str(), op: num() | 0 }],
    (s) => s.ports = [str(), str()],
    (s) => s.timeoutMs = num(),
    (s) => s.schedulingTimeoutMs = num(),
    (s) => s.maxRetriesFailure = num() | 0,
    (s) => s.maxTaskFailures = num() | 0,
    (s) => s.priority = num() | 0,
    (s) => s.existingJobPolicy = num() | 0,
    (s) => s.parentJobId = str(),
    (s) => s.bundleId = str(),
    (s) => s.coscheduling = { groupBy: str() },
  ];
  const n = 1 + Math.floor(next() * 3);
  for (let i = 0; i < n; i++) pick(mutations)(spec);
}

Deno.test("fuzz: 400 malformed LaunchJob requests: no crash, no partial state, clear errors", async () => {
  await using server = startController();
  const rpc = controllerClient(server.url);
  const next = rng(20261123);
  let accepted = 0;
  const codes = new Map<string, number>();
  for (let i = 0; i < 400; i++) {
    const spec = baseSpec(`fuzz${i}`);
    mutate(spec, next);
    const before = server.controller.jobs.jobs.size;
    try {
      await rpc.launchJob({ spec, requestId: `req-${i}` });
      accepted++;
      assertEquals(server.controller.jobs.jobs.size, before + 1, `seed case ${i}`);
    } catch (err) {
      assert(err instanceof ConnectError, `case ${i}: ${err}`);
      codes.set(Code[err.code], (codes.get(Code[err.code]) ?? 0) + 1);
      assert(
        [Code.InvalidArgument, Code.AlreadyExists, Code.NotFound].includes(err.code),
        `case ${i}: ${Code[err.code]} ${err.rawMessage}`,
      );
      if (err.code === Code.InvalidArgument) {
        assertMatch(
          err.rawMessage,
          /^(spec(\.[a-z_]+|\[\d+\])*[.\w\[\] ]*|request_id): \S/,
          `case ${i}`,
        );
      }
      assert(err.rawMessage.length < 1000, `case ${i}: message too long`);
      assertEquals(server.controller.jobs.jobs.size, before, `case ${i}: partial state`);
    }
  }
  assert(accepted > 0 && accepted < 400, `accepted ${accepted} of 400 (${[...codes]})`);
  assert((await rpc.getControllerStatus({})).healthy);
});

Deno.test("fuzz: 300 malformed auth sections load or fail with a ConfigError naming auth", () => {
  const local = Deno.readTextFileSync(new URL("../../examples/local.yaml", import.meta.url));
  const machine = { cpuCores: 4, memoryBytes: 16 * 2 ** 30 };
  const next = rng(7);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const scalars = [
    '""',
    "token",
    "none",
    "-1",
    "0",
    "1e9",
    "[]",
    "{}",
    "null",
    "true",
    `"${hashToken("t")}"`,
    '"ab"',
    "admin",
    "user",
    "5MiB",
    "lots",
  ];
  const keys = [
    "mode",
    "tokens",
    "worker_token_file",
    "launch_rate_limit",
    "max_request_size",
    "bogus",
  ];
  let loaded = 0;
  for (let i = 0; i < 300; i++) {
    const lines = ["auth:"];
    for (let k = 0; k < 1 + Math.floor(next() * 4); k++) {
      const key = pick(keys);
      if (key === "tokens" && next() < 0.7) {
        lines.push("  tokens:");
        for (let t = 0; t < 1 + Math.floor(next() * 3); t++) {
          lines.push(
            `    - { user: ${pick(scalars)}, role: ${pick(scalars)}, sha256: ${pick(scalars)} }`,
          );
        }
      } else if (key === "launch_rate_limit" && next() < 0.7) {
        lines.push(
          `  launch_rate_limit: { per_second: ${pick(scalars)}, burst: ${pick(scalars)} }`,
        );
      } else {
        lines.push(`  ${key}: ${pick(scalars)}`);
      }
    }
    const text = local + "\n" + lines.join("\n") + "\n";
    try {
      parseConfig(text, "fuzz.yaml", { machine });
      loaded++;
    } catch (err) {
      assert(err instanceof ConfigError, `case ${i}: ${err}`);
      if (err instanceof ConfigValidationError) {
        for (const issue of err.issues) {
          assert(
            issue.path.startsWith("auth") || issue.path.startsWith("fuzz.yaml:"),
            `case ${i}: ${issue.path}`,
          );
          assert(issue.message.length > 0);
        }
      }
    }
  }
  assert(loaded > 0 && loaded < 300, `loaded ${loaded} of 300`);
});

Deno.test("limits: oversize requests and submit floods get resource_exhausted", async () => {
  const tokens = makeTokens();
  await using server = startController({
    auth: policyFor(tokens),
    maxRequestBytes: 256 * 1024,
    launchRateLimit: { perSecond: 0.001, burst: 3 },
  });
  const alice = controllerClient(server.url, { token: tokens.alice });
  const bob = controllerClient(server.url, { token: tokens.bob });
  // Over the request size: refused before parsing, state unchanged.
  const big = await alice.launchJob({
    spec: { ...baseSpec("big"), env: { A: "x".repeat(300 * 1024) } },
  }).catch((e) => e);
  assert(big instanceof ConnectError);
  assertEquals(big.code, Code.ResourceExhausted);
  assertMatch(big.rawMessage, /exceeds|max|limit/i);
  assertEquals(server.controller.jobs.jobs.size, 0);
  // Three submits fit the burst; the fourth is refused with a clear message; bob is unaffected.
  for (let i = 0; i < 3; i++) await alice.launchJob({ spec: baseSpec(`j${i}`) });
  const limited = await alice.launchJob({ spec: baseSpec("j3") }).catch((e) => e);
  assert(limited instanceof ConnectError);
  assertEquals(limited.code, Code.ResourceExhausted);
  assertMatch(limited.rawMessage, /^LaunchJob rate limit exceeded for user:alice .*retry later/);
  assertEquals(server.controller.jobs.jobs.size, 3);
  await bob.launchJob({ spec: baseSpec("b0") });
  // Reads are not limited.
  assertEquals((await alice.listJobs({})).totalCount, 4);
});

Deno.test("limits: without auth the submit rate is per peer address", async () => {
  await using server = startController({ launchRateLimit: { perSecond: 0.001, burst: 1 } });
  const rpc = controllerClient(server.url);
  await rpc.launchJob({ spec: baseSpec("a") });
  const err = await rpc.launchJob({ spec: baseSpec("b") }).catch((e) => e);
  assert(err instanceof ConnectError);
  assertEquals(err.code, Code.ResourceExhausted);
  assertMatch(err.rawMessage, /for peer:127\.0\.0\.1/);
});
