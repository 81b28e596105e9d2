/**
 * Plain domain data shared by the scheduler, autoscaler, controller and platforms.
 * No I/O, no classes: snapshots in, plans out.
 * @module
 */
import type { Duration, Timestamp } from "./time.ts";

/** A typed worker attribute value. */
export type AttributeScalar = string | number | boolean;
/** Worker attributes: `tpu-name`, `tpu-worker-id`, `region`, `taint:<x>`, … */
export type Attributes = Readonly<Record<string, AttributeScalar>>;

/** Accelerator family. "cpu" means no accelerator. */
export type AcceleratorKind = "cpu" | "gpu" | "tpu";

/** An accelerator demand or offer. An empty variant matches any variant of the kind. */
export interface AcceleratorSpec {
  readonly kind: AcceleratorKind;
  readonly variant: string;
  /** Chips or devices (per task, or per VM when offered). */
  readonly count: number;
}

/** Scalar resources. */
export interface ResourceVec {
  readonly cpuMillicores: number;
  readonly memoryBytes: number;
  /** Accelerator chips/devices. */
  readonly accelerators: number;
}

/** Constraint operators. */
export type ConstraintOp = "eq" | "ne" | "exists" | "not_exists" | "gt" | "ge" | "lt" | "le" | "in";

/** One attribute constraint; constraints of a job combine with AND. */
export interface ConstraintSpec {
  readonly key: string;
  readonly op: ConstraintOp;
  readonly value?: AttributeScalar;
  /** Only for "in". */
  readonly values?: readonly AttributeScalar[];
  /** Ranking only (PREFERRED) instead of a hard filter (REQUIRED). */
  readonly preferred?: boolean;
}

/** Priority bands, lower number = more important. */
export type Band = 1 | 2 | 3;
export const BAND_PRODUCTION: Band = 1;
export const BAND_INTERACTIVE: Band = 2;
export const BAND_BATCH: Band = 3;

/**
 * `n` (a PriorityBand number from the API or the store) as a band; undefined for none (0) or an
 * unknown number.
 */
export function bandOrUndefined(n: number): Band | undefined {
  return Number.isInteger(n) && n >= BAND_PRODUCTION && n <= BAND_BATCH ? n as Band : undefined;
}

/** A worker as the scheduler sees it. */
export interface SchedulerWorker {
  readonly id: string;
  readonly sliceId: string;
  readonly scaleGroup: string;
  readonly accelerator: AcceleratorSpec;
  readonly total: ResourceVec;
  /** total minus resources committed to active attempts. */
  readonly free: ResourceVec;
  readonly attributes: Attributes;
  readonly healthy: boolean;
  /** Attempts in ASSIGNED/BUILDING on this worker (back-pressure). */
  readonly buildingCount: number;
  /**
   * Resources still committed to attempts that were told to stop (preempted or killed) and free
   * once the worker confirms; the preemption pass counts them as coming free.
   */
  readonly releasing?: ResourceVec;
  /** Held for this job's reservation: only that job's tasks may be placed here. */
  readonly reservedFor?: string;
}

/** An active attempt of a preemptible band (INTERACTIVE or BATCH) as the preemption pass sees it. */
export interface RunningTask {
  readonly jobId: string;
  readonly taskIndex: number;
  readonly workerId: string;
  readonly band: Band;
  /** Resources the attempt holds on its worker. */
  readonly resources: ResourceVec;
  /** Coscheduled: preempting one task preempts every running task of the job. */
  readonly gang: boolean;
  /** When the attempt was assigned; the newest are preempted first. */
  readonly since: Timestamp;
}

/** A job with tasks waiting for placement; all its tasks share its requirements. */
export interface SchedulerJob {
  readonly jobId: string;
  /** Per task. */
  readonly resources: ResourceVec;
  /** Per task; kind "cpu" runs only on cpu (accelerator-less) workers, see acceleratorMatches. */
  readonly accelerator: AcceleratorSpec;
  readonly constraints: readonly ConstraintSpec[];
  /** Coscheduling attribute (e.g. "tpu-name"); undefined for independent tasks. */
  readonly groupBy?: string;
  /** Total tasks in the job (gang size when coscheduled). */
  readonly replicas: number;
  /** Task indices waiting for placement. For a gang, all of them or it is not pending. */
  readonly pendingTaskIndices: readonly number[];
  readonly band: Band;
  readonly submittedAt: Timestamp;
  /** Who submitted it: users share a band fairly (see schedule). Undefined: one shared user. */
  readonly user?: string;
}

