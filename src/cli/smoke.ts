/**
 * `iris smoke`: runs the smoke test against the cluster a config describes.
 * @module
 */
import { loadConfig, TPU_VARIANT_EXAMPLES, tpuShape } from "../config/mod.ts";
import { parseDuration } from "../time.ts";
import { DEFAULT_TPU_TYPE, runSmoke, SMOKE_JOBS, SMOKE_MODES } from "../smoke/mod.ts";
import { AcceleratorType } from "../rpc/gen/iris/v1/types_pb.ts";
import { bool, type CommandSpec, str, strs, UsageError } from "./args.ts";

export const smokeCommand: CommandSpec = {
  name: "smoke",
  summary:
    "Start a cluster from a config, run the smoke jobs through the client API, report, and clean up.",
  usage: "smoke --config FILE [--mode full|keep|redeploy] [--timeout DURATION] " +
    "[--job-timeout DURATION] [--tpu-type VARIANT] [--log-dir DIR] [--only NAME...]",
  description: `Jobs: ${SMOKE_JOBS.map((j) => j.name).join(", ")}.\n` +
    "Modes:\n" +
    "  full      clean start (gcp/manual: leftovers of an earlier run are listed, removed and\n" +
    "            logged), run the jobs, stop the cluster.\n" +
    "  keep      the same, but the cluster stays up afterwards and the run says how to reach and\n" +
    "            stop it (local: it lives in this process until Ctrl-C or 'iris cluster stop').\n" +
    "  redeploy  no clean start: gcp/manual restart the running controller with this code;\n" +
    "            local runs the jobs on the running 'iris cluster start' (or starts one here).\n" +
    "            The cluster stays up.\n" +
    "summary.md lists the autoscaler's demand and every scale group's slices after each job.\n" +
    "Exit code 0 only if every selected job passed. On timeout or Ctrl-C, running jobs are cancelled\n" +
    "and the cluster is stopped (unless kept up) before exiting non-zero.",
  options: {
    config: { type: "string", value: "FILE", description: "Cluster config (YAML)" },
    timeout: {
      type: "string",
      value: "DURATION",
      description: "Global limit for the whole run",
      default: "1800s",
    },
    "log-dir": {
      type: "string",
      value: "DIR",
      description: "Where to write logs (default: ./smoke-logs/<timestamp>)",
    },
    only: { type: "string", value: "NAME", multiple: true, description: "Run only this job" },
    mode: {
      type: "string",
      value: "MODE",
      description: `What happens to the cluster: ${SMOKE_MODES.join(", ")}`,
      default: "full",
    },
    "job-timeout": {
      type: "string",
      value: "DURATION",
      description: "How long each job may take (default: the smaller of --timeout and 300s)",
    },
    "tpu-type": {
      type: "string",
      value: "VARIANT",
      description:
        `Slice variant of the TPU jobs (tpu-hello, coscheduled); a scale group must have it (default ${DEFAULT_TPU_TYPE})`,
    },
    keep: { type: "boolean", description: "Same as --mode keep" },
  },
  examples: [
    "iris smoke --config examples/local.yaml",
    "iris smoke --config examples/local.yaml --only hello --only coscheduled",
    "iris smoke --config examples/local.yaml --mode keep --job-timeout 60s",
    "iris smoke --config examples/gcp.yaml --mode redeploy --tpu-type v5litepod-16",
  ],
  async run(p, io, signal) {
    const configPath = str(p, "config");
    if (!configPath) throw new UsageError("--config FILE is required");
    const timeout = parseDuration(str(p, "timeout")!);
    if (timeout === undefined || timeout <= 0) {
      throw new UsageError(
        `--timeout must be a duration like 600s or 30m (got ${JSON.stringify(str(p, "timeout"))})`,
      );
    }
    const only = strs(p, "only");
    for (const name of only) {
      if (!SMOKE_JOBS.some((j) => j.name === name)) {
        throw new UsageError(
          `--only: unknown job ${JSON.stringify(name)} (jobs: ${
            SMOKE_JOBS.map((j) => j.name).join(", ")
          })`,
        );
      }
    }
    const modeText = bool(p, "keep") ? "keep" : str(p, "mode")!;
    const mode = SMOKE_MODES.find((m) => m === modeText);
    if (!mode) {
      throw new UsageError(
        `--mode must be one of ${SMOKE_MODES.join(", ")} (got ${JSON.stringify(modeText)})`,
      );
    }
    if (bool(p, "keep") && str(p, "mode") !== "full" && str(p, "mode") !== "keep") {
      throw new UsageError(`--keep contradicts --mode ${str(p, "mode")}`);
    }
    const jobTimeoutText = str(p, "job-timeout");
    const jobTimeout = jobTimeoutText === undefined ? undefined : parseDuration(jobTimeoutText);
    if (jobTimeoutText !== undefined && (jobTimeout === undefined || jobTimeout <= 0)) {
      throw new UsageError(
        `--job-timeout must be a duration like 60s or 5m (got ${JSON.stringify(jobTimeoutText)})`,
      );
    }
    const config = await loadConfig(configPath);
    const tpuType = str(p, "tpu-type");
    if (tpuType !== undefined) {
      const shape = tpuShape(tpuType);
      if (!shape) {
        throw new UsageError(
          `--tpu-type: unknown TPU variant ${
            JSON.stringify(tpuType)
          } (e.g. ${TPU_VARIANT_EXAMPLES})`,
        );
      }
      const variants = Object.values(config.scaleGroups).filter((g) =>
        g.acceleratorType === AcceleratorType.TPU
      ).map((g) => g.acceleratorVariant);
      if (!variants.includes(shape.variant)) {
        throw new UsageError(
          `--tpu-type ${tpuType}: no scale group of ${configPath} has it (TPU variants: ${
            variants.join(", ") || "none"
          })`,
        );
      }
    }
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    return await runSmoke({
      config,
      configPath,
      timeout,
      logDir: str(p, "log-dir") ?? `smoke-logs/${stamp}`,
      only,
      mode,
      jobTimeout,
      tpuType: tpuType === undefined ? undefined : tpuShape(tpuType)!.variant,
      print: (line) => io.out(line + "\n"),
      isTty: io.isTty,
      signal,
    });
  },
};
