/**
 * The worker's link to the controller: registers (with backoff), then heartbeats. Anything queued
 * is sent at once; what queues during an RPC goes in the next one; idle workers still heartbeat
 * every interval. Builds no messages itself.
 *
 * Delivery is exactly once: an update is marked delivered only when the controller answered the
 * heartbeat that carried it, which it does only after the update was applied and committed to its
 * state. A heartbeat answered with "register again" (the controller restarted, or forgot this
 * worker), or with "updates deferred" (the controller cannot write its state), applied nothing:
 * its updates stay queued and go again (after the registration); a failed heartbeat is retried
 * likewise. Resending is harmless: the controller ignores the end of
 * an attempt it already recorded.
 * @module
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type {
  AttemptRef,
  HeartbeatRequest,
  RegisterWorkerRequest,
  RegisterWorkerResponse,
} from "../rpc/gen/iris/v1/controller_pb.ts";
import type { ControllerClient } from "../rpc/mod.ts";
import { describeError } from "../errors.ts";
import { Backoff, type Duration, ms, seconds } from "../time.ts";

/** A heartbeat to send, and what to do once the controller accepted it. */
export interface CollectedHeartbeat {
  readonly request: HeartbeatRequest;
  /** Marks the updates in `request` as delivered (call only once the controller applied them). */
  readonly commit: () => void;
  /** True when updates were left out (size caps): send again right away. */
  readonly more: boolean;
}

/** Options for {@linkcode Reporter}. */
export interface ReporterOptions {
  readonly client: ControllerClient;
  /** For log lines only. */
  readonly controllerUrl: string;
  /** Longest time between heartbeats; the controller's registration answer may change it. */
  readonly interval: Duration;
  /**
   * Longest wait between reconnect attempts (before ±20 % jitter); the controller's registration
   * answer may change it. @default 5s
   */
  readonly reconnectMax?: Duration;
  readonly registerRequest: () => RegisterWorkerRequest;
  readonly collect: () => CollectedHeartbeat;
  readonly onRegistered: (response: RegisterWorkerResponse) => void;
  /** The controller wants these attempts dead. */
  readonly onKill: (refs: readonly AttemptRef[]) => void;
  readonly log: (line: string) => void;
  /** Time limit of one RPC. @default 10s */
  readonly rpcTimeout?: Duration;
  /** A number in [0, 1), for the phase spread of heartbeats. @default Math.random */
  readonly random?: () => number;
}

const FAILURE_LOG_EVERY = seconds(30);

/** The default longest wait between reconnect attempts (the controller may set another). */
export const DEFAULT_RECONNECT_MAX = seconds(5);

/** Registers and heartbeats until stopped. Starts on construction. */
export class Reporter {
  /** Resolves on the first successful registration; rejects when stopped before it. */
  readonly registered: Promise<void>;
  readonly #opts: ReporterOptions;
  readonly #abort = new AbortController();
  readonly #loop: Promise<void>;
  #interval: Duration;
  /**
   * The next wait is a random part of the interval: set by a registration and by a new interval.
   * Workers that registered together, or heard a longer interval at about the same time (a
   * growing fleet), would otherwise heartbeat in step, in bursts the controller has to queue;
   * this spreads their phases over the interval once, never waiting longer than told.
   */
  #spread = false;
  #isRegistered = false;
  #poked = false;
  #stopping = false;
  #wake?: { resolve: () => void; onPoke: boolean };
  #lastSend = -Infinity;
  #failures = 0;
  #deferredLogged = false;
  #lastFailureLog = -Infinity;
  #resolveRegistered!: () => void;
  #rejectRegistered!: (err: Error) => void;

  /** Starts registering with the controller in the background. */
  constructor(options: ReporterOptions) {
    this.#opts = options;
    this.#interval = options.interval;
    this.registered = new Promise<void>((resolve, reject) => {
      this.#resolveRegistered = resolve;
      this.#rejectRegistered = reject;
    });
    this.registered.catch(() => {});
    this.#loop = this.#run();
  }

  /** The heartbeat interval in force (the controller's registration answer may change it). */
  get interval(): Duration {
    return this.#interval;
  }

  /** True while the controller knows this worker. */
  get isRegistered(): boolean {
    return this.#isRegistered;
  }

  /**
   * Registers again with the next send (e.g. the worker's capacity changed): the registration
   * carries the current resources and attempts.
   */
  reregister(): void {
    this.#isRegistered = false;
    this.poke();
  }

