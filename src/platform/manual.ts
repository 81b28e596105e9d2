/**
 * Manual platform: slices are hosts taken from a fixed pool, bootstrapped over raw ssh and
 * returned on terminate; the controller is started on its own host over ssh. Every ssh call goes
 * through the CommandRunner with a hard timeout.
 * @module
 */
import { PlatformError, QuotaExhaustedError, ResourceNotFoundError } from "../errors.ts";
import {
  type Clock,
  type Duration,
  minutes,
  seconds,
  systemClock,
  type Timestamp,
} from "../time.ts";
import { type CommandRunner, runAll, type TaskOutcome } from "../command/mod.ts";
import {
  controllerBootstrapScript,
  followLogScript,
  type IrisRuntime,
  tailLogScript,
  teardownScript,
  workerBootstrapScript,
  workerTokenPath,
} from "./bootstrap.ts";
import { groupAccelerator } from "./accelerator.ts";
import type { AcceleratorSpec } from "../types.ts";
import type { LogTarget } from "./log_stream.ts";
import type {
  CloudSliceState,
  ControllerLifecycle,
  ControllerStatus,
  CreateSliceRequest,
  Platform,
  PlatformCallOptions,
  SliceInfo,
} from "./platform.ts";
import {
  checkOnce,
  checkSsh,
  type HealthCheck,
  openTunnel,
  type RawSshTarget,
  type RemoteSecretFile,
  sshExec,
  sshFollow,
  sshScript,
  sshTunnel,
  type Tunnel,
  waitHealthy,
} from "./ssh.ts";

/** One host of the pool (a ManualHost proto message fits). Empty fields use `ssh` defaults. */
export interface ManualHostSpec {
  readonly host: string;
  readonly user?: string;
  readonly keyFile?: string;
  readonly port?: number;
  /** Host keys this host must match (see RawSshTarget.knownHostsFile). */
  readonly knownHostsFile?: string;
  /** This host's Deno binary: overrides the runtime's `denoPath`. */
  readonly denoPath?: string;
}

/** The runtime of host `h`: its own `denoPath` wins over the shared one. */
function hostRuntime(h: ManualHostSpec, runtime?: IrisRuntime): IrisRuntime | undefined {
  return h.denoPath ? { ...runtime, denoPath: h.denoPath } : runtime;
}

/** Defaults for hosts that leave ssh fields empty (platform.ssh). */
export interface SshDefaults {
  readonly user?: string;
  readonly keyFile?: string;
  readonly port?: number;
  /** @default 30s */
  readonly connectTimeout?: Duration;
  /** Host keys every host must match. @default ssh's own, new hosts accepted on first use */
  readonly knownHostsFile?: string;
}

function sshTarget(h: ManualHostSpec, d: SshDefaults = {}): RawSshTarget {
  return {
    kind: "ssh",
    host: h.host,
    user: h.user || d.user || undefined,
    keyFile: h.keyFile || d.keyFile || undefined,
    port: h.port || d.port || 22,
    connectTimeout: d.connectTimeout,
    knownHostsFile: h.knownHostsFile || d.knownHostsFile || undefined,
  };
}

/** Options of {@linkcode ManualPlatform}. */
export interface ManualPlatformOptions {
  readonly runner: CommandRunner;
  /** The pool slices take hosts from. */
  readonly hosts: readonly ManualHostSpec[];
  readonly ssh?: SshDefaults;
  /** Health RPC of a worker URL `http://host:workerPort` (injected; no worker import here). */
  readonly checkHealth: HealthCheck;
  /** @default 10001 */
  readonly workerPort?: number;
  readonly runtime?: IrisRuntime;
  /**
   * auth.mode token: sent to every host over the bootstrap's ssh stdin into
   * `$IRIS_HOME/worker.token` (0600) for `--worker-token-file`; never in an argv or a log.
   */
  readonly workerToken?: string;
  readonly timeouts?: {
    /** The ssh bootstrap of one host. @default 5m */
    readonly bootstrap?: Duration;
    /** Until a bootstrapped worker answers. @default 2m */
    readonly health?: Duration;
    /** The ssh teardown of one host. @default 1m */
    readonly teardown?: Duration;
  };
  readonly clock?: Clock;
}

