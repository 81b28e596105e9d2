/**
 * `iris cluster dashboard|restart` and `iris cluster debug discover|bootstrap-logs|cleanup|
 * validate`: operator tools over a cluster config (through src/cluster's lifecycle and platform
 * seams, so gcp and manual clusters are reached by their own shell-outs), plus the cluster
 * selection every cluster tool shares: `--config FILE [--as-local]` or `--controller URL`.
 * @module
 */
import { configMode } from "../config/mod.ts";
import type { ClusterConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import {
  type ClusterConnection,
  connectCluster,
  createControllerLifecycle,
  platformFromConfig,
  readLocalRecord,
  removeLeftovers,
} from "../cluster/mod.ts";
import { logFileName } from "../platform/mod.ts";
import type { SliceInfo } from "../platform/mod.ts";
import { controllerClient } from "../rpc/mod.ts";
import { describeError, NotFoundError } from "../errors.ts";
import { ms } from "../time.ts";
import { formatDuration } from "../format.ts";
import {
  bool,
  type CommandSpec,
  type Io,
  num,
  type OptionSpec,
  type Parsed,
  str,
  table,
  UsageError,
} from "./args.ts";
import { cliToken, CONTROLLER_OPTION, controllerUrl, TOKEN_FILE_OPTION } from "./job.ts";
import { AS_LOCAL_OPTION, CONFIG_OPTION, requireConfig } from "./cluster_lifecycle.ts";

/** `--config FILE [--as-local] | --controller URL`, and the token: how cluster tools find it. */
export const CLUSTER_SELECT_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  config: CONFIG_OPTION,
  "as-local": AS_LOCAL_OPTION,
  controller: CONTROLLER_OPTION,
  "token-file": TOKEN_FILE_OPTION,
};

/** A controller reached from here, and how; disposing closes a tunnel. */
export interface SelectedController extends AsyncDisposable {
  readonly url: string;
  /** "direct", "ssh tunnel to …", or "--controller". */
  readonly via: string;
  /** The config's name and mode, with --config. */
  readonly cluster?: { readonly name: string; readonly mode: string };
}

/**
 * The controller `--config` (found the way its mode says, tunnelled on gcp) or `--controller`
 * (else $IRIS_CONTROLLER_URL, the current cluster, the default) names.
 * @throws UsageError for both flags; NotFoundError when the config's cluster is not running
 */
export async function selectController(p: Parsed, io: Io): Promise<SelectedController> {
  if (str(p, "config") === undefined) {
    if (bool(p, "as-local")) throw new UsageError("--as-local needs --config FILE");
    const close = () => Promise.resolve();
    return { url: controllerUrl(p), via: "--controller", [Symbol.asyncDispose]: close };
  }
  if (p.values.controller !== undefined) {
    throw new UsageError("give either --config or --controller, not both");
  }
  const { config } = await requireConfig(p, io);
  const connection: ClusterConnection = await connectCluster(config);
  return {
    url: connection.url,
    via: connection.via,
    cluster: { name: config.name, mode: configMode(config) },
    [Symbol.asyncDispose]: () => connection.close(),
  };
}

function waitForAbort(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

const dashboardCommand: CommandSpec = {
  name: "cluster dashboard",
  summary: "Print (and with --open, open) the cluster's dashboard URL, tunnelled when needed.",
  usage: "cluster dashboard [--config FILE [--as-local] | --controller URL] [--open]",
  description: "The dashboard is served at the controller's root URL. With --config the " +
    "controller is found the way the config's mode says; a gcp controller is reached through an " +
    "ssh tunnel from a local port (kubernetes: the API server's proxy), which stays open until " +
    "Ctrl-C. A directly reachable controller's URL is printed and the command exits.",
  options: {
    ...CLUSTER_SELECT_OPTIONS,
    open: { type: "boolean", description: "Open it in a browser (xdg-open or open)" },
  },
  examples: [
    "iris cluster dashboard --config examples/local.yaml",
    "iris cluster dashboard --config gcp.yaml --open   # until Ctrl-C",
  ],
  async run(p, io, signal) {
    await using selected = await selectController(p, io);
    const url = selected.url.replace(/\/?$/, "/");
    // Reachable? A dashboard URL that does not answer is worse than an error.
    await controllerClient(selected.url, { token: cliToken(p) }).getControllerStatus({}, {
      signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]),
    }).catch((err) => {
      throw new Error(`the controller at ${selected.url} does not answer: ${describeError(err)}`);
    });
    io.out(`${url}\n`);
    if (bool(p, "open")) await openBrowser(url, io);
    const tunnelled = selected.via !== "direct" && selected.via !== "--controller";
    if (!tunnelled) return 0;
    io.err(`Dashboard reached through ${selected.via}; Ctrl-C closes it\n`);
    await waitForAbort(signal);
    return 0;
  },
};

