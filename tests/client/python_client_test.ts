/**
 * python/iris_client.py against a real, secured controller and worker: on the task's PYTHONPATH
 * without installing anything; job context from the environment; a child job inherits env, user
 * and workspace; wait, logs and endpoints; bad tokens raise IrisError with the Connect code.
 */
import assert from "node:assert/strict";
import { IrisClient, JobState } from "../../mod.ts";
import { startSecureCluster } from "../security/_cluster.ts";
import { PYTHON_CLIENT_DIR } from "../../src/worker/python_env.ts";
import { seconds } from "../../src/time.ts";

const TASK_SCRIPT = `
from iris_client import IrisClient, iris_ctx
ctx = iris_ctx()
print("ctx", ctx.job_id, ctx.task_index, ctx.num_tasks, ctx.user, bool(ctx.bundle_id))
client = IrisClient()
eid = client.register_endpoint("/alice/py-svc", "127.0.0.1:1234", {"k": "v"})
print("endpoint", [e["address"] for e in client.lookup_endpoint("/alice/py-svc")])
child = client.submit(["sh", "-c", "echo child FOO=$FOO; test ! -e child.txt"], name="child")
print("child id", child)
st = client.wait(child, timeout=60)
print("child state", st["state"], st.get("parentJobId", ""))
print("child logs", [l for l in client.logs(child) if l.startswith("child") or l == "from the workspace"])
client.unregister_endpoint(eid)
print("after unregister", client.lookup_endpoint("/alice/py-svc"))
`;

Deno.test("python client: context, child jobs with inheritance, wait, logs, endpoints", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-pyclient-" });
  try {
    await using cluster = await startSecureCluster({ rootDir: `${root}/worker` });
    const url = cluster.controller.url;
    const alice = new IrisClient(url, { token: cluster.tokens.alice });
    const jobId = await alice.submit({
      name: "py-parent",
      user: "alice",
      command: ["sh", "-c", 'echo "from the workspace" > child.txt; python -c "$SCRIPT"'],
      env: { FOO: "bar", SCRIPT: TASK_SCRIPT },
      memory: 2 ** 28,
    });
    const job = await alice.wait(jobId, { timeout: seconds(90) });
    const logs = (await alice.logs(jobId)).map((l) => l.text);
    const text = logs.join("\n");
    assert.equal(job.state, JobState.SUCCEEDED, text);
    assert.ok(logs.includes(`ctx ${jobId} 0 1 alice False`), text);
    assert.ok(logs.includes("endpoint ['127.0.0.1:1234']"), text);
    assert.match(text, /child state SUCCEEDED/);
    assert.match(text, new RegExp(`child state SUCCEEDED ${jobId.replaceAll("/", "\\/")}`));
    // The child inherited FOO; it runs in its own directory (no child.txt there).
    assert.match(text, /child logs \['child FOO=bar'\]/);
    assert.ok(logs.includes("after unregister []"), text);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("python client outside a task: submit and wait with IRIS_TOKEN; bad token is IrisError", async () => {
  await using cluster = await startSecureCluster();
  const script = `
import sys
sys.path.insert(0, ${JSON.stringify(PYTHON_CLIENT_DIR)})
from iris_client import IrisClient, IrisError, iris_ctx
assert iris_ctx() is None
c = IrisClient()
jid = c.submit(["echo", "hello from python"], name="outside", user="alice")
print("state", c.wait(jid, timeout=60)["state"])
print("logs", c.logs(jid))
try:
    IrisClient(token="wrong").status(jid)
except IrisError as e:
    print("error", e.code)
try:
    c.status("/alice/nope")
except IrisError as e:
    print("error", e.code)
`;
  const out = await new Deno.Command("python3", {
    args: ["-c", script],
    env: { IRIS_CONTROLLER_URL: cluster.controller.url, IRIS_TOKEN: cluster.tokens.alice },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.match(stdout, /state SUCCEEDED/);
  assert.match(stdout, /logs \[.*'hello from python'.*\]/);
  assert.match(stdout, /error unauthenticated\nerror not_found/);
});
