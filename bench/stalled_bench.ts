/**
 * RPC latency under stalled connections (#16): a controller process (`iris controller serve`,
 * defaults) with one worker process; 1000 connections each announce a 60 MB body and send one byte
 * (from 4 loopback addresses, 250 each, under the per-client cap of 256), from a process of their
 * own. Meanwhile this process times GetControllerStatus. Reports the controller's RSS (its own figure), the latency, and
 * whether any worker was declared dead.
 *
 * Run alone: `deno run -A bench/stalled_bench.ts [connections] [iris|deno|node] [addresses]`;
 * `deno task bench` runs it for every transport from 4 addresses, and for the default one from a
 * single address (the case: the per-client cap refuses all but 256).
 * @module
 */
import net from "node:net";
import { controllerClient } from "../src/rpc/client.ts";
import { DEFAULT_TRANSPORT, HTTP_TRANSPORTS, type HttpTransport } from "../src/rpc/server.ts";

/** What {@linkcode stalledBench} measured. */
export interface StalledResult {
  connections: number;
  transport: HttpTransport;
  /** Loopback addresses the connections come from (127.0.0.2 …). */
  addresses: number;
  /** Connections the controller still held when the latency run ended. */
  heldOpen: number;
  rssBeforeBytes: number;
  rssDuringBytes: number;
  statusMs: { n: number; p50: number; p99: number; max: number };
  workersDead: number;
  workersHealthy: number;
}

const CLI = new URL("../cli.ts", import.meta.url).pathname;

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

/** Starts `iris <args>` and waits for the line matching `ready`; returns the process and match. */
async function spawnIris(args: string[], ready: RegExp) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
  }).spawn();
  const lines: string[] = [];
  let found: RegExpMatchArray | undefined;
  const pump = async (s: ReadableStream<Uint8Array>) => {
    let buf = "";
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        found ??= line.match(ready) ?? undefined;
      }
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const t0 = performance.now();
  while (!found) {
    if (performance.now() - t0 > 60_000) {
      child.kill("SIGKILL");
      await child.status;
      throw new Error(`iris ${args.join(" ")} did not start:\n${lines.join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 5000);
    await child.status;
    clearTimeout(timer);
    await pumps.catch(() => {});
  };
  return { child, match: found, lines, stop };
}

function stalledConnection(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress });
    s.once("connect", () => {
      s.write(
        "POST /iris.v1.ControllerService/GetJobStatus HTTP/1.1\r\nHost: x\r\n" +
          "Connect-Protocol-Version: 1\r\nContent-Type: application/proto\r\n" +
          "Content-Length: 60000000\r\n\r\nA",
      );
      resolve(s);
    });
    s.once("error", reject);
  });
}

/**
 * The attacking process: opens the stalled connections, prints "opened", and on each line of
 * stdin prints how many the server still holds open.
 */
async function attackMain(port: number, n: number, addresses: number): Promise<void> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    sockets.push(await stalledConnection(port, `127.0.0.${2 + (i % addresses)}`));
  }
  console.log("opened");
  for await (const _ of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    console.log(`held ${sockets.filter((s) => !s.destroyed && !s.readableEnded).length}`);
  }
  for (const s of sockets) s.destroy();
}

async function spawnAttacker(port: number, n: number, addresses: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(import.meta.url).pathname,
      "--attack",
      String(port),
      String(n),
      String(addresses),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const nextLine = async (): Promise<string> => {
    for (;;) {
      const i = buf.indexOf("\n");
      if (i >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        return line;
      }
      const r = await lines.read();
      if (r.done) throw new Error("the attacking process ended");
      buf += r.value;
    }
  };
  const writer = child.stdin.getWriter();
  if ((await nextLine()) !== "opened") throw new Error("the attacking process failed");
  return {
    async held(): Promise<number> {
      await writer.write(new TextEncoder().encode("?\n"));
      return Number((await nextLine()).replace("held ", ""));
    },
    async stop(): Promise<void> {
      await writer.close().catch(() => {});
      await lines.cancel().catch(() => {});
      await child.status;
    },
  };
}

/** Runs the scenario with `connections` stalled bodies. */
export async function stalledBench(
  connections = 1000,
  transport: HttpTransport = DEFAULT_TRANSPORT,
  addresses = 4,
): Promise<StalledResult> {
  const rootDir = await Deno.makeTempDir({ prefix: "iris-bench-stalled-" });
  const authFile = `${rootDir}/auth.yaml`;
  await Deno.writeTextFile(authFile, `auth:\n  http_server: ${transport}\n`);
  const ctl = await spawnIris(
    ["controller", "serve", "--port", "0", "--auth-config", authFile],
    /Controller started at (http:\/\/\S+)/,
  );
  const url = ctl.match[1]!;
  const worker = await spawnIris(
    ["worker", "serve", "--controller", url, "--root-dir", rootDir, "--port", "0"],
    /./,
  );
  const client = controllerClient(url);
  let attacker: Awaited<ReturnType<typeof spawnAttacker>> | undefined;
  try {
    const t0 = performance.now();
    while ((await client.listWorkers({})).workers.length < 1) {
      if (performance.now() - t0 > 30_000) throw new Error("the worker did not register");
      await new Promise((r) => setTimeout(r, 50));
    }
    const rssBefore = Number((await client.getControllerStatus({})).rssBytes);
    attacker = await spawnAttacker(Number(new URL(url).port), connections, addresses);
    // Latency of another client (this process, 127.0.0.1) while they stall, over ~3 heartbeat timeouts.
    const xs: number[] = [];
    let rssDuring = 0;
    const end = performance.now() + 10_000;
    while (performance.now() < end) {
      const t = performance.now();
      const s = await client.getControllerStatus({});
      xs.push(performance.now() - t);
      rssDuring = Math.max(rssDuring, Number(s.rssBytes));
      await new Promise((r) => setTimeout(r, 20));
    }
    const heldOpen = await attacker.held();
    const status = await client.getControllerStatus({});
    const workers = (await client.listWorkers({})).workers;
    return {
      connections,
      transport,
      addresses,
      heldOpen,
      rssBeforeBytes: rssBefore,
      rssDuringBytes: rssDuring,
      statusMs: {
        n: xs.length,
        p50: percentile(xs, 50),
        p99: percentile(xs, 99),
        max: percentile(xs, 100),
      },
      workersDead: status.recentLogs.filter((l) => /declared dead|missed \d+ heartbeats/.test(l))
        .length,
      workersHealthy: workers.filter((w) => w.healthy).length,
    };
  } finally {
    await attacker?.stop();
    await worker.stop();
    await ctl.stop();
    await Deno.remove(rootDir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const a = Deno.args.indexOf("--attack");
  if (a >= 0) {
    await attackMain(Number(Deno.args[a + 1]), Number(Deno.args[a + 2]), Number(Deno.args[a + 3]));
    Deno.exit(0);
  }
  const n = Number(Deno.args[0] ?? 1000);
  const transport = (HTTP_TRANSPORTS as readonly string[]).includes(Deno.args[1] ?? "")
    ? Deno.args[1] as HttpTransport
    : DEFAULT_TRANSPORT;
  const addresses = Number(Deno.args[2] ?? 4);
  console.log(JSON.stringify(await stalledBench(n, transport, addresses), null, 2));
  Deno.exit(0);
}
