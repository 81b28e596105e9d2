/**
 * `iris job run`'s Python options: they become the job's environment, and a job running Python
 * warns when the submitter's python3 differs from what workers report.
 */
import assert from "node:assert/strict";
import { main } from "../../src/cli/main.ts";
import { localPythonVersion } from "../../src/cli/python.ts";
import { startController } from "../../src/controller/server.ts";
import { startWorker } from "../../src/worker/mod.ts";
import { IrisClient } from "../../mod.ts";
import { seconds, waitFor } from "../../src/time.ts";

Deno.test("iris job run: --python/--pip/--setup make the environment; a python mismatch warns", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-pyflags-" });
  try {
    await using controller = startController();
    // This worker says it runs a python3 nobody has.
    await using _worker = await startWorker({
      controllerUrl: controller.url,
      rootDir: `${root}/worker`,
      resources: { cpuMillicores: 1000, memoryBytes: 2 ** 31 },
      attributes: { python_version: "2.7.99" },
    });
    const client = new IrisClient(controller.url);
    await waitFor(async () => (await client.workers()).length === 1, {
      timeout: seconds(10),
      what: "the worker",
    });
    const run = async (argv: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(
        ["job", "run", "--controller", controller.url, ...argv],
        { out: (s) => out.push(s), err: (s) => err.push(s), isTty: false },
        new AbortController().signal,
      );
      return { code, out: out.join(""), err: err.join("") };
    };
    const py = await run([
      "--detach",
      "--name",
      "py",
      "--python",
      "python3",
      "--pip",
      "a==1",
      "--pip",
      "b",
      "--pip-arg=--no-index",
      "--setup",
      "echo hi",
      "--",
      "python",
      "-c",
      "print(1)",
    ]);
    assert.equal(py.code, 0, py.err);
    const local = await localPythonVersion();
    if (local) {
      assert.match(
        py.err,
        new RegExp(
          `warning: your python3 is ${
            local.replaceAll(".", "\\.")
          } but workers run python3 2\\.7\\.99`,
        ),
      );
    }
    const spec = (await client.rpc.getJobStatus({ jobId: py.out.trim() })).job!.spec!;
    assert.equal(spec.environment?.interpreter, "python3");
    assert.deepEqual(spec.environment?.pip, ["a==1", "b"]);
    assert.deepEqual(spec.environment?.pipArgs, ["--no-index"]);
    assert.deepEqual(spec.environment?.setup, ["echo hi"]);

    const plain = await run(["--detach", "--name", "plain", "--", "echo", "hello"]);
    assert.equal(plain.code, 0, plain.err);
    assert.doesNotMatch(plain.err, /warning: your python3/);
    const spec2 = (await client.rpc.getJobStatus({ jobId: plain.out.trim() })).job!.spec!;
    assert.equal(spec2.environment, undefined);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("iris worker serve: bad output/venv cache flags are usage errors naming the flag", async () => {
  const cases: [string[], RegExp][] = [
    [["--output-retention", "soon"], /--output-retention must be a duration/],
    [["--python-cache-size", "big"], /--python-cache-size must be a size/],
    [["--python-cache-max-age", "0"], /--python-cache-max-age must be a duration/],
    [["--python-installer", "conda"], /--python-installer must be one of uv, pip, auto/],
    [
      ["--outputs-prefix", "s3://bucket/x"],
      /--outputs-prefix must be gs:\/\/bucket\/path or file:\/\/\/absolute\/path \(got "s3:\/\/bucket\/x"\)/,
    ],
  ];
  for (const [flags, re] of cases) {
    const err: string[] = [];
    const code = await main(
      ["worker", "serve", "--controller", "http://127.0.0.1:9", "--port", "0", ...flags],
      { out: () => {}, err: (s) => err.push(s), isTty: false },
      new AbortController().signal,
    );
    assert.equal(code, 2, err.join(""));
    assert.match(err.join(""), re);
  }
});