async function openBrowser(url: string, io: Io): Promise<void> {
  for (const opener of ["xdg-open", "open"]) {
    try {
      const out = await new Deno.Command(opener, {
        args: [url],
        stdin: "null",
        stdout: "null",
        stderr: "null",
        signal: AbortSignal.timeout(10_000),
      }).output();
      if (out.success) return;
    } catch {
      // Not installed: try the next.
    }
  }
  io.err("Could not open a browser (no xdg-open or open): open the URL above yourself\n");
}

const restartCommand: CommandSpec = {
  name: "cluster restart",
  summary: "Restart the cluster's controller; with controller.state_dir its jobs are kept.",
  usage: "cluster restart --config FILE",
  description: "gcp and manual: stops the controller (VM process or host daemon) and starts it " +
    "again through the same lifecycle as cluster start; the controller reloads its state " +
    "directory (controller.state_dir; without one it starts with no jobs). The old " +
    "controller's shutdown stops the slices it started, so tasks that were running are " +
    "retried on new ones. A local cluster " +
    "lives inside its `cluster start` process: stop it and start it again.",
  options: { config: CONFIG_OPTION, "as-local": AS_LOCAL_OPTION },
  examples: ["iris cluster restart --config examples/manual.yaml"],
  async run(p, io) {
    const { path, config } = await requireConfig(p, io);
    const mode = configMode(config);
    if (mode === "local") {
      throw new UsageError(
        `cluster '${config.name}' is local: it runs inside its 'iris cluster start' process; ` +
          "stop it (Ctrl-C or iris cluster stop) and start it again",
      );
    }
    // The config goes along, as cluster start sends it: the autoscaler and state dir are in it.
    const lifecycle = createControllerLifecycle(config, {
      configText: await Deno.readTextFile(path),
    });
    const before = await lifecycle.discover();
    if (!before) throw new NotFoundError(`cluster '${config.name}' (${mode}) is not running`);
    const stateDir = config.controller?.stateDir ?? "";
    io.err(
      `Restarting the controller of '${config.name}' (${mode}) at ${before}; ` +
        (stateDir
          ? `state kept in ${stateDir}\n`
          : "no controller.state_dir: the new controller starts with no jobs\n"),
    );
    const url = await lifecycle.restart();
    const status = await lifecycle.status();
    io.out(
      `Controller of '${config.name}' restarted at ${url}: ${
        status.healthy ? "healthy" : `NOT healthy${status.message ? ` (${status.message})` : ""}`
      }\n`,
    );
    return status.healthy ? 0 : 1;
  },
};

/** Slices the platform of a gcp/manual/kubernetes config lists (read-only). */
async function platformSlices(config: ClusterConfig): Promise<SliceInfo[]> {
  return await platformFromConfig(config).listSlices({ signal: AbortSignal.timeout(60_000) });
}

function sliceRows(slices: readonly SliceInfo[], now = Date.now()): string[][] {
  return slices.map((s) => [
    s.sliceId,
    s.scaleGroup || "-",
    s.zone || "-",
    String(s.state),
    s.vms.map((v) => v.address || v.vmId).join(" ") || "-",
    s.createdAt ? `${formatDuration(ms(now - s.createdAt))} ago` : "-",
  ]);
}

