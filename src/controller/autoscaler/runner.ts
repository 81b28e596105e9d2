/**
 * Runs the autoscaler: each evaluation turns the scheduler's unplaceable demand into a pure
 * ScalingPlan (autoscaler.ts) and carries it out through the Platform interface, with a hard
 * timeout per call. Outcomes (created, failed, terminated) feed the next decision.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type AutoscalerAction,
  AutoscalerActionSchema,
  type GetAutoscalerStatusResponse,
  GetAutoscalerStatusResponseSchema,
} from "../../rpc/gen/iris/v1/controller_pb.ts";
import type { ScaleGroupConfig } from "../../rpc/gen/iris/v1/config_pb.ts";
import type { Platform, SliceInfo } from "../../platform/mod.ts";
import type {
  ClusterSnapshot,
  DemandEntry,
  GroupState,
  ScaleGroupSpec,
  ScalingPlan,
  SchedulePlan,
  SliceState,
} from "../../types.ts";
import {
  type Clock,
  type Duration,
  minutes,
  seconds,
  systemClock,
  type Timestamp,
} from "../../time.ts";
import { describeError, QuotaExhaustedError } from "../../errors.ts";
import {
  planScaling,
  recordQuotaExceeded,
  recordSliceCreated,
  recordSliceFailed,
  type ScaleBackoff,
  takeTokens,
} from "./autoscaler.ts";
import type { WorkerRecord } from "../workers.ts";
import { acceleratorType } from "../convert.ts";
import type { StateStore } from "../store.ts";
import type { TransactionLog } from "../transactions.ts";
import { restoreAutoscaler } from "./restore.ts";

/**
 * Demand of reservation entries still unclaimed after a pass: one entry per distinct shape of a
 * job's entries, named "<job> (reservation)".
 */
export function reservationDemand(plan: SchedulePlan, snapshot: ClusterSnapshot): DemandEntry[] {
  if (!snapshot.reservations?.length) return [];
  const claimed = new Set((plan.claims ?? []).map((c) => `${c.jobId}\u0000${c.entryIndex}`));
  const out: DemandEntry[] = [];
  for (const req of snapshot.reservations) {
    const byShape = new Map<string, { entry: DemandEntry; count: number }>();
    for (const e of req.entries) {
      if (claimed.has(`${req.jobId}\u0000${e.index}`)) continue;
      const key = JSON.stringify([e.resources, e.accelerator, e.constraints]);
      const hit = byShape.get(key);
      if (hit) hit.count++;
      else {
        byShape.set(key, {
          count: 1,
          entry: {
            jobId: `${req.jobId} (reservation)`,
            taskCount: 1,
            resources: e.resources,
            accelerator: e.accelerator,
            constraints: e.constraints,
            gang: false,
            wholeVm: true,
          },
        });
      }
    }
    for (const { entry, count } of byShape.values()) out.push({ ...entry, taskCount: count });
  }
  return out;
}

/** A scale group: its pure spec and its config (the platform needs the latter). */
export interface ScaleGroup {
  readonly spec: ScaleGroupSpec;
  readonly config: ScaleGroupConfig;
}

/** What the autoscaler runner needs from the controller (controller.ts implements it). */
export interface AutoscalerHost {
  /** The URL workers reach the controller at (passed to new slices). */
  readonly url: string;
  /** Where the autoscaler's slices and group states are saved, when the controller has a store. */
  readonly store?: Pick<StateStore, "loadAutoscaler" | "saveAutoscaler">;
  readonly transactions: Pick<TransactionLog, "record">;
  log(line: string): void;
  /** A registered worker (reconnecting ones included). */
  worker(workerId: string): Pick<WorkerRecord, "reconnecting" | "active"> | undefined;
  /** Workers held for a reservation (busy for scale-down). */
  reservedWorkers(): ReadonlyMap<string, string>;
  /** Declares a worker gone (its slice was terminated). */
  workerDead(workerId: string, reason: string, options?: { scaleDown?: boolean }): void;
}

