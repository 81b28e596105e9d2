/**
 * LocalController: the controller lifecycle protocol for `controller.local` configs. The
 * controller, autoscaler and every worker run in this process; workers are Deno Workers made by
 * the local platform through the same autoscaler path that creates TPU VMs on GCP.
 * @module
 */
import type { ClusterConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import type { ControllerLifecycle, ControllerStatus } from "../platform/mod.ts";
import { controllerClient } from "../rpc/mod.ts";
import { type RunningCluster, startCluster } from "./cluster.ts";
import { describeError } from "../errors.ts";

/** Options for {@linkcode LocalController}. */
export interface LocalControllerOptions {
  /** Controller log lines. */
  readonly log?: (line: string) => void;
  /** Worker log lines by worker id. */
  readonly vmLog?: (workerId: string, line: string) => void;
}

/** Runs a whole local cluster in-process. */
export class LocalController implements ControllerLifecycle {
  readonly #config: ClusterConfig;
  readonly #options: LocalControllerOptions;
  #cluster?: RunningCluster;
  #workDir?: string;
  #startedAt = 0;
  #startLog: string[] = [];

  constructor(config: ClusterConfig, options: LocalControllerOptions = {}) {
    if (config.controller?.kind.case !== "local") {
      throw new Error(
        `LocalController needs a config with controller.local (got ${
          config.controller?.kind.case ?? "none"
        })`,
      );
    }
    this.#config = config;
    this.#options = options;
  }

  /** The running cluster (controller, platform, autoscaler), for in-process callers. */
  get cluster(): RunningCluster | undefined {
    return this.#cluster;
  }

  async start(): Promise<string> {
    if (this.#cluster) return this.#cluster.url;
    const t0 = performance.now();
    this.#workDir = await Deno.makeTempDir({ prefix: "iris-local-" });
    try {
      this.#cluster = await startCluster(this.#config, {
        workDir: this.#workDir,
        log: this.#options.log,
        vmLog: this.#options.vmLog,
      });
    } catch (err) {
      await Deno.remove(this.#workDir, { recursive: true }).catch(() => {});
      this.#workDir = undefined;
      throw err;
    }
    this.#startedAt = Date.now();
    this.#startLog = [
      `local controller started at ${this.#cluster.url} in ${
        (performance.now() - t0).toFixed(1)
      } ms`,
      `work dir ${this.#workDir}`,
      `scale groups: ${Object.keys(this.#config.scaleGroups).join(", ") || "(none)"}`,
    ];
    return this.#cluster.url;
  }

  /** Stops the autoscaler, every Worker (tasks killed and awaited), the server; removes the work dir. */
  async stop(): Promise<void> {
    const cluster = this.#cluster;
    const dir = this.#workDir;
    this.#cluster = undefined;
    this.#workDir = undefined;
    try {
      await cluster?.stop();
    } finally {
      if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }

  async restart(): Promise<string> {
    await this.stop();
    return await this.start();
  }

  /** Local mode has nothing to pull: reload is a restart. */
  reload(): Promise<string> {
    return this.restart();
  }

  discover(): Promise<string | undefined> {
    return Promise.resolve(this.#cluster?.url);
  }

  fetchStartupLogs(): Promise<string> {
    return Promise.resolve(
      this.#startLog.length ? this.#startLog.join("\n") + "\n" : "(local controller not started)\n",
    );
  }

  /** Health from a real GetControllerStatus call. */
  async status(): Promise<ControllerStatus> {
    const url = this.#cluster?.url;
    if (!url) return { running: false, url: "", healthy: false, message: "not started" };
    try {
      const res = await controllerClient(url).getControllerStatus({}, {
        signal: AbortSignal.timeout(5000),
      });
      return {
        running: true,
        url,
        healthy: res.healthy,
        message: `${res.workerCount} workers, ${res.jobCount} jobs, up ${
          Math.round((Date.now() - this.#startedAt) / 1000)
        } s`,
      };
    } catch (err) {
      return { running: true, url, healthy: false, message: describeError(err) };
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
