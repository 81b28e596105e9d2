/**
 * The `iris` command: a table of subcommands. Parses, dispatches, turns errors into one clear
 * line and an exit code (2 for usage errors, 1 for failures).
 * @module
 */
import { ConnectError } from "@connectrpc/connect";
import { commandHelp, type CommandSpec, type Io, parseCommand, UsageError } from "./args.ts";
import { jobCommands } from "./job.ts";
import { portsCommand } from "./ports.ts";
import { jobDownloadCommand } from "./job_download.ts";
import { serveCommands } from "./serve.ts";
import { smokeCommand } from "./smoke.ts";
import { clusterCommands } from "./cluster.ts";
import { authCommands } from "./auth.ts";
import { userCommands } from "./user.ts";
import { keyCommands } from "./key.ts";
import { opsCommands } from "./ops.ts";
import { VERSION } from "../version.ts";
import { ControllerUnreachableError } from "../client/mod.ts";
import { IrisError } from "../errors.ts";

/** Every command, in help order. Other modules append theirs via `registerCommands`. */
const COMMANDS: CommandSpec[] = [
  ...serveCommands,
  ...jobCommands,
  portsCommand,
  jobDownloadCommand,
  ...clusterCommands,
  ...authCommands,
  ...userCommands,
  ...keyCommands,
  ...opsCommands,
  smokeCommand,
];

/** Adds commands (smoke, cluster, demo) to the table. */
export function registerCommands(commands: readonly CommandSpec[]): void {
  COMMANDS.push(...commands);
}

function topHelp(): string {
  const groups = new Map<string, CommandSpec[]>();
  for (const c of COMMANDS) {
    const g = c.name.split(" ")[0]!;
    groups.set(g, [...(groups.get(g) ?? []), c]);
  }
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 4;
  const lines = [
    `iris ${VERSION} — a cluster job scheduler for ML research`,
    "",
    "Usage: iris <command> [options]",
    "",
    "Commands:",
  ];
  for (const cmds of groups.values()) {
    for (const c of cmds) lines.push(`  ${c.name.padEnd(width)}${c.summary}`);
  }
  lines.push("", "Run 'iris <command> --help' for a command's options.");
  return lines.join("\n") + "\n";
}

function groupHelp(group: string): string | undefined {
  const cmds = COMMANDS.filter((c) => c.name.split(" ")[0] === group);
  if (cmds.length === 0) return undefined;
  const width = Math.max(...cmds.map((c) => c.name.length)) + 4;
  return [
    `Usage: iris ${group} <command> [options]`,
    "",
    "Commands:",
    ...cmds.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    "",
  ].join("\n");
}

/** Runs the CLI with `argv`; returns the exit code. */
export async function main(argv: readonly string[], io: Io, signal: AbortSignal): Promise<number> {
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
    io.out(topHelp());
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === "--version" || argv[0] === "version") {
    io.out(`iris ${VERSION}\n`);
    return 0;
  }
  // Longest matching command name: "job run" before "job".
  const cmd = COMMANDS.filter((c) => {
    const words = c.name.split(" ");
    return words.every((w, i) => argv[i] === w);
  }).sort((a, b) => b.name.length - a.name.length)[0];
  if (!cmd) {
    const help = groupHelp(argv[0]!);
    if (help && (argv.length === 1 || argv[1] === "--help" || argv[1] === "-h")) {
      io.out(help);
      return argv.length === 1 ? 2 : 0;
    }
    io.err(
      `iris: unknown command ${
        JSON.stringify(argv.slice(0, help ? 2 : 1).join(" "))
      }\nRun 'iris --help' for the list of commands.\n`,
    );
    return 2;
  }
  const rest = argv.slice(cmd.name.split(" ").length);
  try {
    const parsed = parseCommand(cmd, rest);
    if (parsed.values.help) {
      io.out(commandHelp(cmd));
      return 0;
    }
    return await cmd.run(parsed, io, signal);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`iris ${cmd.name}: ${err.message}\nRun 'iris ${cmd.name} --help' for usage.\n`);
      return 2;
    }
    if (err instanceof ControllerUnreachableError || err instanceof IrisError) {
      io.err(`iris ${cmd.name}: ${err.message}\n`);
      return 1;
    }
    if (err instanceof ConnectError) {
      io.err(`iris ${cmd.name}: ${err.rawMessage}\n`);
      return 1;
    }
    io.err(`iris ${cmd.name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
