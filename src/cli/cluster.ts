/**
 * `iris cluster status`: the controller's health, its workers and the autoscaler's scale groups,
 * slices, demand and recent decisions — all read through the RPC API.
 * @module
 */
import { formatDuration, ms } from "../time.ts";
import { type CommandSpec, formatBytes, table } from "./args.ts";
import { cliClient, CONTROLLER_OPTION, TOKEN_FILE_OPTION } from "./job.ts";

const statusCommand: CommandSpec = {
  name: "cluster status",
  summary: "Show the controller, its workers and the autoscaler's groups, slices and decisions.",
  usage: "cluster status [--controller URL]",
  options: { controller: CONTROLLER_OPTION, "token-file": TOKEN_FILE_OPTION },
  async run(p, io) {
    const client = cliClient(p);
    const st = await client.call((rpc) => rpc.getControllerStatus({}));
    const now = Date.now();
    io.out(
      `Controller ${client.url}: ${st.healthy ? "healthy" : "UNHEALTHY"}, up ${
        formatDuration(ms(now - st.startedAtMs))
      }, ` +
        `${st.workerCount} workers, ${st.jobCount} jobs, ${st.taskCount} tasks, RSS ${
          formatBytes(st.rssBytes)
        }\n\n`,
    );
    const workers = await client.workers();
    io.out(table(
      ["WORKER", "GROUP", "SLICE", "CPU", "MEMORY", "RUNNING", "HEARTBEAT"],
      workers.map((w) => [
        w.workerId,
        w.scaleGroup || "-",
        w.sliceId || "-",
        `${(w.committed?.cpuMillicores ?? 0) / 1000}/${(w.resources?.cpuMillicores ?? 0) / 1000}`,
        `${formatBytes(w.committed?.memoryBytes ?? 0)}/${
          formatBytes(w.resources?.memoryBytes ?? 0)
        }`,
        String(w.runningTaskIds.length),
        `${formatDuration(ms(now - w.lastHeartbeatMs))} ago`,
      ]),
    ));
    const auto = await client.autoscalerStatus();
    if (!auto.enabled) {
      io.out("\nAutoscaler: off (this controller was started without a cluster config)\n");
      return 0;
    }
    io.out(
      "\n" + table(
        ["GROUP", "ACCELERATOR", "SLICES", "MIN..MAX", "DEMAND", "STATE", "BACKOFF"],
        auto.groups.map((g) => [
          g.name,
          g.acceleratorVariant || "cpu",
          g.slices.map((s) => `${s.sliceId}(${s.state})`).join(" ") || "-",
          `${g.minSlices}..${g.maxSlices}`,
          String(g.demandSlices),
          g.availability,
          g.backoffUntilMs > now
            ? `${formatDuration(ms(g.backoffUntilMs - now))} (${g.consecutiveFailures} failures)`
            : "-",
        ]),
      ),
    );
    if (auto.unmetDemand.length) {
      io.out(`\nUnmet demand:\n${auto.unmetDemand.map((u) => `  ${u}`).join("\n")}\n`);
    }
    const recent = auto.recentActions.slice(-10);
    if (recent.length) {
      io.out("\nRecent decisions:\n");
      for (const a of recent) {
        io.out(
          `  ${new Date(a.timestampMs).toISOString().slice(11, 19)} ${
            a.action.padEnd(13)
          } ${a.scaleGroup} ${a.sliceId} ${a.reason}\n`,
        );
      }
    }
    return 0;
  },
};

/** Cluster commands. */
export const clusterCommands: readonly CommandSpec[] = [statusCommand];
