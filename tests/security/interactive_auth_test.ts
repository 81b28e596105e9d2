/**
 * Interactive sessions respect ownership: another user can neither attach to nor type into
 * alice's interactive task, nor write to the exec session she opened; an admin may.
 */
import { ConnectError } from "@connectrpc/connect";
import { IrisClient } from "../../src/client/client.ts";
import { controllerClient } from "../../src/rpc/client.ts";
import { JobState, TaskState } from "../../src/rpc/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { startSecureCluster } from "./_cluster.ts";

async function refused(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert(err instanceof ConnectError, String(err));
    return err.rawMessage;
  }
  throw new Error("expected a refusal");
}

Deno.test("only the owner (or an admin) attaches to or types into an interactive session", async () => {
  await using cluster = await startSecureCluster();
  const url = cluster.controller.url;
  const alice = new IrisClient(url, { token: cluster.tokens.alice });
  const jobId = await alice.submit({
    name: "shell",
    command: ["sh", "-c", "read a; echo got-$a"],
    interactive: {},
  });
  const taskId = `${jobId}/0`;
  await waitFor(async () => (await alice.tasks(jobId))[0]?.state === TaskState.RUNNING, {
    timeout: seconds(30),
    what: "the task to run",
  });
  const bob = controllerClient(url, { token: cluster.tokens.bob });
  assertMatch(
    await refused(
      bob.execInput({ sessionId: `task:${taskId}`, data: new TextEncoder().encode("x\n") }),
    ),
    /bob|not allowed|permission|own/i,
  );
  assertMatch(
    await refused((async () => {
      for await (const _ of bob.attachTask({ taskId })) { /* refused before any message */ }
    })()),
    /bob|not allowed|permission|own/i,
  );

  // Alice's exec session: bob cannot write to it even knowing its id; the admin can.
  const aliceRpc = controllerClient(url, { token: cluster.tokens.alice });
  const stream = aliceRpc.execInTask({
    taskId,
    command: ["sh", "-c", "read b; echo exec-$b"],
    interactive: true,
  })[Symbol.asyncIterator]();
  const first = await stream.next();
  const sessionId = first.value?.sessionId ?? "";
  assertMatch(sessionId, /^exec:/);
  assertMatch(
    await refused(bob.execInput({ sessionId, data: new TextEncoder().encode("no\n") })),
    /admin/i,
  );
  const admin = controllerClient(url, { token: cluster.tokens.admin });
  await admin.execInput({ sessionId, data: new TextEncoder().encode("yes\n"), eof: true });
  let out = "";
  for (let m = await stream.next(); !m.done; m = await stream.next()) {
    out += new TextDecoder().decode(m.value.stdout);
  }
  assertEquals(out, "exec-yes\n");

  // The owner types into her task; it ends with what she typed.
  await aliceRpc.execInput({ sessionId: `task:${taskId}`, data: new TextEncoder().encode("hi\n") });
  const done = await alice.wait(jobId, { timeout: seconds(30) });
  assertEquals(done.state, JobState.SUCCEEDED);
  const logs = (await alice.logs(jobId)).map((l) => l.text);
  assert(logs.includes("got-hi"), logs.join("\n"));
});
