/**
 * Load benchmark (`deno task bench --load [N]`, default 1000): N submits at once from 20 clients
 * (N/20 in flight per client) against a controller process with a durable state dir and two
 * workers; every job runs `true`. Reports submit and completion times and the controller
 * process's memory (GetControllerStatus.rss_bytes, sampled every 200 ms). Writes
 * bench/results/load.json. The suite runs a 200-submit version (tests/e2e/durability_load_test.ts).
 * @module
 */
import { IrisClient } from "../src/client/client.ts";
import { JobState } from "../src/rpc/gen/iris/v1/types_pb.ts";
import { startWorker } from "../src/worker/mod.ts";
import { seconds } from "../src/time.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const CLIENTS = 20;
const WORKERS = 2;

/** What one load run measured. */
export interface LoadResult {
  submits: number;
  clients: number;
  jobsListed: number;
  succeeded: number;
  distinctIds: number;
  submitS: number;
  completeS: number;
  jobsPerS: number;
  rssIdleMiB: number;
  rssPeakMiB: number;
  rssEndMiB: number;
}

async function readUrl(stdout: ReadableStream<Uint8Array>): Promise<string> {
  let buf = "";
  const reader = stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) throw new Error("controller exited before it started");
      buf += value;
      const m = buf.match(/Controller started at (\S+)/);
      if (m) return m[1]!;
    }
  } finally {
    reader.releaseLock();
  }
}

/** Runs the load benchmark with `submits` jobs. */
export async function runLoadBench(submits: number): Promise<LoadResult> {
  const stateDir = await Deno.makeTempDir({ prefix: "iris-bench-load-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "controller", "serve", "--port", "0", "--state-dir", stateDir, "-q"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).spawn();
  const workers: AsyncDisposable[] = [];
  try {
    const url = await readUrl(child.stdout);
    child.stdout.cancel().catch(() => {});
    for (let w = 0; w < WORKERS; w++) {
      workers.push(
        await startWorker({
          controllerUrl: url,
          resources: { cpuMillicores: 64_000, memoryBytes: 64 * 2 ** 30 },
          log: () => {},
        }),
      );
    }
    const admin = new IrisClient(url);
    while ((await admin.workers()).length < WORKERS) await new Promise((r) => setTimeout(r, 20));
    const mib = (b: number) => Math.round(b / 2 ** 20);
    const rssIdle = (await admin.rpc.getControllerStatus({})).rssBytes;
    let rssPeak = rssIdle;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const st = await admin.rpc.getControllerStatus({});
        rssPeak = Math.max(rssPeak, st.rssBytes);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();

    const t0 = performance.now();
    const perClient = Math.ceil(submits / CLIENTS);
    const ids = (await Promise.all(
      Array.from({ length: CLIENTS }, (_, c) => {
        const client = new IrisClient(url, { retryFor: seconds(60) });
        const mine = Math.max(0, Math.min(perClient, submits - c * perClient));
        return Promise.all(
          Array.from(
            { length: mine },
            (_, i) => client.submit({ name: `load-${c}-${i}`, command: ["true"], cpu: 0.01 }),
          ),
        );
      }),
    )).flat();
    const t1 = performance.now();
    let succeeded = 0;
    while (succeeded < submits) {
      if (performance.now() - t0 > 600_000) throw new Error(`only ${succeeded} jobs succeeded`);
      succeeded = (await admin.list({ states: [JobState.SUCCEEDED], limit: 1 })).total;
      await new Promise((r) => setTimeout(r, 20));
    }
    const t2 = performance.now();
    sampling = false;
    await sampler;
    const end = await admin.rpc.getControllerStatus({});
    const listed = (await admin.list({ prefix: "/", limit: 1 })).total;
    return {
      submits,
      clients: CLIENTS,
      jobsListed: listed,
      succeeded,
      distinctIds: new Set(ids).size,
      submitS: (t1 - t0) / 1000,
      completeS: (t2 - t0) / 1000,
      jobsPerS: submits / ((t2 - t0) / 1000),
      rssIdleMiB: mib(rssIdle),
      rssPeakMiB: mib(Math.max(rssPeak, end.rssBytes)),
      rssEndMiB: mib(end.rssBytes),
    };
  } finally {
    for (const w of workers) await w[Symbol.asyncDispose]();
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
  }
}

/** `deno task bench --load [N]`: prints the result and writes bench/results/load.json. */
export async function loadBenchMain(args: readonly string[]): Promise<void> {
  const i = args.indexOf("--load");
  const n = Number(args[i + 1] ?? "1000");
  const submits = Number.isInteger(n) && n > 0 ? n : 1000;
  const r = await runLoadBench(submits);
  console.log(
    `load: ${r.submits} submits from ${r.clients} clients → ${r.jobsListed} jobs (${r.distinctIds} distinct ids), ` +
      `${r.succeeded} succeeded; acknowledged in ${r.submitS.toFixed(2)} s, all complete in ${
        r.completeS.toFixed(2)
      } s (${r.jobsPerS.toFixed(0)} jobs/s); controller RSS idle ${r.rssIdleMiB} MiB, ` +
      `peak ${r.rssPeakMiB} MiB, end ${r.rssEndMiB} MiB`,
  );
  const outDir = new URL("./results/", import.meta.url);
  await Deno.mkdir(outDir, { recursive: true });
  await Deno.writeTextFile(new URL("load.json", outDir), JSON.stringify(r, null, 2) + "\n");
  if (r.jobsListed !== r.submits || r.succeeded !== r.submits || r.distinctIds !== r.submits) {
    throw new Error("load: job count mismatch");
  }
}
