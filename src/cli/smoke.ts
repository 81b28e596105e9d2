/**
 * `iris smoke`: runs the smoke test against the cluster a config describes.
 * @module
 */
import { loadConfig } from "../config/mod.ts";
import { parseDuration } from "../time.ts";
import { runSmoke } from "../smoke/runner.ts";
import { SMOKE_JOBS } from "../smoke/jobs.ts";
import { bool, type CommandSpec, str, strs, UsageError } from "./args.ts";

export const smokeCommand: CommandSpec = {
  name: "smoke",
  summary:
    "Start a cluster from a config, run the smoke jobs through the client API, report, and clean up.",
  usage: "smoke --config FILE [--timeout DURATION] [--log-dir DIR] [--only NAME...] [--keep]",
  description: `Jobs: ${SMOKE_JOBS.map((j) => j.name).join(", ")}.\n` +
    "Exit code 0 only if every selected job passed. On timeout or Ctrl-C, running jobs are cancelled\n" +
    "and the cluster is stopped before exiting non-zero.",
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
    keep: {
      type: "boolean",
      description: "Leave the cluster up after the jobs, printing its URL, until Ctrl-C",
    },
  },
  examples: [
    "iris smoke --config examples/local.yaml",
    "iris smoke --config examples/local.yaml --only hello --only coscheduled",
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
    const config = await loadConfig(configPath);
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    return await runSmoke({
      config,
      configPath,
      timeout,
      logDir: str(p, "log-dir") ?? `smoke-logs/${stamp}`,
      only,
      keep: bool(p, "keep"),
      print: (line) => io.out(line + "\n"),
      isTty: io.isTty,
      signal,
    });
  },
};