/** Input of {@linkcode schedule}: readonly plain data. */
export interface ClusterSnapshot {
  readonly workers: readonly SchedulerWorker[];
  /** In queue order (earlier = served first within a band). */
  readonly jobs: readonly SchedulerJob[];
  /** Max ASSIGNED+BUILDING attempts per worker; 0 = unlimited. */
  readonly maxBuildingPerWorker?: number;
  /**
   * Active attempts that a higher band may preempt. Empty or missing: no preemption pass (the
   * controller fills it only while a pending job outranks some running task).
   */
  readonly running?: readonly RunningTask[];
  /** Jobs whose reservation still has unclaimed entries, in submission order. */
  readonly reservations?: readonly ReservationRequest[];
  /**
   * Active (ASSIGNED, BUILDING, RUNNING) tasks per band, then per user: a band's users are served
   * fewest-active first. Missing entries count 0.
   */
  readonly activeByUser?: Readonly<Partial<Record<Band, Readonly<Record<string, number>>>>>;
  /**
   * Resource budgets of users with pending jobs. Each pass, a user's tasks in bands above BATCH
   * are placed in their band only while their active usage (`budgetUsage`) plus this pass's
   * placements stays within it; the rest are placed as BATCH (Assignment.band = 3).
   */
  readonly budgets?: Readonly<Record<string, ResourceBudget>>;
  /** Resources held by each user's active tasks in bands above BATCH. Missing: nothing. */
  readonly budgetUsage?: Readonly<Record<string, ResourceVec>>;
}

/** One worker a job wants held for it before its tasks start. */
export interface ReservationEntryView {
  /** Position in the job's reservation list. */
  readonly index: number;
  readonly resources: ResourceVec;
  readonly accelerator: AcceleratorSpec;
  readonly constraints: readonly ConstraintSpec[];
}

/** A job's still-unclaimed reservation entries. */
export interface ReservationRequest {
  readonly jobId: string;
  readonly entries: readonly ReservationEntryView[];
}

/** A worker the plan claims for a reservation entry. */
export interface ReservationClaim {
  readonly jobId: string;
  readonly entryIndex: number;
  readonly workerId: string;
}

/** Machine-readable reason codes for unplaced tasks. */
export type PendingCode =
  | "no_workers"
  | "insufficient_cpu"
  | "insufficient_memory"
  | "insufficient_accelerator"
  | "accelerator_mismatch"
  | "constraint_unsatisfied"
  | "gang_no_slice"
  | "building_limit"
  | "preempting"
  | "reserved";

/** Why a job's tasks were not placed. */
export interface PendingReasonData {
  readonly code: PendingCode;
  readonly message: string;
  readonly workersConsidered: number;
}

/** One placement. */
export interface Assignment {
  readonly jobId: string;
  readonly taskIndex: number;
  readonly workerId: string;
  /** Set when the task runs in another band than its job's (over its user's resource budget). */
  readonly band?: Band;
}

/** Resource limits of one user's tasks above BATCH; undefined fields are unlimited. */
export interface ResourceBudget {
  readonly cpuMillicores?: number;
  readonly memoryBytes?: number;
  readonly accelerators?: number;
}

/** A running task the plan evicts to make room for a higher band. */
export interface Preemption {
  readonly jobId: string;
  readonly taskIndex: number;
  readonly workerId: string;
  /** The job that needs the room. */
  readonly forJobId: string;
  readonly reason: string;
}

/** Output of the scheduler. */
export interface SchedulePlan {
  readonly assignments: readonly Assignment[];
  /** Tasks to stop (each gang victim listed whole); empty unless a higher band was blocked. */
  readonly preemptions?: readonly Preemption[];
  /** Idle workers claimed for reservations this pass (already held in this pass's placements). */
  readonly claims?: readonly ReservationClaim[];
  /** One entry per job that still has unplaced tasks. */
  readonly unplaced: readonly {
    readonly jobId: string;
    readonly taskCount: number;
    readonly reason: PendingReasonData;
  }[];
}

