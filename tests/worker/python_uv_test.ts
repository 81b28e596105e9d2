/**
 * Job Python environments built with uv (#18), through tests/fakes/uv/uv: a stand-in that accepts
 * the commands and options uv documents for `uv venv` and `uv pip install` and refuses others the
 * way uv's argument parser does, so the exact commands Iris issues are checked. The stand-in is
 * put first on the job's PATH; the worker is told `installer: uv` (auto only looks on the
 * default task PATH).
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { writeTinyWheel } from "../_helpers/wheel.ts";
import { IrisClient, type JobRequest, JobState } from "../../mod.ts";
import { startController } from "../../src/controller/server.ts";
import { startWorker } from "../../src/worker/mod.ts";
import { FileBundleStore, rpcBundleFetcher } from "../../src/bundle/mod.ts";
import { DEFAULT_TASK_PATH } from "../../src/worker/task_spec.ts";
import { seconds, waitFor } from "../../src/time.ts";

const UV_DIR = new URL("../fakes/uv/", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("the uv stand-in refuses what uv refuses", async () => {
  const run = async (...args: string[]) => {
    const out = await new Deno.Command(`${UV_DIR}/uv`, { args, stderr: "piped", stdout: "piped" })
      .output();
    return { code: out.code, err: new TextDecoder().decode(out.stderr) };
  };
  assertMatch((await run("pip", "install", "--bogus", "x")).err, /unexpected argument '--bogus'/);
  assertEquals((await run("pip", "install", "--bogus", "x")).code, 2);
  assertMatch((await run("pip", "install")).err, /required arguments were not provided/);
  assertMatch((await run("pip", "sync", "r.txt")).err, /unrecognized subcommand/);
  assertMatch((await run("venv", "a", "b")).err, /unexpected argument 'b'/);
});

Deno.test("installer uv: uv venv + uv pip install from a local wheel; failures name the step", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "iris-uv-" });
  try {
    await Deno.mkdir(`${root}/ws`);
    await writeTinyWheel(`${root}/ws/wheels`);
    await Deno.writeTextFile(`${root}/ws/requirements.txt`, "tinypkg==0.1\n");
    await Deno.writeTextFile(
      `${root}/ws/train.py`,
      "import sys, tinypkg\nprint('value', tinypkg.VALUE, 'prefix', sys.prefix)\n",
    );
    await using controller = startController({ bundles: new FileBundleStore(`${root}/bundles`) });
    await using worker = await startWorker({
      controllerUrl: controller.url,
      rootDir: `${root}/worker`,
      resources: { cpuMillicores: 2000, memoryBytes: 2 ** 32 },
      bundleFetcher: rpcBundleFetcher(controller.url, `${root}/worker/bundles`),
      python: { installer: "uv" },
    });
    const client = new IrisClient(controller.url);
    await waitFor(async () => (await client.workers()).length === 1, {
      timeout: seconds(10),
      what: "the worker",
    });
    const bundleId = await client.uploadWorkspace(`${root}/ws`);
    const run = async (name: string, req: Partial<JobRequest>) => {
      const jobId = await client.submit({
        name,
        memory: 2 ** 30,
        bundleId,
        env: { PATH: `${UV_DIR}:${DEFAULT_TASK_PATH}` },
        maxRetriesFailure: 0,
        ...req,
      } as JobRequest);
      const job = await client.wait(jobId, { timeout: seconds(120) });
      const logs = (await client.logs(jobId)).map((l) => l.text);
      const tasks = await client.tasks(jobId);
      return { job, logs, text: logs.join("\n"), error: tasks[0]?.error ?? "" };
    };

    await t.step("requirements.txt with --no-index --find-links", async () => {
      const r = await run("train", {
        command: ["python", "train.py"],
        environment: {
          requirementsFile: "requirements.txt",
          pipArgs: ["--no-index", "--find-links=wheels"],
        },
      });
      assertEquals(r.job.state, JobState.SUCCEEDED, r.text);
      assertMatch(r.text, /creating python environment (\S+): uv venv --python \/\S+ \1/);
      assertMatch(
        r.text,
        /installing with uv: uv pip install --python \S+\/bin\/python --no-index --find-links=wheels -r requirements\.txt/,
      );
      assertMatch(r.text, /Installed 1 package in/);
      assertMatch(r.text, / \+ tinypkg==0\.1/);
      const line = r.logs.find((l) => l.startsWith("value 42 prefix "));
      assert(line, r.text);
      assert(line.includes(`${root}/worker/python/venvs/`), line);
    });

    await t.step("a package the wheels dir lacks: FAILED with uv's resolver message", async () => {
      const r = await run("missing", {
        command: ["python", "-c", "print(1)"],
        environment: {
          pip: ["no-such-package-xyz"],
          pipArgs: ["--no-index", "--find-links=wheels"],
        },
      });
      assertEquals(r.job.state, JobState.FAILED, r.text);
      assertMatch(r.error, /installing with uv failed \(exit 1\)/);
      assertMatch(r.error, /no-such-package-xyz was not found in the provided package locations/);
    });

    await t.step(
      "without --no-index uv asks PyPI: offline, that fails naming the index",
      async () => {
        const r = await run("online", {
          command: ["python", "-c", "print(1)"],
          environment: { pip: ["tinypkg"], pipArgs: ["--find-links=wheels"] },
        });
        assertEquals(r.job.state, JobState.FAILED, r.text);
        assertMatch(r.error, /installing with uv failed \(exit 2\)/);
        assertMatch(r.error, /pypi\.org\/simple\/tinypkg/);
      },
    );
    void worker;
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