const discoverCommand: CommandSpec = {
  name: "cluster debug discover",
  summary: "Find the cluster's controller and list what the platform holds for it.",
  usage: "cluster debug discover --config FILE [--as-local]",
  description: "Local: the running `cluster start` record and the controller's slices. gcp, " +
    "manual, kubernetes: the controller the lifecycle finds (labelled VM, configured host, " +
    "Service) and every slice the platform lists by the cluster's labels. Changes nothing. " +
    "Exit code 1 when no controller is found or it does not answer.",
  options: { config: CONFIG_OPTION, "as-local": AS_LOCAL_OPTION, "token-file": TOKEN_FILE_OPTION },
  examples: ["iris cluster debug discover --config examples/local.yaml"],
  async run(p, io, signal) {
    const { config } = await requireConfig(p, io);
    const mode = configMode(config);
    const record = mode === "local" ? await readLocalRecord(config.name) : undefined;
    const found = mode === "local"
      ? record?.url
      : await createControllerLifecycle(config).discover();
    if (!found) {
      io.out(`Cluster '${config.name}' (${mode}): no controller found\n`);
    } else {
      io.out(
        `Cluster '${config.name}' (${mode}): controller ${found}${
          record ? ` (cluster start pid ${record.pid}, logs ${record.logDir})` : ""
        }\n`,
      );
    }
    let answers = false;
    if (found) {
      try {
        await using connection = await connectCluster(config);
        const rpc = controllerClient(connection.url, { token: cliToken(p) });
        const opts = { signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) };
        const st = await rpc.getControllerStatus({}, opts);
        answers = true;
        io.out(
          `  answers: ${st.healthy ? "healthy" : "UNHEALTHY"}, version ${st.version}, ` +
            `${st.workerCount} workers, ${st.jobCount} jobs (via ${connection.via})\n`,
        );
        if (mode === "local") {
          const auto = await rpc.getAutoscalerStatus({}, opts);
          const slices = auto.groups.flatMap((g) =>
            g.slices.map((s) => [s.sliceId, g.name, s.state, s.workerIds.join(" ") || "-"])
          );
          io.out(
            `\nSlices (from the controller):\n` +
              (slices.length ? table(["SLICE", "GROUP", "STATE", "WORKERS"], slices) : "  none\n"),
          );
        }
      } catch (err) {
        io.out(`  does not answer: ${describeError(err)}\n`);
      }
    }
    if (mode !== "local") {
      const slices = await platformSlices(config);
      io.out(
        `\nSlices (from the ${mode} platform):\n` +
          (slices.length
            ? table(["SLICE", "GROUP", "ZONE", "STATE", "VMS", "CREATED"], sliceRows(slices))
            : "  none\n"),
      );
    }
    return found && answers ? 0 : 1;
  },
};

const bootstrapLogsCommand: CommandSpec = {
  name: "cluster debug bootstrap-logs",
  summary: "Show the startup logs of a slice's VMs (or of the controller).",
  usage: "cluster debug bootstrap-logs SLICE|controller --config FILE [--lines N]",
  description: "gcp and manual: each VM's bootstrap log as the platform keeps it (serial port / " +
    "startup script output, or the host's bootstrap log over ssh); `controller` fetches the " +
    "controller's. Local: the first lines of each of the slice's workers' log files.",
  options: {
    config: CONFIG_OPTION,
    "as-local": AS_LOCAL_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    lines: {
      type: "string",
      value: "N",
      description: "Lines per VM (from the start), 1..100000",
      default: "200",
    },
  },
  positionals: { min: 1, max: 1, names: "SLICE" },
  examples: ["iris cluster debug bootstrap-logs iris-cpu-1 --config examples/local.yaml"],
  async run(p, io, signal) {
    const { config } = await requireConfig(p, io);
    const lines = num(p, "lines", { min: 1, max: 100_000, integer: true })!;
    const head = (text: string) =>
      text.split("\n").slice(0, lines).join("\n").replace(/\n?$/, "\n");
    const target = p.positionals[0]!;
    const mode = configMode(config);
    if (mode === "local") {
      const record = await readLocalRecord(config.name);
      if (!record) throw new NotFoundError(`cluster '${config.name}' (local) is not running`);
      if (target === "controller") {
        io.out(head(await Deno.readTextFile(`${record.logDir}/controller.log`)));
        return 0;
      }
      const rpc = controllerClient(record.url, { token: cliToken(p) });
      const auto = await rpc.getAutoscalerStatus({}, { signal });
      const slice = auto.groups.flatMap((g) => g.slices).find((s) => s.sliceId === target);
      if (!slice) {
        const known = auto.groups.flatMap((g) => g.slices.map((s) => s.sliceId));
        throw new NotFoundError(
          `No slice ${target} in cluster '${config.name}' (slices: ${known.join(", ") || "none"})`,
        );
      }
      for (const w of slice.workerIds) {
        const file = `${record.logDir}/workers/${logFileName(w)}`;
        const text = await Deno.readTextFile(file).catch(() => "(no log yet)\n");
        io.out(`==> ${w} (${file}) <==\n${head(text)}`);
      }
      return 0;
    }
    if (target === "controller") {
      io.out(head(await createControllerLifecycle(config).fetchStartupLogs()));
      return 0;
    }
    const platform = platformFromConfig(config);
    const callSignal = AbortSignal.any([signal, AbortSignal.timeout(120_000)]);
    const slice = await platform.describeSlice(target, { signal: callSignal });
    for (const vm of slice.vms) {
      const text = await platform.startupLogs(target, vm.vmId, { signal: callSignal })
        .catch((err) => `(cannot fetch: ${describeError(err)})\n`);
      io.out(`==> ${vm.vmId} (${vm.address || "no address"}) <==\n${head(text || "(empty)")}`);
    }
    return 0;
  },
};

