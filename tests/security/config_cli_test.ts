/**
 * The `auth:` config section, the token CLI helpers, and a real controller + worker + CLI in
 * separate processes with auth on, grepping every output for the tokens.
 */
import { join } from "node:path";
import { ConfigError } from "../../src/errors.ts";
import {
  ConfigValidationError,
  controllerAuth,
  parseAuthDocument,
  parseConfig,
} from "../../src/config/mod.ts";
import { hashToken, newToken } from "../../src/auth/mod.ts";
import { main } from "../../src/cli/main.ts";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { runIris, spawnIris } from "../_helpers/iris_process.ts";

const machine = { cpuCores: 4, memoryBytes: 16 * 2 ** 30 };
const LOCAL = Deno.readTextFileSync(new URL("../../examples/local.yaml", import.meta.url));
const HASH = hashToken("alice-token");

function problems(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigValidationError || err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error("expected a config error");
}

Deno.test("config: the auth section parses into hashes, roles and limits", () => {
  const config = parseConfig(
    LOCAL + `
auth:
  mode: token
  worker_token_file: /nonexistent/worker-token
  tokens:
    - { user: alice, sha256: ${HASH} }
    - { user: root, role: admin, sha256: ${hashToken("root-token")} }
  launch_rate_limit: { per_second: 5, burst: 20 }
  max_request_size: 8MiB
  request_timeout: 2m
  header_timeout: 5s
  idle_timeout: 20s
  max_connections_per_client: 0
  http_server: node
`,
    "auth.yaml",
    { machine },
  );
  const a = config.auth!;
  assertEquals(a.mode, "token");
  assertEquals(a.tokens.map((t) => [t.user, t.role || "user"]), [["alice", "user"], [
    "root",
    "admin",
  ]]);
  assertEquals([a.launchRatePerSecond, a.launchBurst, a.maxRequestBytes], [5, 20, 8 * 2 ** 20]);
  const auth = controllerAuth(a, { env: "the-worker-token" });
  assert(auth.policy.mode === "token");
  assertEquals(auth.policy.workerToken, "the-worker-token");
  assertEquals(auth.launchRateLimit, { perSecond: 5, burst: 20 });
  assertEquals(auth.connectionLimits, {
    requestTimeout: 120_000,
    headersTimeout: 5_000,
    idleTimeout: 20_000,
    transport: "node",
    maxConnectionsPerClient: 0,
  });
  // No auth section: mode none, no limits, existing configs unchanged.
  const plain = controllerAuth(parseConfig(LOCAL, "local.yaml", { machine }).auth);
  assertEquals(plain, {
    policy: { mode: "none" },
    launchRateLimit: undefined,
    maxRequestBytes: undefined,
  });
});

Deno.test("config: bad auth values are reported by path", () => {
  const msg = problems(() =>
    parseConfig(
      LOCAL + `
auth:
  mode: tokens
  tokenz: []
  tokens:
    - { user: "bad user", sha256: ${HASH} }
    - { user: bob, role: root, sha256: NOTAHASH }
    - { user: carol, sha256: ${HASH} }
    - { user: dave, sha256: ${HASH} }
    - just-a-string
  launch_rate_limit: { per_second: -1, burst: 0 }
  max_request_size: lots
`,
      "auth.yaml",
      { machine },
    )
  );
  for (
    const path of [
      "auth.mode",
      "auth.tokenz",
      "auth.tokens[0].user",
      "auth.tokens[1].role",
      "auth.tokens[1].sha256",
      "auth.tokens[3].sha256",
      "auth.tokens[4]",
      "auth.launch_rate_limit.per_second",
      "auth.launch_rate_limit.burst",
      "auth.max_request_size",
    ]
  ) {
    assert(msg.includes(path + ":"), `no problem reported at ${path}:\n${msg}`);
  }
  assertMatch(msg, /duplicate token hash/);
  assertMatch(
    problems(() => parseAuthDocument("auth:\n  mode: token\n", "a.yaml")),
    /auth\.tokens: required/,
  );
  // Token mode needs the worker token; a missing file is named without any content.
  const noWorker = problems(() =>
    controllerAuth(
      parseAuthDocument(`auth:\n  mode: token\n  tokens: [{user: a, sha256: ${HASH}}]\n`),
    )
  );
  assertMatch(noWorker, /auth\.worker_token_file: required/);
  const missing = problems(() =>
    controllerAuth(
      parseAuthDocument(
        `auth:\n  mode: token\n  worker_token_file: /nonexistent/t\n  tokens: [{user: a, sha256: ${HASH}}]\n`,
      ),
    )
  );
  assertMatch(missing, /cannot read token file \/nonexistent\/t/);
});

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(args, {
    out: (t) => out += t,
    err: (t) => err += t,
    isTty: false,
  }, new AbortController().signal);
  return { code, out, err };
}

