/**
 * `iris cluster status` (and the table of cluster commands): the controller's health, its workers and the autoscaler's scale groups,
 * slices, demand and recent decisions — all read through the RPC API.
 * @module
 */
import { ms, seconds } from "../time.ts";
import { formatCores, formatDuration } from "../format.ts";
import { type CommandSpec, formatBytes, type Io, str, table, UsageError } from "./args.ts";
import { cliClient, cliToken, CONTROLLER_OPTION, TOKEN_FILE_OPTION } from "./job.ts";
import { configMode } from "../config/mod.ts";
import { IrisClient } from "../client/mod.ts";
import { type ClusterConnection, connectCluster } from "../cluster/mod.ts";
import { NotFoundError } from "../errors.ts";
import {
  AS_LOCAL_OPTION,
  CONFIG_OPTION,
  logsCommand,
  requireConfig,
  startCommand,
  stopCommand,
} from "./cluster_lifecycle.ts";

const statusCommand: CommandSpec = {
  name: "cluster status",
  summary: "Show the controller, its workers and the autoscaler's groups, slices and decisions.",
  usage: "cluster status [--config FILE [--as-local] | --controller URL]",
  description:
    "With --config, the controller is found the way the config's mode says: the running local\n" +
    "cluster's record, the manual controller host, or the GCP controller VM (reached through an\n" +
    "ssh tunnel that is closed on exit). Exit code 1 when the cluster is not running.",
  options: {
    config: CONFIG_OPTION,
    "as-local": AS_LOCAL_OPTION,
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
  },
  examples: [
    "iris cluster status --config examples/local.yaml",
    "iris cluster status --controller http://10.0.0.2:10000",
  ],
  async run(p, io) {
    const configPath = str(p, "config");
    if (configPath !== undefined && p.values.controller !== undefined) {
      throw new UsageError("give either --config or --controller, not both");
    }
    if (configPath === undefined) return await printStatus(cliClient(p), io);
    const { config } = await requireConfig(p, io);
    const mode = configMode(config);
    let connection: ClusterConnection;
    try {
      connection = await connectCluster(config);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      io.out(`Cluster '${config.name}' (${mode}): not running\n`);
      return 1;
    }
    await using _connection = connection;
    io.out(
      `Cluster '${config.name}' (${mode}) at ${connection.controllerUrl} (${connection.via})\n`,
    );
    return await printStatus(
      new IrisClient(connection.url, { retryFor: seconds(3), token: cliToken(p) ?? "" }),
      io,
    );
  },
};

/** The status report of the controller `client` talks to. */
async function printStatus(client: IrisClient, io: Io): Promise<number> {
  {
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
        `${formatCores(w.committed?.cpuMillicores)}/${formatCores(w.resources?.cpuMillicores)}`,
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
    // Why groups are blocked: quota errors and the last backoff cause, one line each.
    const blocked = auto.groups.flatMap((g) => [
      ...(g.quotaUntilMs > now
        ? [
          `  ${g.name}: quota_exceeded for ${
            formatDuration(ms(g.quotaUntilMs - now))
          }: ${g.quotaReason}`,
        ]
        : []),
      ...(g.backoffUntilMs > now && g.backoffReason
        ? [`  ${g.name}: backoff: ${g.backoffReason}`]
        : []),
    ]);
    if (blocked.length) io.out(`\nBlocked groups:\n${blocked.join("\n")}\n`);
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
  }
}

/** Cluster commands. */
export const clusterCommands: readonly CommandSpec[] = [
  startCommand,
  stopCommand,
  statusCommand,
  logsCommand,
];