/** Options for {@linkcode AutoscalerRunner}. */
export interface AutoscalerRunnerOptions {
  readonly host: AutoscalerHost;
  readonly platform: Platform;
  readonly groups: readonly ScaleGroup[];
  /** Computed once: prefix of slice ids and labels. */
  readonly labelPrefix: string;
  /** @default 1s */
  readonly evaluationInterval?: Duration;
  /** Hard limit on one createSlice/terminateSlice call. @default 5m */
  readonly platformTimeout?: Duration;
  readonly backoff?: ScaleBackoff;
  /** Backoff after a quota error (QuotaExhaustedError). @default DEFAULT_QUOTA_BACKOFF */
  readonly quotaBackoff?: ScaleBackoff;
  readonly clock?: Clock;
  /** Issues the one-time enrolment token of a new slice (auth on gcp), or undefined. */
  readonly enrolmentToken?: (sliceId: string, vmCount: number) => string | undefined;
}

interface TrackedSlice {
  state: SliceState;
  readonly workerIds: string[];
  error?: string;
  /** Cancels the slice's createSlice call (boot timeout). */
  abort?: AbortController;
}

/** Carries out scaling decisions and reports the autoscaler's state. */
export class AutoscalerRunner {
  readonly #o: AutoscalerRunnerOptions;
  readonly #clock: Clock;
  readonly #slices = new Map<string, TrackedSlice>();
  readonly #groupStates = new Map<string, GroupState>();
  readonly #actions: AutoscalerAction[] = [];
  readonly #inflight = new Set<Promise<void>>();
  readonly #abort = new AbortController();
  #demand: DemandEntry[] = [];
  #lastPlan?: ScalingPlan;
  #lastEvaluationMs = 0;
  #sliceCounter = 0;
  #loop?: Promise<void>;

  constructor(options: AutoscalerRunnerOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    for (const g of options.groups) {
      this.#groupStates.set(g.spec.name, { name: g.spec.name, consecutiveFailures: 0 });
    }
  }

  /**
   * Adopts slices the platform already has (merged with the state saved before a controller
   * restart, see restore.ts), then evaluates every interval until stopped.
   */
  async start(): Promise<void> {
    let listed: SliceInfo[] | undefined;
    try {
      listed = await this.#o.platform.listSlices({ timeout: seconds(60) });
    } catch (err) {
      this.#o.host.log(`autoscaler: could not list existing slices: ${describeError(err)}`);
    }
    const restored = restoreAutoscaler(
      this.#o.host.store?.loadAutoscaler(),
      listed,
      new Set(this.#groupStates.keys()),
    );
    for (const g of restored.groups) this.#groupStates.set(g.name, g);
    for (const s of restored.slices) {
      this.#slices.set(s.state.sliceId, { ...s, workerIds: [...s.workerIds] });
    }
    for (const n of restored.notes) this.#action(n.action, n.group, n.sliceId, n.reason);
    this.#persist();
    this.#loop = this.#run(this.#abort.signal);
  }

  /** Saves slices and group states to the controller's store (when it has one and they changed). */
  #persist(): void {
    try {
      this.#o.host.store?.saveAutoscaler({
        slices: [...this.#slices.values()],
        groups: [...this.#groupStates.values()],
      });
    } catch (err) {
      this.#o.host.log(`autoscaler: saving state failed: ${describeError(err)}`);
    }
  }

