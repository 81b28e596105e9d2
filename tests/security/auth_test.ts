/**
 * Authentication and users on a real controller and worker over loopback: tokens, roles,
 * ownership, task tokens, and that no token ever shows up in logs, specs, errors or statuses.
 */
import { toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { IrisClient } from "../../src/client/client.ts";
import { controllerClient, workerClient } from "../../src/rpc/client.ts";
import { JobState, ListJobsResponseSchema, TaskState } from "../../src/rpc/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { startSecureCluster, type Tokens } from "./_cluster.ts";

async function codeOf(p: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ConnectError) return { code: err.code, message: err.rawMessage };
    throw err;
  }
  throw new Error("expected the call to fail");
}

function assertNoToken(text: string, tokens: Tokens, what: string): void {
  for (const [name, token] of Object.entries(tokens)) {
    assert(!text.includes(token), `${what} contains the ${name} token`);
  }
}

Deno.test("auth: every RPC needs a valid token; roles and ownership are enforced", async () => {
  await using cluster = await startSecureCluster();
  const { tokens } = cluster;
  const url = cluster.controller.url;
  const errors: string[] = [];

  // No token, a wrong token: Unauthenticated, on every kind of RPC.
  for (const token of [undefined, "not-a-token", `iris-task-v1.alice.${"0".repeat(64)}`]) {
    const rpc = controllerClient(url, { token });
    const r1 = await codeOf(rpc.listJobs({}));
    const r2 = await codeOf(rpc.getControllerStatus({}));
    assertEquals(r1.code, Code.Unauthenticated);
    assertEquals(r2.code, Code.Unauthenticated);
    errors.push(r1.message, r2.message);
  }
  // A user token cannot pose as a worker; the worker token cannot submit jobs.
  const asAlice = controllerClient(url, { token: tokens.alice });
  const reg = await codeOf(asAlice.registerWorker({ workerId: "evil", address: "http://x" }));
  assertEquals(reg.code, Code.PermissionDenied);
  const asWorker = controllerClient(url, { token: tokens.worker });
  const launch = await codeOf(asWorker.listJobs({}));
  assertEquals(launch.code, Code.PermissionDenied);
  errors.push(reg.message, launch.message);

  // The worker's own API: only the worker token (the controller) may call it.
  const w = cluster.worker.url;
  assertEquals((await codeOf(workerClient(w).listTasks({}))).code, Code.Unauthenticated);
  const wAlice = await codeOf(workerClient(w, { token: tokens.alice }).listTasks({}));
  // The worker knows no user tokens at all.
  assertEquals(wAlice.code, Code.Unauthenticated);
  errors.push(wAlice.message);
  await workerClient(w, { token: tokens.worker }).listTasks({});

  // Users: the name is prefixed with the token's user; another user's name is refused.
  const alice = new IrisClient(url, { token: tokens.alice });
  const bob = new IrisClient(url, { token: tokens.bob });
  const admin = new IrisClient(url, { token: tokens.admin });
  const jobsBefore = cluster.controller.controller.jobs.jobs.size;
  for (
    const spec of [
      { name: "x", user: "bob", command: ["true"] },
      { name: "/bob/x", command: ["true"] },
    ]
  ) {
    const r = await codeOf(alice.submit(spec));
    assertEquals(r.code, Code.PermissionDenied);
    assertMatch(r.message, /spec\.(user|name)/);
    errors.push(r.message);
  }
  assertEquals(cluster.controller.controller.jobs.jobs.size, jobsBefore);

  // A job runs with the owner's task token, never the worker token.
  const jobId = await alice.submit({
    name: "envdump",
    command: ["sh", "-c", "env"],
    env: { IRIS_WORKER_TOKEN: "spoof" },
  });
  assertEquals(jobId, "/alice/envdump");
  const lines: string[] = [];
  const done = await alice.wait(jobId, { timeout: seconds(30), onLog: (l) => lines.push(l.text) });
  assertEquals(done.state, JobState.SUCCEEDED, lines.join("\n"));
  const env = lines.join("\n");
  assertMatch(env, /^IRIS_TOKEN=iris-task-v1\.alice\./m);
  assert(!/^IRIS_WORKER_TOKEN=/m.test(env), "a job may not set IRIS_WORKER_TOKEN");
  assert(!env.includes(tokens.worker), "task env leaks the worker token");
  const taskToken = /^IRIS_TOKEN=(.*)$/m.exec(env)![1]!;

  // The task token acts as alice: it can submit under /alice, but not cancel bob's jobs.
  const asTask = new IrisClient(url, { token: taskToken });
  const child = await asTask.submit({
    name: "child",
    parentJobId: jobId,
    command: ["true"],
  });
  assertEquals(child, "/alice/envdump/child");

  // Ownership: bob cannot cancel alice's job; alice and an admin can.
  const long = await alice.submit({ name: "sleeper", command: ["sleep", "60"] });
  const bobs = await bob.submit({ name: "sleeper", command: ["sleep", "60"] });
  assertEquals(bobs, "/bob/sleeper");
  // Endpoints of a running task: only its owner (or an admin) may register them.
  await waitFor(async () => (await alice.status(long)).tasks[0]?.state === TaskState.RUNNING, {
    timeout: seconds(30),
    what: "alice's sleeper to run",
  });
  const endpoint = { name: "svc", address: "127.0.0.1:1", taskId: `${long}/0` };
  const bobEndpoint = await codeOf(bob.rpc.registerEndpoint(endpoint));
  assertEquals(bobEndpoint.code, Code.PermissionDenied);
  assertMatch(bobEndpoint.message, /may not register endpoints for \/alice\/sleeper/);
  const { endpointId } = await alice.rpc.registerEndpoint(endpoint);
  const bobUnregister = await codeOf(bob.rpc.unregisterEndpoint({ endpointId }));
  assertEquals(bobUnregister.code, Code.PermissionDenied);
  // Names live under their owner: bob cannot plant his address under alice's name (#16).
  await waitFor(async () => (await bob.status(bobs)).tasks[0]?.state === TaskState.RUNNING, {
    timeout: seconds(30),
    what: "bob's sleeper to run",
  });
  const squat = await codeOf(
    bob.rpc.registerEndpoint({ name: `${long}/svc`, address: "127.0.0.1:2", taskId: `${bobs}/0` }),
  );
  assertEquals(squat.code, Code.PermissionDenied);
  assertMatch(squat.message, /endpoints of \/bob\/sleeper must be under \/bob\//);
  await bob.rpc.registerEndpoint({ name: "svc", address: "127.0.0.1:2", taskId: `${bobs}/0` });
  // A relative name lives under the job's id.
  assertEquals(
    (await alice.rpc.listEndpoints({ prefix: `${long}/svc`, exact: true })).endpoints.length,
    1,
  );
  const denied = await codeOf(bob.cancel(long));
  assertEquals(denied.code, Code.PermissionDenied);
  errors.push(denied.message);
  assertEquals((await codeOf(asTask.cancel(bobs))).code, Code.PermissionDenied);
  assertEquals(await alice.cancel(long), [long]);
  assertEquals(await admin.cancel(bobs), [bobs]);

  // An admin may submit on behalf of a user.
  const forBob = await admin.submit({ name: "adm", user: "bob", command: ["true"] });
  assertEquals(forBob, "/bob/adm");
  await admin.cancel(forBob);

  // No token anywhere: logs, errors, job specs and statuses as the dashboard sees them.
  assertNoToken(cluster.logs.join("\n"), tokens, "controller/worker logs");
  assertNoToken(errors.join("\n"), tokens, "error messages");
  const list = await admin.rpc.listJobs({});
  assertNoToken(toJsonString(ListJobsResponseSchema, list), tokens, "ListJobs");
  const status = await admin.rpc.getControllerStatus({});
  assertNoToken(JSON.stringify(status.recentLogs), tokens, "recent logs");
  assertNoToken(taskToken, tokens, "the task token");
});
