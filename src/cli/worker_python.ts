/**
 * `iris worker serve` options for job outputs and Python environments (docs/python.md):
 * --output-retention, --outputs-prefix, --python-cache-size, --python-cache-max-age,
 * --python-installer (the cluster config's `defaults.outputs` and `defaults.python` become these).
 * @module
 */
import { type Duration, parseDuration } from "../time.ts";
import type { PythonEnvCacheOptions } from "../worker/mod.ts";
import { OUTPUTS_PREFIX_PATTERN } from "../worker/mod.ts";
import { type OptionSpec, type Parsed, parseSize, str, UsageError } from "./args.ts";

/** The options, spread into `worker serve`'s. */
export const WORKER_PYTHON_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  "output-retention": {
    type: "string",
    value: "DURATION",
    description:
      "Keep a job's IRIS_OUTPUT_DIR this long after its last attempt here (default 168h)",
  },
  "outputs-prefix": {
    type: "string",
    value: "URL",
    description:
      "Copy each attempt's IRIS_OUTPUT_DIR to URL/<job id> when it ends: gs://bucket/path or file:///dir",
  },
  "python-cache-size": {
    type: "string",
    value: "SIZE",
    description:
      "Job venvs beyond this total are evicted, least recently used first (default 20GiB)",
  },
  "python-cache-max-age": {
    type: "string",
    value: "DURATION",
    description: "Job venvs unused this long are evicted (default 168h)",
  },
  "python-installer": {
    type: "string",
    value: "NAME",
    description: "uv, pip, or auto (uv when on the task PATH) (default auto)",
  },
};

function duration(p: Parsed, name: string): Duration | undefined {
  const raw = str(p, name);
  if (raw === undefined) return undefined;
  const d = parseDuration(raw);
  if (d === undefined || d <= 0) {
    throw new UsageError(
      `--${name} must be a duration like 24h or 30m (got ${JSON.stringify(raw)})`,
    );
  }
  return d;
}

/** startWorker options from the flags. */
export function workerPythonOptions(
  p: Parsed,
): {
  outputRetention?: Duration;
  outputsPrefix?: string;
  python: Omit<PythonEnvCacheOptions, "rootDir">;
} {
  const prefix = str(p, "outputs-prefix");
  if (prefix !== undefined && !OUTPUTS_PREFIX_PATTERN.test(prefix)) {
    throw new UsageError(
      `--outputs-prefix must be gs://bucket/path or file:///absolute/path (got ${
        JSON.stringify(prefix)
      })`,
    );
  }
  const sizeRaw = str(p, "python-cache-size");
  const size = sizeRaw === undefined ? undefined : parseSize(sizeRaw);
  if (sizeRaw !== undefined && (size === undefined || size <= 0)) {
    throw new UsageError(
      `--python-cache-size must be a size like 20GiB (got ${JSON.stringify(sizeRaw)})`,
    );
  }
  const installer = str(p, "python-installer") ?? "auto";
  if (installer !== "uv" && installer !== "pip" && installer !== "auto") {
    throw new UsageError(
      `--python-installer must be one of uv, pip, auto (got ${JSON.stringify(installer)})`,
    );
  }
  return {
    outputRetention: duration(p, "output-retention"),
    ...(prefix !== undefined ? { outputsPrefix: prefix } : {}),
    python: { maxBytes: size, maxAge: duration(p, "python-cache-max-age"), installer },
  };
}