  /** Stops evaluating and waits for in-flight platform calls (they have hard timeouts). */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
    await Promise.allSettled([...this.#inflight]);
  }

  /**
   * Feeds the scheduler's latest pass: jobs it could not place become demand, and so does every
   * reservation entry no idle worker could be claimed for (reservationDemand).
   */
  observe(plan: SchedulePlan, snapshot: ClusterSnapshot): void {
    const unplaced = new Map(plan.unplaced.map((u) => [u.jobId, u.taskCount]));
    this.#demand = snapshot.jobs.filter((j) => unplaced.has(j.jobId)).map((j): DemandEntry => ({
      jobId: j.jobId,
      taskCount: unplaced.get(j.jobId)!,
      resources: j.resources,
      accelerator: j.accelerator,
      constraints: j.constraints,
      gang: j.groupBy !== undefined,
      ...(j.groupBy !== undefined ? { groupBy: j.groupBy } : {}),
    })).concat(reservationDemand(plan, snapshot));
  }

  /** A worker died: its slice is failed (slices are atomic) and will be replaced if needed. */
  workerDead(sliceId: string): void {
    const s = this.#slices.get(sliceId);
    if (s && s.state.state !== "terminating") {
      s.state = { ...s.state, state: "failed" };
      this.#action("worker_failed", s.state.group, sliceId, "a worker of the slice died");
    }
  }

  async #run(signal: AbortSignal): Promise<void> {
    const interval = this.#o.evaluationInterval ?? seconds(1);
    while (!signal.aborted) {
      try {
        this.evaluate();
      } catch (err) {
        this.#o.host.log(`autoscaler: evaluation failed: ${describeError(err)}`);
      }
      try {
        await this.#clock.sleep(interval, signal);
      } catch {
        return;
      }
    }
  }

  /** One decision: refresh slice states, plan, and start the platform calls it asks for. */
  evaluate(): ScalingPlan {
    const now = this.#clock.now();
    this.#lastEvaluationMs = now;
    this.#refreshSlices(now);
    const plan = planScaling({
      groups: this.#o.groups.map((g) => g.spec),
      groupStates: this.#groupStates,
      slices: [...this.#slices.values()].map((s) => s.state),
      demand: this.#demand,
      now,
    });
    this.#lastPlan = plan;
    const specs = new Map(this.#o.groups.map((g) => [g.spec.name, g.spec]));
    for (const c of plan.create) {
      const st = this.#groupStates.get(c.group)!;
      const upTokens = takeTokens(st.upTokens, specs.get(c.group)?.scaleUpRate, now, c.count);
      if (upTokens) this.#groupStates.set(c.group, { ...st, upTokens });
      for (let i = 0; i < c.count; i++) this.#create(c.group, c.reason, now);
    }
    for (const t of plan.terminate) {
      const before = this.#slices.get(t.sliceId)?.state.state;
      if (t.timedOut) {
        this.#groupStates.set(
          t.group,
          recordSliceFailed(this.#groupStates.get(t.group)!, now, this.#o.backoff, t.reason),
        );
        this.#action(t.reason.split(":")[0]!, t.group, t.sliceId, t.reason);
        this.#o.host.log(`autoscaler: slice ${t.sliceId} failed: ${t.reason}`);
      } else if (before === "ready") {
        const st = this.#groupStates.get(t.group)!;
        const downTokens = takeTokens(st.downTokens, specs.get(t.group)?.scaleDownRate, now, 1);
        if (downTokens) this.#groupStates.set(t.group, { ...st, downTokens });
      }
      this.#terminate(t.sliceId, t.group, t.reason);
    }
    this.#persist();
    return plan;
  }

  #refreshSlices(now: Timestamp): void {
    const host = this.#o.host;
    for (const s of this.#slices.values()) {
      const st = s.state;
      if (
        st.state === "booting" && s.workerIds.length > 0 &&
        s.workerIds.every((id) => host.worker(id)?.reconnecting === false)
      ) {
        s.state = { ...st, state: "ready" };
        this.#action("ready", st.group, st.sliceId, `${s.workerIds.length} worker(s) registered`);
      }
      if (s.state.state !== "ready") continue;
      // A worker held for a reservation is in use even while nothing runs on it yet.
      const reserved = this.#o.host.reservedWorkers();
      const busy = s.workerIds.some((id) =>
        (host.worker(id)?.active.size ?? 0) > 0 || reserved.has(id)
      );
      if (busy && s.state.idleSince !== undefined) s.state = { ...s.state, idleSince: undefined };
      if (!busy && s.state.idleSince === undefined) s.state = { ...s.state, idleSince: now };
    }
  }

  #create(groupName: string, reason: string, now: Timestamp): void {
    const group = this.#o.groups.find((g) => g.spec.name === groupName)!;
    const sliceId = `${this.#o.labelPrefix}-${groupName.replace(/_/g, "-")}-${now.toString(36)}${
      (++this.#sliceCounter).toString(36)
    }`;
    const abort = new AbortController();
    const tracked: TrackedSlice = {
      state: { sliceId, group: groupName, state: "requesting", createdAt: now, workerIds: [] },
      workerIds: [],
      abort,
    };
    this.#slices.set(sliceId, tracked);
    this.#groupStates.set(groupName, { ...this.#groupStates.get(groupName)!, lastScaleUp: now });
    this.#action("scale_up", groupName, sliceId, reason);
    this.#track((async () => {
      try {
        const info = await this.#o.platform.createSlice({
          sliceId,
          scaleGroup: groupName,
          config: group.config,
          vmCount: group.spec.vmsPerSlice,
          controllerUrl: this.#o.host.url,
          enrolmentToken: this.#o.enrolmentToken?.(sliceId, group.spec.vmsPerSlice),
          labels: {
            [`${this.#o.labelPrefix}-managed`]: "true",
            [`${this.#o.labelPrefix}-scale-group`]: groupName,
            [`${this.#o.labelPrefix}-slice-id`]: sliceId,
          },
        }, {
          timeout: this.#o.platformTimeout ?? minutes(5),
          signal: AbortSignal.any([this.#abort.signal, abort.signal]),
        });
        tracked.workerIds.push(...info.vms.map((v) => v.workerId));
        if (tracked.state.state === "terminating") {
          // Timed out (or stopped) while the call was running: the terminate path owns it,
          // but the platform may have finished creating it after that path's terminateSlice.
          await this.#o.platform.terminateSlice(sliceId, { timeout: seconds(60) }).catch(() => {});
          return;
        }
        tracked.state = {
          ...tracked.state,
          state: "booting",
          bootedAt: this.#clock.now(),
          workerIds: [...tracked.workerIds],
        };
        this.#groupStates.set(
          groupName,
          recordSliceCreated(this.#groupStates.get(groupName)!, this.#clock.now()),
        );
        this.#persist();
      } catch (err) {
        // A boot timeout already failed the slice and backed the group off.
        if (tracked.state.state === "terminating") return;
        tracked.state = { ...tracked.state, state: "failed" };
        tracked.error = describeError(err);
        const st = this.#groupStates.get(groupName)!;
        if (err instanceof QuotaExhaustedError) {
          this.#groupStates.set(
            groupName,
            recordQuotaExceeded(st, this.#clock.now(), tracked.error, this.#o.quotaBackoff),
          );
          this.#action("quota_exceeded", groupName, sliceId, tracked.error);
        } else {
          this.#groupStates.set(
            groupName,
            recordSliceFailed(st, this.#clock.now(), this.#o.backoff, tracked.error),
          );
          this.#action("create_failed", groupName, sliceId, tracked.error);
        }
        this.#o.host.log(`autoscaler: creating ${sliceId} failed: ${tracked.error}`);
        // Nothing half-created stays behind.
        await this.#o.platform.terminateSlice(sliceId, { timeout: seconds(60) }).catch(() => {});
        this.#slices.delete(sliceId);
        this.#persist();
      }
    })());
  }

  #terminate(sliceId: string, group: string, reason: string): void {
    const s = this.#slices.get(sliceId);
    if (!s || s.state.state === "terminating") return;
    s.state = { ...s.state, state: "terminating" };
    s.abort?.abort(new Error(reason));
    this.#groupStates.set(group, {
      ...this.#groupStates.get(group)!,
      lastScaleDown: this.#clock.now(),
    });
    this.#action("scale_down", group, sliceId, reason);
    this.#track((async () => {
      try {
        await this.#o.platform.terminateSlice(sliceId, {
          timeout: this.#o.platformTimeout ?? minutes(5),
        });
      } catch (err) {
        this.#o.host.log(`autoscaler: terminating ${sliceId} failed: ${describeError(err)}`);
      } finally {
        this.#slices.delete(sliceId);
        this.#persist();
        for (const id of s.workerIds) {
          if (this.#o.host.worker(id)) {
            if (reason === "failed") {
              this.#o.host.workerDead(id, "its slice failed and was terminated");
            } else {
              this.#o.host.workerDead(id, `scale-down of group ${group} (${reason})`, {
                scaleDown: true,
              });
            }
          }
        }
      }
    })());
  }

  #action(action: string, group: string, sliceId: string, reason: string): void {
    this.#actions.push(
      create(AutoscalerActionSchema, {
        timestampMs: this.#clock.now(),
        action,
        scaleGroup: group,
        sliceId,
        reason,
      }),
    );
    if (this.#actions.length > 100) this.#actions.shift();
    this.#o.host.transactions.record({
      action,
      entity: sliceId,
      user: "autoscaler",
      details: `${group}: ${reason}`,
    });
  }

  #track(p: Promise<void>): void {
    this.#inflight.add(p);
    p.finally(() => this.#inflight.delete(p));
  }

  /** The state for GetAutoscalerStatus and `iris cluster status`. */
  status(): GetAutoscalerStatusResponse {
    const now = this.#clock.now();
    return create(GetAutoscalerStatusResponseSchema, {
      enabled: true,
      lastEvaluationMs: this.#lastEvaluationMs,
      recentActions: [...this.#actions],
      unmetDemand: [...(this.#lastPlan?.unmet ?? [])],
      groups: this.#o.groups.map(({ spec }) => {
        const st = this.#groupStates.get(spec.name)!;
        const slices = [...this.#slices.values()].filter((s) => s.state.group === spec.name);
        const live = slices.filter((s) =>
          s.state.state !== "failed" && s.state.state !== "terminating"
        ).length;
        const availability = st.quotaUntil && st.quotaUntil > now
          ? "quota_exceeded"
          : st.backoffUntil && st.backoffUntil > now
          ? "backoff"
          : live >= spec.maxSlices
          ? "at_max_slices"
          : st.lastScaleUp && st.lastScaleUp + spec.scaleUpCooldown > now
          ? "cooldown"
          : "available";
        return {
          name: spec.name,
          minSlices: spec.minSlices,
          maxSlices: spec.maxSlices,
          acceleratorVariant: spec.accelerator.variant,
          acceleratorType: acceleratorType(spec.accelerator.kind),
          demandSlices: this.#lastPlan?.demandSlices[spec.name] ?? 0,
          slices: slices.map((s) => ({
            sliceId: s.state.sliceId,
            scaleGroup: spec.name,
            state: s.state.state,
            workerIds: s.workerIds,
            createdAtMs: s.state.createdAt,
            idleSinceMs: s.state.idleSince ?? 0,
            error: s.error ?? "",
          })),
          backoffUntilMs: st.backoffUntil ?? 0,
          consecutiveFailures: st.consecutiveFailures,
          lastScaleUpMs: st.lastScaleUp ?? 0,
          lastScaleDownMs: st.lastScaleDown ?? 0,
          availability,
          backoffReason: st.backoffReason ?? "",
          quotaUntilMs: st.quotaUntil ?? 0,
          quotaReason: st.quotaReason ?? "",
          bufferSlices: spec.bufferSlices ?? 0,
        };
      }),
    });
  }
}
