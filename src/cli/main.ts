/**
 * The `iris` command: a table of subcommands. Parses, dispatches, turns errors into one clear
 * line and an exit code (2 for usage errors, 1 for failures).
 *
 * Start cost: this module loads only args.ts. Each command's module (and with it the RPC code
 * and npm packages) is imported when that command runs, so `iris job logs` does not pay for the
 * controller, the worker or the cluster tools. `COMMAND_MODULES` lists which names each module
 * defines; tests/cli/lazy_commands_test.ts checks it against the modules.
 * @module
 */
import { commandHelp, type CommandSpec, type Io, parseCommand, UsageError } from "./args.ts";
import { VERSION } from "../version.ts";

/** A module of commands: the names it defines (for dispatch without loading it) and its loader. */
export interface CommandModule {
  /** Relative to this directory: "./job.ts". */
  readonly path: string;
  readonly names: readonly string[];
  readonly load: () => Promise<readonly CommandSpec[]>;
}

/** Where cli_bundle.ts puts the command modules it bundles, by `path`. */
export const BUNDLED_MODULES = Symbol.for("iris.cli.modules");

/**
 * The module at `path`: from the bundle when there is one, else imported. The specifier is
 * computed on purpose: Deno walks every literal dynamic import's module graph when a program
 * starts, which would load all of Iris before `iris --version` could print.
 */
function importModule(path: string): Promise<unknown> {
  const bundled = (globalThis as { [BUNDLED_MODULES]?: Record<string, unknown> })[
    BUNDLED_MODULES
  ]?.[path];
  if (bundled) return Promise.resolve(bundled);
  return import(new URL(path, import.meta.url).href);
}

function commandModule<M>(
  path: string,
  names: readonly string[],
  pick: (m: M) => readonly CommandSpec[],
): CommandModule {
  return { path, names, load: async () => pick(await importModule(path) as M) };
}

/** Every command module, in help order. */
export const COMMAND_MODULES: readonly CommandModule[] = [
  commandModule<typeof import("./serve.ts")>(
    "./serve.ts",
    ["controller serve", "worker serve", "controller backup", "controller restore"],
    (m) => m.serveCommands,
  ),
  commandModule<typeof import("./job.ts")>(
    "./job.ts",
    ["job run", "job list", "job status", "job history", "job logs", "job cancel"],
    (m) => m.jobCommands,
  ),
  commandModule<typeof import("./ports.ts")>(
    "./ports.ts",
    ["job ports"],
    (m) => [m.portsCommand],
  ),
  commandModule<typeof import("./job_download.ts")>(
    "./job_download.ts",
    ["job download"],
    (m) => [m.jobDownloadCommand],
  ),
  commandModule<typeof import("./cluster.ts")>(
    "./cluster.ts",
    ["cluster start", "cluster stop", "cluster status", "cluster logs"],
    (m) => m.clusterCommands,
  ),
  commandModule<typeof import("./auth.ts")>(
    "./auth.ts",
    ["auth hash-token", "auth new-token"],
    (m) => m.authCommands,
  ),
  commandModule<typeof import("./user.ts")>(
    "./user.ts",
    ["user budget get", "user budget set", "user budget list"],
    (m) => m.userCommands,
  ),
  commandModule<typeof import("./key.ts")>(
    "./key.ts",
    [
      "key create",
      "key list",
      "key revoke",
      "login",
      "whoami",
      "user create",
      "user list",
      "user delete",
    ],
    (m) => m.keyCommands,
  ),
  commandModule<typeof import("./rpc.ts")>("./rpc.ts", ["rpc"], (m) => m.rpcCommands),
  commandModule<typeof import("./endpoints.ts")>(
    "./endpoints.ts",
    ["endpoints list"],
    (m) => m.endpointsCommands,
  ),
  commandModule<typeof import("./query.ts")>("./query.ts", ["query"], (m) => m.queryCommands),
  commandModule<typeof import("./process.ts")>(
    "./process.ts",
    ["process status", "process logs"],
    (m) => m.processCommands,
  ),
  commandModule<typeof import("./job_report.ts")>(
    "./job_report.ts",
    ["job summary", "job bug-report"],
    (m) => m.jobReportCommands,
  ),
  commandModule<typeof import("./task.ts")>(
    "./task.ts",
    ["task exec", "task profile"],
    (m) => m.taskCommands,
  ),
  commandModule<typeof import("./cluster_debug.ts")>(
    "./cluster_debug.ts",
    ["cluster debug health"],
    (m) => m.clusterDebugCommands,
  ),
  commandModule<typeof import("./cluster_tools.ts")>(
    "./cluster_tools.ts",
    [
      "cluster dashboard",
      "cluster restart",
      "cluster debug discover",
      "cluster debug bootstrap-logs",
      "cluster debug cleanup",
      "cluster debug validate",
    ],
    (m) => m.clusterToolCommands,
  ),
  commandModule<typeof import("./smoke.ts")>("./smoke.ts", ["smoke"], (m) => [m.smokeCommand]),
];