const cleanupCommand: CommandSpec = {
  name: "cluster debug cleanup",
  summary: "List what a cluster left behind (controller, slices); delete it only with --yes.",
  usage: "cluster debug cleanup --config FILE [--yes]",
  description: "gcp and manual: the labelled controller and every labelled slice the platform " +
    "lists (manual: every configured host may hold a daemon). Without --yes it only lists " +
    "them (a dry run); with --yes it removes them like the smoke test's clean start. Local: " +
    "a stale record of a dead `cluster start` is removed; a running one is left alone.",
  options: {
    config: CONFIG_OPTION,
    "as-local": AS_LOCAL_OPTION,
    yes: { type: "boolean", short: "y", description: "Delete what is listed" },
  },
  examples: [
    "iris cluster debug cleanup --config examples/manual.yaml          # dry run",
    "iris cluster debug cleanup --config examples/manual.yaml --yes",
  ],
  async run(p, io) {
    const { config } = await requireConfig(p, io);
    const mode = configMode(config);
    if (mode === "local") {
      // readLocalRecord removes a record whose process is gone.
      const record = await readLocalRecord(config.name);
      io.out(
        record
          ? `Cluster '${config.name}' (local) is running (pid ${record.pid}): nothing to clean; ` +
            `stop it with iris cluster stop\n`
          : `Cluster '${config.name}' (local): nothing left behind\n`,
      );
      return 0;
    }
    const controller = await createControllerLifecycle(config).discover();
    const slices = await platformSlices(config);
    const found = [
      ...(controller ? [`controller at ${controller}`] : []),
      ...slices.map((s) => `slice ${s.sliceId} (${s.scaleGroup || "no group"}, ${s.state})`),
    ];
    if (mode === "manual") found.push("every configured host's iris daemons (manual hosts)");
    io.out(
      found.length
        ? `Would remove:\n${found.map((f) => `  ${f}\n`).join("")}`
        : "Nothing left behind\n",
    );
    if (!bool(p, "yes")) {
      if (found.length) io.out("Dry run: rerun with --yes to remove them\n");
      return 0;
    }
    const report = await removeLeftovers(config, { log: (line) => io.err(`${line}\n`) });
    io.out(
      `Removed ${report.stopped.length}; failed ${report.failed.length}; timed out ` +
        `${report.timedOut.length}\n`,
    );
    return report.failed.length || report.timedOut.length ? 1 : 0;
  },
};

const validateCommand: CommandSpec = {
  name: "cluster debug validate",
  summary: "Load the config and check it against the platform, changing nothing.",
  usage: "cluster debug validate --config FILE [--as-local]",
  description: "Loads and validates the config (errors name the file, line and field), prints " +
    "its mode and scale groups, then asks the platform read-only questions: gcp and manual " +
    "list the cluster's slices and look for its controller (credentials, project, ssh), " +
    "local checks its directories. Exit code 1 when a check fails.",
  options: { config: CONFIG_OPTION, "as-local": AS_LOCAL_OPTION },
  examples: ["iris cluster debug validate --config examples/local.yaml"],
  async run(p, io) {
    const { path, config } = await requireConfig(p, io);
    const mode = configMode(config);
    const groups = Object.entries(config.scaleGroups);
    io.out(`${path}: valid ${mode} config '${config.name}', ${groups.length} scale group(s)\n`);
    io.out(
      table(
        ["GROUP", "ACCELERATOR", "MIN..MAX"],
        groups.map(([name, g]) => [
          name,
          g.acceleratorVariant || "cpu",
          `${g.minSlices}..${g.maxSlices}`,
        ]),
      ),
    );
    const checks: [string, () => Promise<string>][] = mode === "local"
      ? [[
        "state directory",
        async () => {
          const { irisHome } = await import("../cluster/mod.ts");
          await Deno.mkdir(`${irisHome()}/clusters`, { recursive: true });
          return `${irisHome()}/clusters is writable`;
        },
      ]]
      : [
        ["platform", async () => `lists ${(await platformSlices(config)).length} slice(s)`],
        [
          "controller",
          async () => (await createControllerLifecycle(config).discover()) ?? "none running",
        ],
      ];
    let failed = 0;
    for (const [what, check] of checks) {
      try {
        io.out(`  ${what}: ok (${await check()})\n`);
      } catch (err) {
        failed++;
        io.out(`  ${what}: FAILED: ${describeError(err)}\n`);
      }
    }
    return failed ? 1 : 0;
  },
};

/** The cluster tools defined here. */
export const clusterToolCommands: readonly CommandSpec[] = [
  dashboardCommand,
  restartCommand,
  discoverCommand,
  bootstrapLogsCommand,
  cleanupCommand,
  validateCommand,
];