interface ManualSlice {
  readonly sliceId: string;
  readonly scaleGroup: string;
  readonly hosts: readonly ManualHostSpec[];
  readonly createdAt: Timestamp;
  readonly labels: Readonly<Record<string, string>>;
  readonly attributes: Readonly<Record<string, string>>;
  /** What each host offers (the group's vm_resources); empty fields are detected on the host. */
  readonly resources: { readonly cpuMillicores?: number; readonly memoryBytes?: number };
  /** The group's accelerator, declared by each host's worker. */
  readonly accelerator?: AcceleratorSpec;
  state: CloudSliceState;
  /** Set while createSlice runs; terminate aborts it and waits. */
  creating?: { abort: AbortController; done: Promise<unknown> };
}

/** The worker token as a secret file for sshScript, when auth is on. */
function tokenFile(token: string | undefined, runtime?: IrisRuntime): RemoteSecretFile | undefined {
  return token === undefined ? undefined : { path: workerTokenPath(runtime), content: token };
}

function failures<T>(outcomes: TaskOutcome<T>[], hosts: readonly ManualHostSpec[]): string[] {
  return outcomes.flatMap((o, i) => {
    if (o.status === "fulfilled") return [];
    const why = o.status === "timedOut"
      ? "timed out"
      : o.reason instanceof Error
      ? o.reason.message
      : String(o.reason);
    return [`${hosts[i]?.host}: ${why}`];
  });
}

/**
 * Slices over a fixed host list. Differs from gcp/local: capacity is the pool (exhaustion is a
 * QuotaExhaustedError), createSlice bootstraps every host over ssh and waits for its worker to
 * answer before resolving, slices live only in this process's memory, and shutdown() leaves
 * running workers alone (like GCP slices).
 */
export class ManualPlatform implements Platform {
  readonly kind = "manual" as const;
  readonly #o: ManualPlatformOptions;
  readonly #slices = new Map<string, ManualSlice>();
  readonly #inUse = new Set<string>();
  readonly #port: number;
  readonly #clock: Clock;

  constructor(options: ManualPlatformOptions) {
    this.#o = options;
    this.#port = options.workerPort || 10001;
    this.#clock = options.clock ?? systemClock;
  }

