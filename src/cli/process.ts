/**
 * `iris process status|logs [--worker ID]`: the controller's (or, proxied by it, a worker's) own
 * process: pid, uptime, version, RSS, CPU, open fds, threads and recent log lines
 * (GetProcessStatus; admin only).
 * @module
 */
import { controllerClient } from "../rpc/mod.ts";
import type { ProcessInfo } from "../rpc/mod.ts";
import { bool, type CommandSpec, formatBytes, num, type Parsed, str } from "./args.ts";
import { cliToken, CONTROLLER_OPTION, controllerUrl, TOKEN_FILE_OPTION } from "./job.ts";
import { ms } from "../time.ts";
import { formatDuration } from "../format.ts";
import { MAX_PROCESS_LOG_LINES } from "../process_info.ts";

const COMMON = {
  controller: CONTROLLER_OPTION,
  "token-file": TOKEN_FILE_OPTION,
  worker: { type: "string", value: "ID", description: "A worker instead of the controller" },
  json: { type: "boolean", description: "Print JSON" },
} as const;

async function fetchStatus(p: Parsed, signal: AbortSignal, lines: number): Promise<ProcessInfo> {
  const client = controllerClient(controllerUrl(p), { token: cliToken(p) });
  const res = await client.getProcessStatus(
    { workerId: str(p, "worker") ?? "", maxLogLines: lines },
    { signal },
  );
  return res.process!;
}

function asJson(info: ProcessInfo): string {
  const { $typeName: _, ...rest } = info;
  return JSON.stringify(rest, null, 2) + "\n";
}

const statusCommand: CommandSpec = {
  name: "process status",
  summary: "Show the controller's or a worker's process: pid, uptime, RSS, CPU, fds, threads.",
  usage: "process status [--worker ID] [--json]",
  options: COMMON,
  examples: ["iris process status", "iris process status --worker w-1"],
  async run(p, io, signal) {
    const info = await fetchStatus(p, signal, 10);
    if (bool(p, "json")) {
      io.out(asJson(info));
      return 0;
    }
    const rows: [string, string][] = [
      ["process", info.id ? `${info.role} ${info.id}` : info.role],
      ["host", info.hostname],
      ["pid", String(info.pid)],
      ["version", info.version],
      ["started", new Date(info.startedAtMs).toISOString()],
      ["uptime", formatDuration(ms(info.uptimeMs))],
      ["rss", formatBytes(info.rssBytes)],
      [
        "cpu",
        `${info.cpuUserSeconds.toFixed(2)}s user, ${info.cpuSystemSeconds.toFixed(2)}s system`,
      ],
      ["open fds", info.openFds < 0 ? "unknown" : String(info.openFds)],
      ["threads", String(info.threads)],
    ];
    io.out(rows.map(([k, v]) => `${(k + ":").padEnd(10)} ${v}`).join("\n") + "\n");
    if (info.recentLogs.length) io.out(`\nRecent log lines:\n${info.recentLogs.join("\n")}\n`);
    return 0;
  },
};

const logsCommand: CommandSpec = {
  name: "process logs",
  summary: "Print the recent log lines of the controller's or a worker's process.",
  usage: "process logs [--worker ID] [--lines N]",
  options: {
    ...COMMON,
    lines: {
      type: "string",
      value: "N",
      description: `How many lines, 1..${MAX_PROCESS_LOG_LINES}`,
      default: "200",
    },
  },
  examples: ["iris process logs --lines 50", "iris process logs --worker w-1"],
  async run(p, io, signal) {
    const lines = num(p, "lines", { min: 1, max: MAX_PROCESS_LOG_LINES, integer: true })!;
    const info = await fetchStatus(p, signal, lines);
    if (bool(p, "json")) {
      io.out(JSON.stringify(info.recentLogs, null, 2) + "\n");
      return 0;
    }
    if (info.recentLogs.length) io.out(info.recentLogs.join("\n") + "\n");
    return 0;
  },
};

/** `iris process …`. */
export const processCommands: readonly CommandSpec[] = [statusCommand, logsCommand];