/** A scale group as the autoscaler sees it. */
export interface ScaleGroupSpec {
  readonly name: string;
  readonly accelerator: AcceleratorSpec;
  /** Workers (VMs) per slice: hosts of the TPU topology, 1 otherwise. */
  readonly vmsPerSlice: number;
  readonly vmResources: ResourceVec;
  /** Attributes every worker of the group gets (region, zone, scale-group, device-type…). */
  readonly attributes: Attributes;
  readonly minSlices: number;
  readonly maxSlices: number;
  /** Lower is preferred. */
  readonly priority: number;
  readonly scaleUpCooldown: Duration;
  readonly scaleDownDelay: Duration;
  /** A slice still `requesting` (not created by the platform) this long is failed. */
  readonly bootTimeout?: Duration;
  /** A created slice whose workers have not all registered this long is failed. */
  readonly initTimeout?: Duration;
  /** Token bucket: slices created per minute (also the burst). Unset or 0: unlimited. */
  readonly scaleUpRate?: number;
  /** Token bucket: idle slices terminated per minute (also the burst). Unset or 0: unlimited. */
  readonly scaleDownRate?: number;
  /** Idle (warm spare) slices kept beyond demand, within max_slices. @default 0 */
  readonly bufferSlices?: number;
}

/** Lifecycle of a slice owned by the autoscaler. */
export type SliceLifecycle = "requesting" | "booting" | "ready" | "failed" | "terminating";

/** A slice the autoscaler tracks. */
export interface SliceState {
  readonly sliceId: string;
  readonly group: string;
  readonly state: SliceLifecycle;
  readonly createdAt: Timestamp;
  /** When the platform reported the slice created (start of `booting`). */
  readonly bootedAt?: Timestamp;
  /** Since when no task has run on any of its workers; undefined while busy. */
  readonly idleSince?: Timestamp;
  readonly workerIds: readonly string[];
}

/** Per-group memory of the autoscaler between decisions. */
export interface GroupState {
  readonly name: string;
  readonly consecutiveFailures: number;
  readonly backoffUntil?: Timestamp;
  readonly lastScaleUp?: Timestamp;
  readonly lastScaleDown?: Timestamp;
  /** Why the group is backing off (the last failure). */
  readonly backoffReason?: string;
  /** Quota exhausted: no creation until then (a backoff of its own). */
  readonly quotaUntil?: Timestamp;
  readonly quotaReason?: string;
  readonly quotaFailures?: number;
  /** Token buckets of the scale rate limits (full when unset). */
  readonly upTokens?: TokenBucket;
  readonly downTokens?: TokenBucket;
}

/** Tokens left at a time; refills at the group's rate per minute up to the rate. */
export interface TokenBucket {
  readonly tokens: number;
  readonly at: Timestamp;
}

/** Unplaceable demand: one entry per job. */
export interface DemandEntry {
  readonly jobId: string;
  /** Tasks that need capacity. */
  readonly taskCount: number;
  readonly resources: ResourceVec;
  readonly accelerator: AcceleratorSpec;
  readonly constraints: readonly ConstraintSpec[];
  /**
   * Coscheduled: all taskCount tasks start together, on one slice of `vmsPerSlice` VMs, or (in a
   * group of single-VM GPU or CPU slices) on taskCount hosts of one group.
   */
  readonly gang: boolean;
  /** The gang's `groupBy` attribute (a per-VM one, e.g. `hostname`, keeps a gang on one slice). */
  readonly groupBy?: string;
  /** Each of the taskCount units needs a VM of its own (reservation entries claim idle workers). */
  readonly wholeVm?: boolean;
}

/** Output of the autoscaler's pure decision. */
export interface ScalingPlan {
  readonly create: readonly {
    readonly group: string;
    readonly count: number;
    readonly reason: string;
  }[];
  readonly terminate: readonly {
    readonly sliceId: string;
    readonly group: string;
    readonly reason: string;
    /** The slice missed its boot or init timeout: the group backs off. */
    readonly timedOut?: boolean;
  }[];
  /** Slices each group needs for the current demand (after caps). */
  readonly demandSlices: Readonly<Record<string, number>>;
  /** Demand no group can serve, with the reason per group ("job /a/b: tpu=at_max_slices"). */
  readonly unmet: readonly string[];
}