  /** Hosts currently held by slices. */
  hostsInUse(): string[] {
    return [...this.#inUse].sort();
  }

  async createSlice(
    request: CreateSliceRequest,
    options?: PlatformCallOptions,
  ): Promise<SliceInfo> {
    const { sliceId, scaleGroup, config } = request;
    if (this.#slices.has(sliceId)) {
      throw new PlatformError(`Cannot create slice '${sliceId}' as it already exists`);
    }
    const listed = config.provider?.kind.case === "manual"
      ? config.provider.kind.value.hosts.map((h) => h.host)
      : [];
    const eligible = this.#o.hosts.filter((h) => listed.length === 0 || listed.includes(h.host));
    const free = eligible.filter((h) => !this.#inUse.has(h.host));
    const wanted = Math.max(1, request.vmCount);
    if (free.length < wanted) {
      const used = eligible.length - free.length;
      throw new QuotaExhaustedError(
        `Cannot create slice '${sliceId}' needing ${wanted} host(s) as there are no free hosts (${used} of ${eligible.length} in use)`,
      );
    }
    // Taken synchronously, before any await, so concurrent creates never share a host.
    const hosts = free.slice(0, wanted);
    for (const h of hosts) this.#inUse.add(h.host);
    const abort = new AbortController();
    const slice: ManualSlice = {
      sliceId,
      scaleGroup,
      hosts,
      createdAt: this.#clock.now(),
      labels: request.labels,
      // region and zone as configured, for constraints (like gcp's); the group's own
      // attributes may override region.
      attributes: {
        ...(config.region ? { region: config.region } : {}),
        ...config.attributes,
        zone: config.zone || "manual",
      },
      resources: {
        cpuMillicores: config.vmResources?.cpuMillicores || undefined,
        memoryBytes: config.vmResources?.memoryBytes || undefined,
      },
      accelerator: groupAccelerator(config),
      state: "bootstrapping",
    };
    this.#slices.set(sliceId, slice);
    const done = this.#bootstrap(slice, request.controllerUrl, abort.signal, options);
    slice.creating = { abort, done: done.catch(() => {}) };
    try {
      await done;
    } finally {
      slice.creating = undefined;
    }
    slice.state = "ready";
    return this.#info(slice);
  }

  /** Bootstraps every host in parallel; on any failure tears all of them down and releases them. */
  async #bootstrap(
    slice: ManualSlice,
    controllerUrl: string,
    signal: AbortSignal,
    options?: PlatformCallOptions,
  ) {
    const t = this.#o.timeouts ?? {};
    const bootstrapTimeout = t.bootstrap ?? minutes(5);
    const healthTimeout = t.health ?? minutes(2);
    const outer = AbortSignal.any([signal, ...(options?.signal ? [options.signal] : [])]);
    const outcomes = await runAll(
      slice.hosts.map((h, i) => async (taskSignal: AbortSignal) => {
        const target = sshTarget(h, this.#o.ssh);
        const script = workerBootstrapScript({
          controllerUrl,
          sliceId: slice.sliceId,
          scaleGroup: slice.scaleGroup,
          workerIndex: i,
          attributes: { ...slice.attributes, "manual-host": h.host },
          port: this.#port,
          advertiseAddress: h.host,
          resources: slice.resources,
          accelerator: slice.accelerator,
          runtime: hostRuntime(h, this.#o.runtime),
          workerTokenFile: this.#o.workerToken !== undefined,
        });
        const cmd = sshScript(target, script, {
          secretFile: tokenFile(this.#o.workerToken, this.#o.runtime),
        });
        const r = await this.#o.runner.run(cmd, {
          timeout: bootstrapTimeout,
          signal: taskSignal,
        });
        checkSsh(r, target, `bootstrap the worker of slice ${slice.sliceId}`);
        await waitHealthy(`http://${h.host}:${this.#port}`, this.#o.checkHealth, {
          timeout: healthTimeout,
          signal: taskSignal,
        });
      }),
      {
        timeout: options?.timeout ?? (bootstrapTimeout + healthTimeout) as Duration,
        signal: outer,
      },
    );
    const failed = failures(outcomes, slice.hosts);
    if (failed.length === 0) return;
    slice.state = "failed";
    await this.#teardown(slice).catch(() => {});
    const why = outer.aborted ? "it was cancelled (terminated or shut down)" : "bootstrap failed";
    throw new PlatformError(
      `Cannot create slice '${slice.sliceId}' as ${why}: ${failed.join("; ")}`,
    );
  }

  /** Runs the teardown script on every host, then forgets the slice and returns its hosts. */
  async #teardown(slice: ManualSlice, options?: PlatformCallOptions): Promise<void> {
    const timeout = this.#o.timeouts?.teardown ?? minutes(1);
    const outcomes = await runAll(
      slice.hosts.map((h) => async (signal: AbortSignal) => {
        const target = sshTarget(h, this.#o.ssh);
        const r = await this.#o.runner.run(
          sshScript(target, teardownScript("worker", this.#o.runtime)),
          { timeout, signal },
        );
        checkSsh(r, target, `stop the worker of slice ${slice.sliceId}`);
      }),
      { timeout: options?.timeout ?? timeout, signal: options?.signal },
    );
    for (const h of slice.hosts) this.#inUse.delete(h.host);
    this.#slices.delete(slice.sliceId);
    const failed = failures(outcomes, slice.hosts);
    if (failed.length) {
      throw new PlatformError(
        `Cannot cleanly stop slice '${slice.sliceId}' (hosts returned anyway): ${
          failed.join("; ")
        }`,
      );
    }
  }

  listSlices(options?: PlatformCallOptions & { scaleGroup?: string }): Promise<SliceInfo[]> {
    const slices = [...this.#slices.values()].filter((s) =>
      !options?.scaleGroup || s.scaleGroup === options.scaleGroup
    );
    return Promise.resolve(
      slices.map((s) => this.#info(s)).sort((a, b) => a.sliceId.localeCompare(b.sliceId)),
    );
  }

  describeSlice(sliceId: string): Promise<SliceInfo> {
    const slice = this.#slices.get(sliceId);
    if (!slice) {
      return Promise.reject(
        new ResourceNotFoundError(`Cannot describe slice '${sliceId}' as it does not exist`),
      );
    }
    return Promise.resolve(this.#info(slice));
  }

  async terminateSlice(sliceId: string, options?: PlatformCallOptions): Promise<void> {
    const slice = this.#slices.get(sliceId);
    if (!slice) return;
    if (slice.creating) {
      // The failing create tears the hosts down itself.
      slice.creating.abort.abort(new DOMException(`slice ${sliceId} terminated`, "AbortError"));
      await slice.creating.done;
      return;
    }
    slice.state = "deleting";
    await this.#teardown(slice, options);
  }

  async startupLogs(sliceId: string, vmId: string, options?: PlatformCallOptions): Promise<string> {
    const slice = this.#slices.get(sliceId);
    const host = slice?.hosts[Number(/-w(\d+)$/.exec(vmId)?.[1] ?? -1)];
    if (!slice || !host) {
      throw new ResourceNotFoundError(`Cannot read startup logs of '${vmId}' as it does not exist`);
    }
    const target = sshTarget(host, this.#o.ssh);
    const r = await this.#o.runner.run(sshExec(target, tailLogScript("worker", this.#o.runtime)), {
      timeout: options?.timeout ?? seconds(30),
      signal: options?.signal,
    });
    return checkSsh(r, target, "read the worker log").stdout;
  }

  /** Follow commands for every worker's log, for startLogStreaming's discovery. */
  logTargets(): Promise<LogTarget[]> {
    return Promise.resolve([...this.#slices.values()].flatMap((s) =>
      s.hosts.map((h, i) => ({
        name: `${s.sliceId}-w${i}`,
        command: sshFollow(sshTarget(h, this.#o.ssh), followLogScript("worker", this.#o.runtime)),
      }))
    ));
  }

  /** Every host of the pool (config order). */
  hosts(): readonly ManualHostSpec[] {
    return this.#o.hosts;
  }

  /**
   * Stops whatever worker `host` runs (the teardown script; idempotent), whether or not this
   * process created its slice: `iris cluster stop` runs in another process than the controller.
   */
  async stopHostWorker(host: ManualHostSpec, options?: PlatformCallOptions): Promise<void> {
    const target = sshTarget(host, this.#o.ssh);
    const r = await this.#o.runner.run(
      sshScript(target, teardownScript("worker", this.#o.runtime)),
      {
        timeout: options?.timeout ?? this.#o.timeouts?.teardown ?? minutes(1),
        signal: options?.signal,
      },
    );
    checkSsh(r, target, "stop the worker");
  }

  /** Follow commands for the worker log of every host of the pool (`worker-<host>`). */
  hostLogTargets(): LogTarget[] {
    return this.#o.hosts.map((h) => ({
      name: `worker-${h.host}`,
      command: sshFollow(sshTarget(h, this.#o.ssh), followLogScript("worker", this.#o.runtime)),
    }));
  }

  /** Aborts slices still being created (they clean up after themselves); ready workers keep running. */
  async shutdown(): Promise<void> {
    const creating = [...this.#slices.values()].flatMap((s) => (s.creating ? [s.creating] : []));
    for (const c of creating) c.abort.abort(new DOMException("platform shut down", "AbortError"));
    await Promise.all(creating.map((c) => c.done));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  #info(slice: ManualSlice): SliceInfo {
    const vmState = slice.state === "ready"
      ? "ready"
      : slice.state === "failed"
      ? "failed"
      : "booting";
    return {
      sliceId: slice.sliceId,
      scaleGroup: slice.scaleGroup,
      zone: "manual",
      state: slice.state,
      vms: slice.hosts.map((h, i) => ({
        vmId: `${slice.sliceId}-w${i}`,
        workerId: `${slice.sliceId}-w${i}`,
        address: h.host,
        state: vmState,
        attributes: { ...slice.attributes, "manual-host": h.host },
      })),
      createdAt: slice.createdAt,
      labels: slice.labels,
    };
  }
}

/** Options of {@linkcode ManualControllerLifecycle}. */
export interface ManualControllerOptions {
  readonly runner: CommandRunner;
  readonly host: ManualHostSpec;
  readonly ssh?: SshDefaults;
  /** @default 10000 */
  readonly port?: number;
  /** Cluster config YAML handed to `iris controller serve --config`. */
  readonly clusterConfig?: string;
  readonly runtime?: IrisRuntime;
  /** auth.mode token: delivered like ManualPlatformOptions.workerToken, for the controller. */
  readonly workerToken?: string;
  readonly checkHealth: HealthCheck;
  /** @default 2m */
  readonly healthTimeout?: Duration;
  /** One ssh call. @default 5m */
  readonly sshTimeout?: Duration;
}

/**
 * The controller on a fixed host, started over ssh with `iris controller serve` as a daemon.
 * start reuses a controller that already answers; stop runs the teardown script.
 */
export class ManualControllerLifecycle implements ControllerLifecycle {
  readonly #o: ManualControllerOptions;
  readonly #target: RawSshTarget;
  readonly #url: string;

  constructor(options: ManualControllerOptions) {
    this.#o = options;
    this.#target = sshTarget(options.host, options.ssh);
    this.#url = `http://${options.host.host}:${options.port || 10000}`;
  }

  async #ssh(
    script: string,
    action: string,
    signal?: AbortSignal,
    secretFile?: RemoteSecretFile,
  ): Promise<string> {
    const r = await this.#o.runner.run(sshScript(this.#target, script, { secretFile }), {
      timeout: this.#o.sshTimeout ?? minutes(5),
      signal,
    });
    return checkSsh(r, this.#target, action).stdout;
  }

  #answers(): Promise<boolean> {
    return checkOnce(this.#url, this.#o.checkHealth);
  }

  async start(): Promise<string> {
    if (await this.#answers()) return this.#url;
    return await this.reload();
  }

  async stop(options?: { readonly signal?: AbortSignal }): Promise<void> {
    await this.#ssh(
      teardownScript("controller", this.#o.runtime),
      "stop the controller",
      options?.signal,
    );
  }

  async restart(): Promise<string> {
    await this.stop();
    return await this.start();
  }

  /** Runs the bootstrap script again: it stops the running controller and starts a fresh one. */
  async reload(): Promise<string> {
    const script = controllerBootstrapScript({
      port: this.#o.port || 10000,
      advertiseAddress: this.#o.host.host,
      config: this.#o.clusterConfig,
      runtime: hostRuntime(this.#o.host, this.#o.runtime),
      workerTokenFile: this.#o.workerToken !== undefined,
    });
    await this.#ssh(
      script,
      "start the controller",
      undefined,
      tokenFile(this.#o.workerToken, this.#o.runtime),
    );
    await waitHealthy(this.#url, this.#o.checkHealth, {
      timeout: this.#o.healthTimeout ?? minutes(2),
    });
    return this.#url;
  }

  async discover(): Promise<string | undefined> {
    return (await this.#answers()) ? this.#url : undefined;
  }

  async fetchStartupLogs(): Promise<string> {
    return await this.#ssh(
      tailLogScript("controller", this.#o.runtime, 500),
      "read the controller log",
    );
  }

  async status(): Promise<ControllerStatus> {
    const healthy = await this.#answers();
    return {
      running: healthy,
      url: this.#url,
      healthy,
      message: healthy ? undefined : "controller does not answer",
    };
  }

  /** `ssh -L local:localhost:port -N` to the controller host, for networks that block the port. */
  async tunnel(localPort: number): Promise<Tunnel> {
    return await openTunnel({
      runner: this.#o.runner,
      command: sshTunnel(this.#target, localPort, this.#o.port || 10000),
      localPort,
      isReady: this.#o.checkHealth,
    });
  }

  /** The follow command of the controller's log, for startLogStreaming. */
  logTarget(): LogTarget {
    return {
      name: "controller",
      command: sshFollow(this.#target, followLogScript("controller", this.#o.runtime)),
    };
  }

  /** The controller outlives this object: disposing releases nothing. */
  [Symbol.asyncDispose](): Promise<void> {
    return Promise.resolve();
  }
}
