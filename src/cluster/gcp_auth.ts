/**
 * Token auth on gcp: nothing secret may go into instance metadata (a task on the VM can read it
 * from the metadata server). Workers enrol with a one-time token (src/controller/enrolment.ts);
 * the controller on its VM makes the worker token itself: `worker.token` (0600) in its state dir,
 * created on first start and kept across restarts. The operator never needs it.
 * @module
 */
import type { ClusterConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import type { WorkerTokenSources } from "../config/mod.ts";
import { newToken } from "../auth/mod.ts";

/** Whether `config` is a gcp cluster with token auth (workers enrol; the controller self-issues). */
export function gcpTokenMode(config: ClusterConfig): boolean {
  return config.auth?.mode === "token" && config.controller?.kind.case === "gcp";
}

/**
 * The worker token sources for a gcp controller with token auth when none is given: the file
 * `<dir>/worker.token`, created (0600, random) when missing. Other configs: `sources` unchanged.
 */
export function gcpWorkerTokenSources(
  config: ClusterConfig,
  sources: WorkerTokenSources,
  dir: string,
): WorkerTokenSources {
  if (!gcpTokenMode(config)) return sources;
  if (sources.env || sources.envFile || config.auth?.workerTokenFile) return sources;
  const path = `${dir}/worker.token`;
  let present = false;
  try {
    present = Deno.statSync(path).size > 0;
  } catch { /* missing */ }
  if (!present) {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    Deno.writeTextFileSync(`${path}.tmp`, newToken(), { mode: 0o600 });
    Deno.renameSync(`${path}.tmp`, path);
  }
  return { envFile: path };
}
