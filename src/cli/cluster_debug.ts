/**
 * `iris cluster debug health`: checks every worker the controller lists — the controller's view
 * (healthy, last heartbeat) and a live GetProcessStatus of the worker, proxied by the controller
 * (admin only). Exit code 1 when any worker fails.
 * @module
 */
import { controllerClient } from "../rpc/mod.ts";
import { describeError } from "../errors.ts";
import { ms } from "../time.ts";
import { formatDuration } from "../format.ts";
import { bool, type CommandSpec, formatBytes, table } from "./args.ts";
import { cliToken } from "./job.ts";
import { CLUSTER_SELECT_OPTIONS, selectController } from "./cluster_tools.ts";

/** How long one worker's live check may take. */
const CHECK_TIMEOUT_MS = 5000;

const healthCommand: CommandSpec = {
  name: "cluster debug health",
  summary: "Check every worker: the controller's view and a live process check (admin only).",
  usage: "cluster debug health [--config FILE [--as-local] | --controller URL] [--json]",
  description: "Lists the workers the controller knows and asks each one, through the " +
    "controller, for its process status (5 s limit). A worker passes when the controller " +
    "counts it healthy and it answers. Exit code 1 when any worker fails. With --config the " +
    "controller is found the way the config's mode says (like cluster status).",
  options: {
    ...CLUSTER_SELECT_OPTIONS,
    json: { type: "boolean", description: "Print JSON" },
  },
  examples: [
    "iris cluster debug health --config examples/local.yaml",
    "iris cluster debug health --controller http://10.0.0.2:10000",
  ],
  async run(p, io, signal) {
    await using selected = await selectController(p, io);
    const client = controllerClient(selected.url, { token: cliToken(p) });
    const controller = await client.getProcessStatus({ maxLogLines: 1 }, { signal });
    const { workers } = await client.listWorkers({}, { signal });
    const now = Date.now();
    const checks = await Promise.allSettled(
      workers.map((w) =>
        client.getProcessStatus(
          { workerId: w.workerId, maxLogLines: 1 },
          { signal: AbortSignal.any([signal, AbortSignal.timeout(CHECK_TIMEOUT_MS)]) },
        )
      ),
    );
    const rows = workers.map((w, i) => {
      const c = checks[i]!;
      const info = c.status === "fulfilled" ? c.value.process : undefined;
      const error = c.status === "rejected" ? describeError(c.reason) : "";
      return {
        workerId: w.workerId,
        address: w.address,
        controllerHealthy: w.healthy,
        heartbeatAgoMs: Math.max(0, now - w.lastHeartbeatMs),
        ok: w.healthy && !!info,
        pid: info?.pid ?? 0,
        uptimeMs: info?.uptimeMs ?? 0,
        rssBytes: info?.rssBytes ?? 0,
        openFds: info?.openFds ?? 0,
        error,
      };
    });
    const failed = rows.filter((r) => !r.ok).length;
    if (bool(p, "json")) {
      io.out(
        JSON.stringify({ controllerPid: controller.process?.pid, workers: rows }, null, 2) + "\n",
      );
      return failed ? 1 : 0;
    }
    io.out(
      `Controller pid ${controller.process?.pid} up ${
        formatDuration(ms(controller.process?.uptimeMs ?? 0))
      }; ${workers.length} worker(s), ${failed} failing\n\n`,
    );
    if (rows.length) {
      io.out(
        table(
          ["WORKER", "CHECK", "HEARTBEAT", "PID", "UPTIME", "RSS", "FDS", "PROBLEM"],
          rows.map((r) => [
            r.workerId,
            r.ok ? "ok" : "FAIL",
            `${formatDuration(ms(r.heartbeatAgoMs))} ago`,
            r.pid ? String(r.pid) : "-",
            r.pid ? formatDuration(ms(r.uptimeMs)) : "-",
            r.pid ? formatBytes(r.rssBytes) : "-",
            r.pid ? String(r.openFds) : "-",
            [r.controllerHealthy ? "" : "controller counts it unhealthy", r.error]
              .filter((s) => s).join("; ").slice(0, 200),
          ]),
        ),
      );
    }
    return failed ? 1 : 0;
  },
};

/** `iris cluster debug …`. */
export const clusterDebugCommands: readonly CommandSpec[] = [healthCommand];
