/**
 * Every JobRequest field through `iris job run` flags and through a job file (-f job.yaml), over
 * real processes: the submitted spec carries each one, bad values are named (by flag, or by file
 * and line), and a named port reaches the task.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { AcceleratorType, ConstraintMode, ExistingJobPolicy } from "../../src/rpc/mod.ts";
import { cli, startCluster } from "./_cluster.ts";

Deno.test("iris job run: a flag for every job field, and job files", async (t) => {
  await using cluster = await startCluster();
  const dir = await Deno.makeTempDir({ prefix: "iris-jobfile-" });
  const env = { IRIS_CONTROLLER_URL: cluster.url, USER: "flagger" };
  const run = async (args: string[]) => {
    await using p = cli(args, { env, cwd: dir });
    const code = await p.code;
    return { code, out: p.stdout.join("\n"), err: p.stderr.join("\n") };
  };
  try {
    await t.step("the flags reach the job spec", async () => {
      const r = await run([
        "job",
        "run",
        "--detach",
        "--name",
        "flags",
        "--gpu",
        "h100:2",
        "--port",
        "http,grpc",
        "--constraint",
        "pool=a",
        "--constraint",
        "rank>=2",
        "--prefer",
        "zone=us|eu",
        "--existing-job-policy",
        "recreate",
        "--max-task-failures",
        "2",
        "--max-preemptions",
        "5",
        "--reserve",
        "1",
        "--disk",
        "1GiB",
        "--coschedule",
        "rack",
        "--",
        "true",
      ]);
      assertEquals(r.code, 0, r.err);
      assertEquals(r.out, "/flagger/flags");
      const spec = (await cluster.client.status("/flagger/flags")).job!.spec!;
      assertEquals(spec.resources!.accelerator!.type, AcceleratorType.GPU);
      assertEquals(spec.resources!.accelerator!.variant, "h100");
      assertEquals(spec.resources!.accelerator!.count, 2);
      assertEquals(spec.resources!.diskBytes, 2 ** 30);
      assertEquals(spec.ports, ["http", "grpc"]);
      assertEquals(spec.constraints.map((c) => c.key), ["pool", "rank", "zone"]);
      assertEquals(spec.constraints[2]!.mode, ConstraintMode.PREFERRED);
      assertEquals(spec.constraints[2]!.values.length, 2);
      assertEquals(spec.existingJobPolicy, ExistingJobPolicy.RECREATE);
      assertEquals(spec.maxTaskFailures, 2);
      assertEquals(spec.maxRetriesPreemption, 5);
      assertEquals(spec.reservation.length, 1);
      assertEquals(spec.reservation[0]!.resources!.accelerator!.count, 2);
      assertEquals(spec.coscheduling?.groupBy, "rack");
      await cluster.client.cancel("/flagger/flags");
      const counted = await run([
        "job",
        "run",
        "-d",
        "--name",
        "counted",
        "--gpu",
        "L4",
        "--accelerator-count",
        "3",
        "--",
        "true",
      ]);
      assertEquals(counted.code, 0, counted.err);
      const acc = (await cluster.client.status("/flagger/counted")).job!.spec!.resources!
        .accelerator!;
      assertEquals([acc.variant, acc.count], ["L4", 3]);
      await cluster.client.cancel("/flagger/counted");
    });

    await t.step("--existing-job-policy keep returns the existing job", async () => {
      const a = await run(["job", "run", "-d", "--name", "same", "--", "sleep", "60"]);
      const b = await run([
        "job",
        "run",
        "-d",
        "--name",
        "same",
        "--existing-job-policy",
        "keep",
        "--",
        "sleep",
        "60",
      ]);
      assertEquals(b.code, 0, b.err);
      assertEquals(a.out, b.out);
      const c = await run([
        "job",
        "run",
        "-d",
        "--name",
        "same",
        "--existing-job-policy",
        "error",
        "--",
        "true",
      ]);
      assertEquals(c.code, 1);
      await cluster.client.cancel("/flagger/same");
    });

    await t.step("bad flag values name the flag and exit 2", async () => {
      const cases: [string[], RegExp][] = [
        [["--gpu", "h100:0"], /--gpu must be a count, a variant or VARIANT:COUNT/],
        [["--gpu", "1", "--tpu", "v5litepod-4"], /--gpu and --tpu cannot be combined/],
        [["--accelerator-count", "2"], /--accelerator-count needs --gpu or --tpu/],
        [["--gpu", "h100:8", "--accelerator-count", "4"], /--accelerator-count says 4/],
        [["--constraint", ">>"], /--constraint must look like key=value/],
        [["--constraint", "rank>=high"], /--constraint must look like/],
        [["--existing-job-policy", "replace"], /--existing-job-policy must be one of error, keep/],
        [["--port", "my-port"], /--port must be a name of letters, digits and _/],
        [["--disk", "big"], /--disk must be a size/],
        [["--reserve", "1.5"], /--reserve "1.5": N must be a whole number/],
        [["--max-task-failures", "x"], /--max-task-failures must be an integer/],
      ];
      for (const [flags, re] of cases) {
        const r = await run(["job", "run", ...flags, "--", "true"]);
        assertEquals(r.code, 2, `${flags.join(" ")}: ${r.err}`);
        assertMatch(r.err, re);
      }
    });

    await t.step("a named port reaches the task", async () => {
      const r = await run([
        "job",
        "run",
        "--port",
        "http",
        "--",
        "sh",
        "-c",
        "echo port=$IRIS_PORT_HTTP",
      ]);
      assertEquals(r.code, 0, r.err);
      assertMatch(r.out, /^port=\d+$/);
    });

    await t.step("-f job.yaml runs the same fields; flags win", async () => {
      await Deno.writeTextFile(
        `${dir}/job.yaml`,
        [
          "name: from-file",
          "command: [sh, -c, 'echo cpu=$GREETING port=$IRIS_PORT_WEB']",
          "cpu: 0.5",
          "memory: 128MiB",
          "env:",
          "  GREETING: hi",
          "port: [web]",
          "max_retries: 1",
          "",
        ].join("\n"),
      );
      const r = await run(["job", "run", "-f", "job.yaml"]);
      assertEquals(r.code, 0, r.err);
      assertMatch(r.out, /^cpu=hi port=\d+$/);
      const spec = (await cluster.client.status("/flagger/from-file")).job!.spec!;
      assertEquals(spec.resources!.cpuMillicores, 500);
      assertEquals(spec.maxRetriesFailure, 1);
      const o = await run(["job", "run", "-f", "job.yaml", "--name", "override", "--cpu", "0.25"]);
      assertEquals(o.code, 0, o.err);
      const spec2 = (await cluster.client.status("/flagger/override")).job!.spec!;
      assertEquals(spec2.resources!.cpuMillicores, 250);
    });

    await t.step("job file errors name the file and line", async () => {
      const cases: [string, RegExp][] = [
        [
          "name: x\ncommand: [true]\ncpus: 2\n",
          /^iris job run: bad\.yaml:3: unknown field "cpus" \(did you mean cpu\?\)/,
        ],
        [
          "name: x\ncommand: [true]\n\nmemory: lots\n",
          /bad\.yaml:4: memory must be a size like 512MiB/,
        ],
        [
          "name: x\ncommand: [true]\nmax_retries: -3\n",
          /bad\.yaml:3: max_retries must be an integer/,
        ],
        ["name: x\ncommand: [true]\nenv: [1, 2\n", /bad\.yaml:\d+: YAML syntax error/],
        ["name: x\ncommand: {a: 1}\n", /bad\.yaml:2: command: give a string/],
        ["name: x\ncommand: [true]\ndetach: true\n", /bad\.yaml:3: unknown field "detach"/],
      ];
      for (const [text, re] of cases) {
        await Deno.writeTextFile(`${dir}/bad.yaml`, text);
        const r = await run(["job", "run", "-f", "bad.yaml"]);
        assertEquals(r.code, 2, `${text}: ${r.err}`);
        assertMatch(r.err, re);
      }
      const missing = await run(["job", "run", "-f", "nope.yaml"]);
      assertEquals(missing.code, 2);
      assertMatch(missing.err, /--file: cannot read nope\.yaml/);
      assert(true);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