  /** Something new is queued: send it now (or right after the RPC in flight). */
  poke(): void {
    this.#poked = true;
    if (this.#wake?.onPoke) this.#wake.resolve();
  }

  /** Stops the loop after one last attempt (bounded by `flushTimeout`) to deliver what is queued. */
  async stop(flushTimeout: Duration = seconds(2)): Promise<void> {
    if (this.#stopping) return this.#loop;
    this.#stopping = true;
    this.#abort.abort();
    this.#wake?.resolve();
    await this.#loop;
    this.#rejectRegistered(new Error("Worker stopped before it registered with the controller"));
    if (!this.#isRegistered) return;
    const { request, commit } = this.#opts.collect();
    if (request.updates.length === 0) return;
    try {
      const response = await this.#opts.client.heartbeat(request, { timeoutMs: flushTimeout });
      if (!response.reregister && !response.updatesDeferred) commit();
    } catch (err) {
      this.#opts.log(
        `final heartbeat to ${this.#opts.controllerUrl} failed: ${describeError(err)}`,
      );
    }
  }

  async #run(): Promise<void> {
    let backoff = new Backoff({
      initial: ms(100),
      max: this.#opts.reconnectMax ?? DEFAULT_RECONNECT_MAX,
    });
    const callOptions = {
      signal: this.#abort.signal,
      timeoutMs: this.#opts.rpcTimeout ?? seconds(10),
    };
    while (!this.#stopping) {
      if (!this.#isRegistered) {
        try {
          const response = await this.#opts.client.registerWorker(
            this.#opts.registerRequest(),
            callOptions,
          );
          this.#isRegistered = true;
          this.#spread = true;
          if (response.heartbeatIntervalMs > 0) this.#interval = ms(response.heartbeatIntervalMs);
          if (response.reconnectMaxBackoffMs > 0) {
            backoff = new Backoff({ initial: ms(100), max: ms(response.reconnectMaxBackoffMs) });
          }
          this.#succeeded("register with");
          backoff.reset();
          this.#opts.onRegistered(response);
          this.#resolveRegistered();
          if (response.kill.length) this.#opts.onKill(response.kill);
        } catch (err) {
          if (this.#stopping) break;
          this.#failed("register with", err);
          await this.#sleep(backoff.next(), false);
          continue;
        }
      }
      const { request, commit, more } = this.#opts.collect();
      this.#poked = more;
      try {
        const response = await this.#opts.client.heartbeat(request, callOptions);
        this.#lastSend = performance.now();
        this.#succeeded("heartbeat to");
        backoff.reset();
        // The controller stretches the interval as the fleet grows (liveness.ts).
        if (response.heartbeatIntervalMs > 0 && response.heartbeatIntervalMs !== this.#interval) {
          this.#interval = ms(response.heartbeatIntervalMs);
          this.#spread = true;
        }
        if (response.kill.length) this.#opts.onKill(response.kill);
        if (response.reregister) {
          // Nothing in this heartbeat was applied: its updates stay queued for the next one.
          this.#opts.log(
            `controller at ${this.#opts.controllerUrl} asked this worker to register again`,
          );
          this.#isRegistered = false;
          this.#poked = true;
          continue;
        }
        if (response.updatesDeferred) {
          // The controller cannot write its state: nothing was applied. Keep the updates and
          // the usual cadence (heartbeats are still liveness).
          if (!this.#deferredLogged) {
            this.#opts.log(
              `controller at ${this.#opts.controllerUrl} cannot write its state; keeping updates`,
            );
          }
          this.#deferredLogged = true;
          this.#poked = false;
        } else {
          this.#deferredLogged = false;
          commit();
        }
      } catch (err) {
        if (this.#stopping) break;
        if (err instanceof ConnectError && err.code === Code.NotFound) this.#isRegistered = false;
        this.#failed("heartbeat to", err);
        this.#poked = true;
        await this.#sleep(backoff.next(), false);
        continue;
      }
      const wait = this.#spread
        ? this.#interval * (this.#opts.random ?? Math.random)()
        : this.#interval;
      this.#spread = false;
      const idle = wait - (performance.now() - this.#lastSend);
      if (!this.#poked && idle > 0) await this.#sleep(ms(idle), true);
    }
  }

  /** Sleeps for `d`; wakes early on stop, and on poke when `onPoke`. */
  #sleep(d: Duration, onPoke: boolean): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, d);
      this.#wake = { resolve: done, onPoke };
    });
  }

  #failed(what: string, err: unknown): void {
    this.#failures++;
    const now = performance.now();
    if (this.#failures === 1 || now - this.#lastFailureLog >= FAILURE_LOG_EVERY) {
      this.#lastFailureLog = now;
      this.#opts.log(
        `${what} controller at ${this.#opts.controllerUrl} failed (attempt ${this.#failures}): ${
          describeError(err)
        }; retrying`,
      );
    }
  }

  #succeeded(what: string): void {
    if (this.#failures > 0) {
      this.#opts.log(
        `${what} controller at ${this.#opts.controllerUrl} succeeded after ${this.#failures} failed attempts`,
      );
    }
    this.#failures = 0;
  }
}