/** The specs of `modules`, in table order. */
async function loadAll(modules: readonly CommandModule[]): Promise<CommandSpec[]> {
  return (await Promise.all(modules.map((m) => m.load()))).flat();
}

/** Every command's spec (loads every module: for the full help and tests). */
export function allCommands(): Promise<CommandSpec[]> {
  return loadAll(COMMAND_MODULES);
}

function topHelp(commands: readonly CommandSpec[]): string {
  const groups = new Map<string, CommandSpec[]>();
  for (const c of commands) {
    const g = c.name.split(" ")[0]!;
    groups.set(g, [...(groups.get(g) ?? []), c]);
  }
  const width = Math.max(...commands.map((c) => c.name.length)) + 4;
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

/** Help of the commands whose name starts with `prefix` words, or undefined when none. */
async function groupHelp(prefix: readonly string[]): Promise<string | undefined> {
  const matches = (name: string) => prefix.every((w, i) => name.split(" ")[i] === w);
  const modules = COMMAND_MODULES.filter((m) => m.names.some(matches));
  if (modules.length === 0) return undefined;
  const cmds = (await loadAll(modules)).filter((c) => matches(c.name));
  const width = Math.max(...cmds.map((c) => c.name.length)) + 4;
  return [
    `Usage: iris ${prefix.join(" ")} <command> [options]`,
    "",
    "Commands:",
    ...cmds.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    "",
  ].join("\n");
}

/** Runs the CLI with `argv`; returns the exit code. */
export async function main(argv: readonly string[], io: Io, signal: AbortSignal): Promise<number> {
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
    io.out(topHelp(await allCommands()));
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === "--version" || argv[0] === "version") {
    io.out(`iris ${VERSION}\n`);
    return 0;
  }
  // Longest matching command name: "job run" before "job".
  const matched = COMMAND_MODULES.flatMap((m) => m.names.map((name) => ({ name, m })))
    .filter(({ name }) => name.split(" ").every((w, i) => argv[i] === w))
    .sort((a, b) => b.name.length - a.name.length)[0];
  const cmd = matched && (await matched.m.load()).find((c) => c.name === matched.name);
  if (!cmd) {
    // "iris cluster", "iris cluster debug", "iris job --help": the group's commands.
    const firstFlag = argv.findIndex((a) => a.startsWith("-"));
    const words = firstFlag < 0 ? argv : argv.slice(0, firstFlag);
    for (let n = Math.min(words.length, 3); n >= 1; n--) {
      const help = await groupHelp(words.slice(0, n));
      if (!help) continue;
      const asked = argv.length === n || argv[n] === "--help" || argv[n] === "-h";
      if (asked) {
        io.out(help);
        return argv.length === n ? 2 : 0;
      }
      io.err(
        `iris: unknown command ${JSON.stringify(argv.slice(0, n + 1).join(" "))}\nRun 'iris ${
          words.slice(0, n).join(" ")
        } --help' for the list of commands.\n`,
      );
      return 2;
    }
    io.err(
      `iris: unknown command ${
        JSON.stringify(argv[0])
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
    // Loaded already by any command that can throw them (computed: see importModule).
    const { IrisError } = await importModule("../errors.ts") as typeof import("../errors.ts");
    if (err instanceof IrisError) {
      io.err(`iris ${cmd.name}: ${err.message}\n`);
      return 1;
    }
    if (err instanceof Error && err.name === "ConnectError" && "rawMessage" in err) {
      // A ConnectError (not imported here, to keep this module light): its message without the code.
      io.err(`iris ${cmd.name}: ${err.rawMessage}\n`);
      return 1;
    }
    io.err(`iris ${cmd.name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
