/**
 * `iris job ports ID [--forward]`: a job's named ports (IRIS_PORT_<NAME>) with each task's worker
 * host, and with --forward, local TCP forwards to them until Ctrl-C.
 * @module
 */
import { bool, type CommandSpec, num, table, UsageError } from "./args.ts";
import { cliClient, CONTROLLER_OPTION, TOKEN_FILE_OPTION } from "./job.ts";
import { resolveJobId } from "../client/mod.ts";
import { taskStateName } from "../controller/mod.ts";
import { TaskState } from "../rpc/mod.ts";

/** The host part of a worker address ("http://10.0.0.5:8081" → "10.0.0.5"). */
function hostOf(address: string): string {
  try {
    return new URL(address).hostname.replace(/^\[(.*)\]$/, "$1");
  } catch {
    return address.replace(/:\d+$/, "");
  }
}

/** Copies bytes both ways between two connections until either side closes. */
async function pipe(a: Deno.Conn, b: Deno.Conn): Promise<void> {
  await Promise.allSettled([
    a.readable.pipeTo(b.writable).catch(() => {}),
    b.readable.pipeTo(a.writable).catch(() => {}),
  ]);
  for (const c of [a, b]) {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

export const portsCommand: CommandSpec = {
  name: "job ports",
  summary: "Show a job's named ports and worker hosts; --forward opens local forwards to them.",
  usage: "job ports JOB_ID [--task N] [--forward [--local-port PORT]]",
  description: 'A short JOB_ID ("serve") means /$USER/serve. With --forward, each port of the\n' +
    "chosen task (default: task 0) is forwarded from 127.0.0.1 until Ctrl-C.",
  positionals: { min: 1, max: 1, names: "JOB_ID" },
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    task: { type: "string", value: "N", description: "Only task N (default for --forward: 0)" },
    forward: { type: "boolean", description: "Forward the task's ports to 127.0.0.1" },
    "local-port": {
      type: "string",
      value: "PORT",
      description: "--forward: local port for the first named port (default: any free port)",
    },
    json: { type: "boolean", description: "Print JSON" },
  },
  examples: ["iris job ports serve", "iris job ports serve --forward"],
  async run(p, io, signal) {
    const client = cliClient(p);
    const jobId = resolveJobId(p.positionals[0]!);
    const index = num(p, "task", { min: 0, max: 100_000, integer: true });
    const { tasks } = await client.status(jobId);
    const chosen = tasks.filter((t) =>
      index !== undefined ? t.index === index : !bool(p, "forward") || t.index === 0
    );
    if (chosen.length === 0) throw new UsageError(`--task: ${jobId} has no task ${index}`);
    const rows = chosen.flatMap((t) =>
      Object.entries(t.ports).map(([name, port]) => ({
        task: t.index,
        state: taskStateName(t.state),
        name,
        port,
        host: t.workerAddress ? hostOf(t.workerAddress) : "",
        worker: t.workerId,
      }))
    );
    if (!bool(p, "forward")) {
      if (bool(p, "json")) {
        io.out(JSON.stringify({ job_id: jobId, ports: rows }) + "\n");
        return 0;
      }
      if (rows.length === 0) {
        io.err(`${jobId} has no allocated ports (give them with job run --port NAME)\n`);
        return 1;
      }
      io.out(table(
        ["TASK", "STATE", "NAME", "ADDRESS", "WORKER"],
        rows.map((r) => [String(r.task), r.state, r.name, `${r.host}:${r.port}`, r.worker]),
      ));
      return 0;
    }
    const task = chosen[0]!;
    if (task.state !== TaskState.RUNNING || rows.length === 0) {
      throw new UsageError(
        `task ${task.index} of ${jobId} is ${taskStateName(task.state)}${
          rows.length ? "" : " with no ports"
        }; --forward needs a running task with --port`,
      );
    }
    const first = num(p, "local-port", { min: 0, max: 65535, integer: true }) ?? 0;
    const listeners = rows.map((r, i) => ({
      r,
      l: Deno.listen({ hostname: "127.0.0.1", port: i === 0 ? first : 0 }),
    }));
    const open = new Set<Promise<void>>();
    const conns = new Set<Deno.Conn>();
    try {
      for (const { r, l } of listeners) {
        io.err(
          `[iris] forwarding 127.0.0.1:${
            (l.addr as Deno.NetAddr).port
          } -> ${r.host}:${r.port} (${r.name})\n`,
        );
      }
      io.err("[iris] Ctrl-C stops forwarding\n");
      const onAbort = () => listeners.forEach(({ l }) => l.close());
      signal.addEventListener("abort", onAbort, { once: true });
      await Promise.allSettled(listeners.map(async ({ r, l }) => {
        for await (const conn of l) {
          conns.add(conn);
          const done = Deno.connect({ hostname: r.host, port: r.port }).then(
            (up) => (conns.add(up), pipe(conn, up)),
            (err) => {
              io.err(`[iris] ${r.name}: cannot reach ${r.host}:${r.port}: ${err.message}\n`);
              conn.close();
            },
          );
          open.add(done);
          done.finally(() => (open.delete(done), conns.delete(conn)));
        }
      }));
      signal.removeEventListener("abort", onAbort);
    } finally {
      for (const { l } of listeners) {
        try {
          l.close();
        } catch { /* closed */ }
      }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await Promise.allSettled(open);
    }
    return 0;
  },
};