Deno.test("cli: auth new-token writes a 0600 file and hash-token prints its sha256", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-sec-" });
  try {
    const file = join(dir, "token");
    const made = await cli(["auth", "new-token", "--out", file]);
    assertEquals(made.code, 0, made.err);
    const token = (await Deno.readTextFile(file)).trim();
    assertEquals(made.out.trim(), hashToken(token));
    assert(!made.out.includes(token), "new-token printed the token");
    assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
    const hashed = await cli(["auth", "hash-token", "--token-file", file]);
    assertEquals(hashed.out.trim(), hashToken(token));
    const again = await cli(["auth", "new-token", "--out", file]);
    assertEquals(again.code, 2);
    assertMatch(again.err, /exists/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("e2e: controller, worker and CLI processes with auth; no token in any output", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-sec-" });
  try {
    const alice = newToken();
    const worker = newToken();
    const workerFile = join(dir, "worker-token");
    const aliceFile = join(dir, "alice-token");
    await Deno.writeTextFile(workerFile, worker + "\n", { mode: 0o600 });
    await Deno.writeTextFile(aliceFile, alice + "\n", { mode: 0o600 });
    const authFile = join(dir, "auth.yaml");
    await Deno.writeTextFile(
      authFile,
      `auth:\n  mode: token\n  worker_token_file: ${workerFile}\n  tokens:\n    - { user: alice, sha256: ${
        hashToken(alice)
      } }\n`,
    );
    await using controller = spawnIris([
      "controller",
      "serve",
      "--port",
      "0",
      "--auth-config",
      authFile,
    ]);
    const url = (await controller.waitForLine(/Controller started at (\S+)/))[1]!;
    await using w = spawnIris(["worker", "serve", "--controller", url, "--cpu", "1"], {
      env: { IRIS_WORKER_TOKEN_FILE: workerFile },
    });
    await w.waitForLine(/registered with controller/);
    const denied = await runIris(["job", "list", "--controller", url], { env: { IRIS_TOKEN: "" } });
    assertEquals(denied.code, 1);
    assertMatch(denied.stderr, /authentication required/);
    const wrong = await runIris(["job", "list", "--controller", url], {
      env: { IRIS_TOKEN: "nope" },
    });
    assertMatch(wrong.stderr, /invalid token/);
    const run = await runIris([
      "job",
      "run",
      "--controller",
      url,
      "--token-file",
      aliceFile,
      "--name",
      "hello",
      "--",
      "sh",
      "-c",
      "echo user=$IRIS_USER; env | grep -c WORKER_TOKEN || true",
    ], { env: { IRIS_TOKEN: "" } });
    assertEquals(run.code, 0, run.stdout + run.stderr);
    assertMatch(run.stdout + run.stderr, /\/alice\/hello/);
    const listed = await runIris(["job", "list", "--controller", url, "--json"], {
      env: { IRIS_TOKEN: alice },
    });
    assertEquals(listed.code, 0, listed.stderr);
    assertMatch(listed.stdout, /\/alice\/hello/);
    await w.stop();
    await controller.stop();
    const everything = [
      ...controller.lines,
      ...w.lines,
      denied.stdout,
      denied.stderr,
      wrong.stderr,
      run.stdout,
      run.stderr,
      listed.stdout,
      listed.stderr,
    ].join("\n");
    assert(!everything.includes(alice), "a user token leaked into an output");
    assert(!everything.includes(worker), "the worker token leaked into an output");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
