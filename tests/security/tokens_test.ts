/**
 * src/auth units: token hashing and lookup, task tokens, bearer parsing, method rules, the rate
 * limiter's buckets (with an explicit clock), and launch/ownership rules.
 */
import { create } from "@bufbuild/protobuf";
import {
  authorizeJobAction,
  authorizeLaunch,
  type AuthPolicy,
  bearerToken,
  controllerRule,
  hashToken,
  jobOwner,
  newToken,
  principalOf,
  RateLimiter,
  taskToken,
  workerRule,
} from "../../src/auth/mod.ts";
import { PermissionDeniedError } from "../../src/errors.ts";
import { JobSpecSchema } from "../../src/rpc/mod.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";

const POLICY: AuthPolicy = {
  mode: "token",
  tokens: [
    { sha256: hashToken("alice-secret"), user: "alice", role: "user" },
    { sha256: hashToken("root-secret"), user: "root", role: "admin" },
  ],
  workerToken: "worker-secret",
};

Deno.test("tokens: lookup by hash, worker token, task tokens that cannot be forged", () => {
  assertEquals(
    hashToken("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assertEquals(principalOf(POLICY, "alice-secret"), { user: "alice", role: "user" });
  assertEquals(principalOf(POLICY, "root-secret"), { user: "root", role: "admin" });
  assertEquals(principalOf(POLICY, "worker-secret"), { user: "worker", role: "worker" });
  assertEquals(principalOf(POLICY, hashToken("alice-secret")), undefined, "the hash is no token");
  assertEquals(principalOf(POLICY, ""), undefined);
  assertEquals(principalOf({ mode: "none" }, "alice-secret"), undefined);
  const t = taskToken("worker-secret", "alice");
  assertEquals(principalOf(POLICY, t), { user: "alice", role: "user" });
  assert(!t.includes("worker-secret"));
  // Changing the user, the MAC, or deriving from another worker token all fail.
  assertEquals(principalOf(POLICY, t.replace(".alice.", ".root.")), undefined);
  assertEquals(principalOf(POLICY, t.slice(0, -1) + (t.endsWith("0") ? "1" : "0")), undefined);
  assertEquals(principalOf(POLICY, taskToken("other-worker", "alice")), undefined);
  assertEquals(principalOf(POLICY, taskToken("worker-secret", "../x")), undefined);
  assert(newToken() !== newToken());
  assert(/^[A-Za-z0-9_-]{43}$/.test(newToken()));
});

Deno.test("tokens: bearer header parsing", () => {
  assertEquals(bearerToken("Bearer abc"), "abc");
  assertEquals(bearerToken("bearer   abc "), "abc");
  assertEquals(bearerToken("Basic abc"), "");
  assertEquals(bearerToken("Bearer a b"), "");
  assertEquals(bearerToken(null), "");
});

Deno.test("rules: which role may call which method", () => {
  const user = { user: "alice", role: "user" } as const;
  const worker = { user: "worker", role: "worker" } as const;
  assert(controllerRule("LaunchJob", user));
  assert(!controllerRule("RegisterWorker", user));
  assert(!controllerRule("Heartbeat", user));
  assert(controllerRule("Heartbeat", worker));
  assert(controllerRule("GetBundle", worker));
  assert(!controllerRule("LaunchJob", worker));
  assert(!controllerRule("TerminateJob", worker));
  assert(workerRule("RunTask", worker));
  assert(!workerRule("RunTask", user));
});

Deno.test("rate limiter: a burst, then the refill rate, per key", () => {
  const limiter = new RateLimiter({ perSecond: 2, burst: 3 }, 2);
  const t0 = 1_000_000;
  assertEquals([1, 2, 3, 4].map(() => limiter.take("a", t0)), [true, true, true, false]);
  assert(limiter.take("b", t0), "another key has its own bucket");
  assertEquals(limiter.take("a", t0 + 499), false);
  assertEquals(limiter.take("a", t0 + 500), true, "one call per 500 ms at 2/s");
  // A third key evicts the oldest; memory stays bounded.
  assert(limiter.take("c", t0));
  assert(limiter.take("a", t0 + 10_000));
});

Deno.test("ownership: launch binds the user, terminate needs owner or admin", () => {
  const alice = { user: "alice", role: "user" } as const;
  const root = { user: "root", role: "admin" } as const;
  const spec = create(JobSpecSchema, { name: "train" });
  assertEquals(authorizeLaunch(alice, spec, "r1"), "alice:r1");
  assertEquals(spec.user, "alice");
  assertEquals(authorizeLaunch(undefined, create(JobSpecSchema, { name: "x" }), "r"), "r");
  const asBob = create(JobSpecSchema, { name: "x", user: "bob" });
  let err: unknown;
  try {
    authorizeLaunch(alice, asBob, "");
  } catch (e) {
    err = e;
  }
  assert(err instanceof PermissionDeniedError);
  const forBob = create(JobSpecSchema, { name: "x", user: "bob" });
  authorizeLaunch(root, forBob, "");
  assertEquals(forBob.user, "bob");
  assertEquals(jobOwner("/alice/train/eval"), "alice");
  authorizeJobAction(alice, "/alice/train");
  authorizeJobAction(root, "/bob/train");
  authorizeJobAction(undefined, "/bob/train");
  for (const id of ["/bob/train", "/alicex/train", "/"]) {
    let denied = false;
    try {
      authorizeJobAction(alice, id);
    } catch (e) {
      denied = e instanceof PermissionDeniedError;
    }
    assert(denied, `alice may act on ${id}`);
  }
});
