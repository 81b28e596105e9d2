/**
 * Job Python environments on a real controller and worker: `python` resolves; a venv built from a
 * workspace requirements.txt and a local wheel (no PyPI: --no-index --find-links) is first on
 * PATH, its build and the setup commands show in the task's logs; the venv is reused by a task
 * with the same inputs; a broken install or setup fails the attempt (FAILED) with its tail; a
 * named interpreter is used, and a missing one is a clear failure; eviction by size and age.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { writeTinyWheel } from "../_helpers/wheel.ts";
import { IrisClient, type JobRequest, JobState } from "../../mod.ts";
import { startController } from "../../src/controller/server.ts";
import { startWorker } from "../../src/worker/mod.ts";
import { FileBundleStore, rpcBundleFetcher } from "../../src/bundle/mod.ts";
import { PythonEnvCache } from "../../src/worker/python_env.ts";
import { seconds, waitFor } from "../../src/time.ts";

Deno.test("python environments: venv from requirements.txt, cache, setup, failures, interpreter", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "iris-pyenv-" });
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
      python: { installer: "pip" },
    });
    const client = new IrisClient(controller.url);
    await waitFor(async () => (await client.workers()).length === 1, {
      timeout: seconds(10),
      what: "the worker",
    });
    const bundleId = await client.uploadWorkspace(`${root}/ws`);
    const run = async (name: string, req: Partial<JobRequest>) => {
      const jobId = await client.submit({ name, memory: 2 ** 30, bundleId, ...req } as JobRequest);
      const job = await client.wait(jobId, { timeout: seconds(120) });
      const logs = (await client.logs(jobId)).map((l) => l.text);
      return { job, logs, text: logs.join("\n") };
    };

    await t.step(
      "python resolves without an environment; the worker reports its version",
      async () => {
        const r = await run("plain", { command: ["python", "-c", "print('plain ok')"] });
        assertEquals(r.job.state, JobState.SUCCEEDED, r.text);
        assert(r.logs.includes("plain ok"), r.text);
        const attrs = (await client.workers())[0]!.attributes;
        assertMatch(String(JSON.stringify(attrs)), /python_version/);
      },
    );

    const env = {
      requirementsFile: "requirements.txt",
      pipArgs: ["--no-index", "--find-links=wheels"],
      setup: ["echo setup-ran > setup.txt", "python -c 'import tinypkg' && echo setup-sees-venv"],
    };
    let venv = "";
    await t.step("a venv from requirements.txt and a local wheel is first on PATH", async () => {
      const r = await run("train", {
        command: ["sh", "-c", "cat setup.txt && python train.py"],
        environment: env,
      });
      assertEquals(r.job.state, JobState.SUCCEEDED, r.text);
      assertMatch(
        r.text,
        /installing with pip: .*pip install --no-index --find-links=wheels -r requirements\.txt/,
      );
      assertMatch(r.text, /Successfully installed tinypkg-0\.1/);
      assertMatch(r.text, /setup 1\/2: echo setup-ran/);
      assertMatch(r.text, /setup-sees-venv/);
      assertMatch(r.text, /setup-ran/);
      const line = r.logs.find((l) => l.startsWith("value 42 prefix "));
      assert(line, r.text);
      venv = line.slice("value 42 prefix ".length);
      assert(venv.startsWith(`${root}/worker/python/venvs/`), venv);
    });

    await t.step("a task with the same inputs reuses the venv", async () => {
      const r = await run("train-again", { command: ["python", "train.py"], environment: env });
      assertEquals(r.job.state, JobState.SUCCEEDED, r.text);
      assertMatch(r.text, /python environment .* \(cached\)/);
      assert(!/installing with pip/.test(r.text), r.text);
      assert(r.logs.includes(`value 42 prefix ${venv}`), r.text);
    });

    await t.step("a broken install fails the attempt with its output tail", async () => {
      const r = await run("broken", {
        command: ["python", "-c", "print(1)"],
        environment: { pip: ["no-such-package-xyz"], pipArgs: ["--no-index"] },
        maxRetriesFailure: 0,
      });
      assertEquals(r.job.state, JobState.FAILED, r.text);
      const tasks = await client.tasks(r.job.jobId);
      assertMatch(
        tasks[0]!.error,
        /environment setup failed: installing with pip failed \(exit 1\)/,
      );
      assertMatch(tasks[0]!.error, /no-such-package-xyz/);
      const venvs = await Array.fromAsync(Deno.readDir(`${root}/worker/python/venvs`));
      assertEquals(venvs.length, 1, "the broken venv is removed");
    });

    await t.step("a failing setup command fails the attempt", async () => {
      const r = await run("bad-setup", {
        command: ["true"],
        environment: { setup: ["echo about-to-fail >&2; exit 3"] },
      });
      assertEquals(r.job.state, JobState.FAILED, r.text);
      const tasks = await client.tasks(r.job.jobId);
      assertMatch(
        tasks[0]!.error,
        /setup command "echo about-to-fail >&2; exit 3" failed \(exit 3\):\nabout-to-fail/,
      );
    });

    await t.step("a job names its interpreter; a missing one is a clear failure", async () => {
      const r = await run("interp", {
        command: ["python", "-c", "import sys; print('minor', sys.version_info[1])"],
        environment: { interpreter: "/usr/bin/python3" },
      });
      assertEquals(r.job.state, JobState.SUCCEEDED, r.text);
      assert(r.logs.some((l) => /^minor \d+$/.test(l)), r.text);
      const bad = await run("no-interp", {
        command: ["python", "-V"],
        environment: { interpreter: "python9.99" },
      });
      assertEquals(bad.job.state, JobState.FAILED, bad.text);
      const tasks = await client.tasks(bad.job.jobId);
      assertMatch(
        tasks[0]!.error,
        /environment\.interpreter "python9\.99" is not on the task PATH/,
      );
    });
    void worker;
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("PythonEnvCache.evict: by age, then by size least recently used first, never leased", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-pyevict-" });
  try {
    const make = async (name: string, bytes: number, usedAgoMs: number) => {
      await Deno.mkdir(`${root}/venvs/${name}`, { recursive: true });
      await Deno.writeFile(`${root}/venvs/${name}/blob`, new Uint8Array(bytes));
      await Deno.writeTextFile(`${root}/venvs/${name}/.iris-ready`, "");
      const t = new Date(Date.now() - usedAgoMs);
      await Deno.utime(`${root}/venvs/${name}/.iris-ready`, t, t);
    };
    await make("old", 10_000, 10 * 86_400_000);
    await make("a", 100_000, 3_000);
    await make("b", 100_000, 2_000);
    await make("c", 100_000, 1_000);
    const cache = new PythonEnvCache({ rootDir: root, maxBytes: 250_000 });
    const evicted = (await cache.evict()).map((p) => p.split("/").pop());
    assertEquals(evicted, ["old", "a"]);
    const left = await Array.fromAsync(Deno.readDir(`${root}/venvs`));
    assertEquals(left.map((e) => e.name).sort(), ["b", "c"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
