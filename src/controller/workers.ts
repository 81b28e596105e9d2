/**
 * The controller's table of registered workers: their offers, the resources committed to each
 * active attempt, liveness, and the scheduler's view of them. No I/O.
 * @module
 */
import {
  type Resources,
  type ResourceSnapshot,
  type TaskResourceUsage,
  TaskState,
} from "../rpc/gen/iris/v1/types_pb.ts";
import {
  type AcceleratorSpec,
  type AttributeScalar,
  type Band,
  BAND_BATCH,
  type ResourceVec,
  type RunningTask,
  type SchedulerWorker,
} from "../types.ts";
import { timestamp } from "../time.ts";
import { acceleratorKind } from "./convert.ts";

/** Resources held by one attempt on a worker. */
export interface Commitment {
  readonly cpuMillicores: number;
  readonly memoryBytes: number;
  readonly accelerators: number;
  /** ASSIGNED/BUILDING count toward the building limit; KILLED: told to stop, not yet confirmed. */
  state: TaskState;
  /** Who holds it, for the preemption pass (band, gang, assignment time). */
  readonly holder?: CommitmentHolder;
}

/** The task behind a commitment, as the preemption pass needs it. */
export interface CommitmentHolder {
  readonly jobId: string;
  readonly taskIndex: number;
  readonly band: Band;
  readonly gang: boolean;
  readonly sinceMs: number;
}

/** How {@linkcode WorkerTable.unreachable} starts a worker's status message. */
const UNREACHABLE = "unreachable";

/** A registered worker. */
export interface WorkerRecord {
  readonly workerId: string;
  address: string;
  total: ResourceVec;
  accelerator: AcceleratorSpec;
  attributes: Record<string, AttributeScalar>;
  scaleGroup: string;
  sliceId: string;
  healthy: boolean;
  lastHeartbeatMs: number;
  /** The heartbeat interval last told to the worker (liveness.ts); absent: the configured one. */
  heartbeatIntervalMs?: number;
  registeredAtMs: number;
  /** Key: attemptKey(taskId, attemptId). */
  readonly active: Map<string, Commitment>;
  committed: { cpuMillicores: number; memoryBytes: number; accelerators: number };
  snapshot?: ResourceSnapshot;
  /** The last {@linkcode SNAPSHOT_HISTORY} heartbeat snapshots, oldest first. */
  readonly history: ResourceSnapshot[];
  /** Usage samples of each active attempt (key: attemptKey), oldest first. */
  readonly taskUsage: Map<string, TaskResourceUsage[]>;
  /** Keys of the last {@linkcode RECENT_ATTEMPTS} attempts released from this worker, oldest first. */
  readonly recentAttempts: string[];
  statusMessage: string;
  /**
   * Loaded from the state store after a controller restart and not re-registered yet: listed,
   * but not schedulable and its heartbeats are answered with "re-register".
   */
  reconnecting: boolean;
}

/** What the state store keeps of a worker: its registration, not its liveness or usage. */
export interface PersistedWorker {
  readonly workerId: string;
  readonly address: string;
  readonly total: ResourceVec;
  readonly accelerator: AcceleratorSpec;
  readonly attributes: Record<string, AttributeScalar>;
  readonly scaleGroup: string;
  readonly sliceId: string;
  readonly registeredAtMs: number;
}

/** The status message of a worker loaded after a restart that has not re-registered yet. */
export const RECONNECTING_MESSAGE =
  "reconnecting: waiting for the worker to re-register after a controller restart";

/** How many heartbeat snapshots a worker keeps for the dashboard's history. */
export const SNAPSHOT_HISTORY = 120;
/** How many usage samples the controller keeps per active attempt. */
export const TASK_USAGE_HISTORY = 60;
/** How many ended attempts a worker remembers for GetWorkerStatus. */
export const RECENT_ATTEMPTS = 50;

function pushCapped<T>(list: T[], item: T, cap: number): void {
  list.push(item);
  if (list.length > cap) list.splice(0, list.length - cap);
}

/**
 * Records a heartbeat snapshot as the worker's current one and appends it to its history. The
 * per-task samples go to `taskUsage` (only for attempts the worker holds), not into the history.
 */
export function recordSnapshot(worker: WorkerRecord, snapshot: ResourceSnapshot): void {
  const bare: ResourceSnapshot = withKnownHostMetrics({ ...snapshot, tasks: [] });
  worker.snapshot = bare;
  pushCapped(worker.history, bare, SNAPSHOT_HISTORY);
  for (const usage of snapshot.tasks) {
    const key = attemptKey(usage.taskId, usage.attemptId);
    if (!worker.active.has(key)) continue;
    let samples = worker.taskUsage.get(key);
    if (!samples) worker.taskUsage.set(key, samples = []);
    pushCapped(samples, usage, TASK_USAGE_HISTORY);
  }
}

const HOST_METRICS = [
  "hostCpuMillicores",
  "hostCpuTotalMillicores",
  "hostMemoryUsedBytes",
  "hostMemoryTotalBytes",
] as const;

/**
 * Drops host figures no host can have (negative, not finite), so a confused worker shows
 * "unknown" rather than a wrong gauge. Absent figures stay absent: unknown is never 0.
 */
export function withKnownHostMetrics(snapshot: ResourceSnapshot): ResourceSnapshot {
  for (const key of HOST_METRICS) {
    const value = snapshot[key];
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) delete snapshot[key];
  }
  return snapshot;
}

/** The key of an attempt in `WorkerRecord.active`. */
export function attemptKey(taskId: string, attemptId: number): string {
  return `${taskId}#${attemptId}`;
}

/** Splits an attempt key. */
export function parseAttemptKey(key: string): { taskId: string; attemptId: number } {
  const i = key.lastIndexOf("#");
  return { taskId: key.slice(0, i), attemptId: Number(key.slice(i + 1)) };
}

/** Registered workers. */
export class WorkerTable {
  readonly workers = new Map<string, WorkerRecord>();
  /** Ids registered or removed since the state store last wrote them. */
  readonly dirty = new Set<string>();
  /**
   * Bumped by every change the scheduler could see (registrations, health, commitments and their
   * states, removals): while it stays the same, so does the cluster a pass places on (#20).
   */
  version = 0;

  /** Adds or refreshes a worker. Returns the record and whether it is new. */
  register(
    req: {
      workerId: string;
      address: string;
      resources?: Resources;
      attributes: Record<string, AttributeScalar>;
      scaleGroup: string;
      sliceId: string;
    },
    nowMs: number,
  ): { worker: WorkerRecord; isNew: boolean } {
    const r = req.resources;
    const accel: AcceleratorSpec = {
      kind: acceleratorKind(r?.accelerator?.type),
      variant: r?.accelerator?.variant ?? "",
      count: r?.accelerator?.count ?? 0,
    };
    const total: ResourceVec = {
      cpuMillicores: r?.cpuMillicores ?? 0,
      memoryBytes: r?.memoryBytes ?? 0,
      accelerators: accel.count,
    };
    const attributes: Record<string, AttributeScalar> = {
      "device-type": accel.kind,
      ...(accel.variant ? { "device-variant": accel.variant } : {}),
      ...(req.scaleGroup ? { "scale-group": req.scaleGroup } : {}),
      ...req.attributes,
    };
    this.version++;
    const existing = this.workers.get(req.workerId);
    if (existing) {
      Object.assign(existing, {
        address: req.address,
        total,
        accelerator: accel,
        attributes,
        scaleGroup: req.scaleGroup,
        sliceId: req.sliceId,
        healthy: true,
        lastHeartbeatMs: nowMs,
        reconnecting: false,
        statusMessage: existing.reconnecting ? "" : existing.statusMessage,
      });
      this.dirty.add(req.workerId);
      return { worker: existing, isNew: false };
    }
    const worker: WorkerRecord = {
      workerId: req.workerId,
      address: req.address,
      total,
      accelerator: accel,
      attributes,
      scaleGroup: req.scaleGroup,
      sliceId: req.sliceId,
      healthy: true,
      lastHeartbeatMs: nowMs,
      registeredAtMs: nowMs,
      active: new Map(),
      committed: { cpuMillicores: 0, memoryBytes: 0, accelerators: 0 },
      history: [],
      taskUsage: new Map(),
      recentAttempts: [],
      statusMessage: "",
      reconnecting: false,
    };
    this.workers.set(req.workerId, worker);
    this.dirty.add(req.workerId);
    return { worker, isNew: true };
  }

  /** A worker's registration as the state store keeps it. */
  persisted(workerId: string): PersistedWorker | undefined {
    const w = this.workers.get(workerId);
    if (!w) return undefined;
    return {
      workerId: w.workerId,
      address: w.address,
      total: w.total,
      accelerator: w.accelerator,
      attributes: w.attributes,
      scaleGroup: w.scaleGroup,
      sliceId: w.sliceId,
      registeredAtMs: w.registeredAtMs,
    };
  }

  /**
   * Adds workers loaded from the state store as reconnecting (unhealthy, not schedulable). Their
   * liveness clock starts at `nowMs`, so one that never re-registers expires after the usual
   * heartbeat timeout.
   */
  restore(rows: readonly PersistedWorker[], nowMs: number): void {
    this.version++;
    for (const row of rows) {
      this.workers.set(row.workerId, {
        ...row,
        healthy: false,
        lastHeartbeatMs: nowMs,
        active: new Map(),
        committed: { cpuMillicores: 0, memoryBytes: 0, accelerators: 0 },
        history: [],
        taskUsage: new Map(),
        recentAttempts: [],
        statusMessage: RECONNECTING_MESSAGE,
        reconnecting: true,
      });
    }
  }

  /**
   * Forgets which workers changed (a memory-only controller has nothing to write). Liveness and
   * commitments are not persisted: only registrations and removals are marked.
   */
  clearDirty(): void {
    this.dirty.clear();
  }

  /**
   * A call to `worker` found no connection: no attempt is placed on it until its next heartbeat
   * says it is back (a dead host's heartbeats stop, and liveness declares it dead; without this,
   * each pass in between placed a retry on it that failed at once, until the task's budget was
   * spent).
   */
  unreachable(worker: WorkerRecord, why: string): void {
    if (worker.healthy) this.version++;
    worker.healthy = false;
    worker.statusMessage = `${UNREACHABLE} (${why}): no placements until its next heartbeat`;
  }

  /** A heartbeat arrived from `worker` at `nowMs`: it is alive and healthy. */
  heartbeat(worker: WorkerRecord, nowMs: number): void {
    worker.lastHeartbeatMs = nowMs;
    if (!worker.healthy) {
      this.version++;
      if (worker.statusMessage.startsWith(UNREACHABLE)) worker.statusMessage = "";
    }
    worker.healthy = true;
  }

  /**
   * Every worker that is not reconnecting gets a full heartbeat timeout from `nowMs` (deaths
   * could not be recorded before it).
   */
  extendDeadlines(nowMs: number): void {
    for (const w of this.workers.values()) {
      if (!w.reconnecting) w.lastHeartbeatMs = Math.max(w.lastHeartbeatMs, nowMs);
    }
  }

  /**
   * The worker reports an attempt it holds as `state` (BUILDING, RUNNING). A commitment told to
   * stop stays "releasing" until the worker confirms the end. True when the attempt left setup
   * (ASSIGNED/BUILDING): a slot under `max_building_tasks_per_worker` is free again.
   */
  noteAttemptState(workerId: string, key: string, state: TaskState): boolean {
    const c = this.workers.get(workerId)?.active.get(key);
    if (!c || c.state === TaskState.KILLED) return false;
    const wasBuilding = isBuilding(c.state);
    // The scheduler tells only building, stopping and other commitments apart.
    if (isBuilding(c.state) !== isBuilding(state) || state === TaskState.KILLED) this.version++;
    c.state = state;
    return wasBuilding && !isBuilding(state);
  }

  /** Records a heartbeat snapshot (see {@linkcode recordSnapshot}). */
  recordSnapshot(worker: WorkerRecord, snapshot: ResourceSnapshot): void {
    recordSnapshot(worker, snapshot);
  }

  /** Commits resources to an attempt on a worker. */
  commit(worker: WorkerRecord, key: string, res: ResourceVec, holder?: CommitmentHolder): void {
    if (worker.active.has(key)) return;
    this.version++;
    worker.active.set(key, {
      cpuMillicores: res.cpuMillicores,
      memoryBytes: res.memoryBytes,
      accelerators: res.accelerators,
      state: TaskState.ASSIGNED,
      holder,
    });
    worker.committed.cpuMillicores += res.cpuMillicores;
    worker.committed.memoryBytes += res.memoryBytes;
    worker.committed.accelerators += res.accelerators;
  }

  /** Frees an attempt's resources. Returns false when the worker did not hold it. */
  release(workerId: string, key: string): boolean {
    const worker = this.workers.get(workerId);
    const c = worker?.active.get(key);
    if (!worker || !c) return false;
    this.version++;
    worker.active.delete(key);
    worker.taskUsage.delete(key);
    pushCapped(worker.recentAttempts, key, RECENT_ATTEMPTS);
    worker.committed.cpuMillicores -= c.cpuMillicores;
    worker.committed.memoryBytes -= c.memoryBytes;
    worker.committed.accelerators -= c.accelerators;
    return true;
  }

  /** Marks an attempt as told to stop: its resources count as being released until confirmed. */
  markStopping(workerId: string, key: string): void {
    const c = this.workers.get(workerId)?.active.get(key);
    if (c && c.state !== TaskState.KILLED) {
      c.state = TaskState.KILLED;
      this.version++;
    }
  }

  /**
   * Active attempts of bands numerically above `band` (less important), for the preemption pass.
   * Empty when `band` is BATCH or lower-ranked: nothing can be preempted.
   */
  preemptible(band: number): RunningTask[] {
    const out: RunningTask[] = [];
    if (band >= BAND_BATCH) return out;
    for (const w of this.workers.values()) {
      if (!w.healthy) continue;
      for (const c of w.active.values()) {
        const h = c.holder;
        if (!h || h.band <= band || c.state === TaskState.KILLED) continue;
        out.push({
          jobId: h.jobId,
          taskIndex: h.taskIndex,
          workerId: w.workerId,
          band: h.band,
          resources: {
            cpuMillicores: c.cpuMillicores,
            memoryBytes: c.memoryBytes,
            accelerators: c.accelerators,
          },
          gang: h.gang,
          since: timestamp(h.sinceMs),
        });
      }
    }
    return out;
  }

  /**
   * Free building slots of the healthy workers: how many attempts a pass could place at most
   * under a limit of `limit` ASSIGNED/BUILDING attempts per worker.
   */
  buildingRoom(limit: number): number {
    let room = 0;
    for (const w of this.workers.values()) {
      if (!w.healthy) continue;
      let building = 0;
      for (const c of w.active.values()) if (isBuilding(c.state)) building++;
      if (building < limit) room += limit - building;
    }
    return room;
  }

  /** Whether {@linkcode preemptible} would list anything for `band` (without listing it). */
  anyPreemptible(band: number): boolean {
    if (band >= BAND_BATCH) return false;
    for (const w of this.workers.values()) {
      if (!w.healthy) continue;
      for (const c of w.active.values()) {
        const h = c.holder;
        if (h && h.band > band && c.state !== TaskState.KILLED) return true;
      }
    }
    return false;
  }

  /** Removes a worker; returns the attempt keys it held. */
  remove(workerId: string): string[] {
    const worker = this.workers.get(workerId);
    if (!worker) return [];
    this.version++;
    this.workers.delete(workerId);
    this.dirty.add(workerId);
    return [...worker.active.keys()];
  }

  /**
   * Workers whose last heartbeat is older than `threshold` of the intervals they were told
   * (`baseIntervalMs` for those told none), counting from `sinceMs` at the earliest (the
   * controller's resumption after it was blocked: no heartbeat could arrive before it).
   */
  expired(nowMs: number, threshold: number, baseIntervalMs: number, sinceMs = 0): WorkerRecord[] {
    const out: WorkerRecord[] = [];
    for (const w of this.workers.values()) {
      const timeoutMs = (w.heartbeatIntervalMs ?? baseIntervalMs) * threshold;
      if (nowMs - Math.max(w.lastHeartbeatMs, sinceMs) > timeoutMs) out.push(w);
    }
    return out;
  }

  /** The scheduler's view of every healthy worker. */
  schedulerView(): SchedulerWorker[] {
    const out: SchedulerWorker[] = [];
    for (const w of this.workers.values()) {
      let building = 0;
      let releasing:
        | { cpuMillicores: number; memoryBytes: number; accelerators: number }
        | undefined;
      for (const c of w.active.values()) {
        if (isBuilding(c.state)) building++;
        else if (c.state === TaskState.KILLED) {
          releasing ??= { cpuMillicores: 0, memoryBytes: 0, accelerators: 0 };
          releasing.cpuMillicores += c.cpuMillicores;
          releasing.memoryBytes += c.memoryBytes;
          releasing.accelerators += c.accelerators;
        }
      }
      out.push({
        id: w.workerId,
        sliceId: w.sliceId,
        scaleGroup: w.scaleGroup,
        accelerator: w.accelerator,
        total: w.total,
        free: {
          cpuMillicores: w.total.cpuMillicores - w.committed.cpuMillicores,
          memoryBytes: w.total.memoryBytes - w.committed.memoryBytes,
          accelerators: w.total.accelerators - w.committed.accelerators,
        },
        attributes: w.attributes,
        healthy: w.healthy,
        buildingCount: building,
        ...(releasing ? { releasing } : {}),
      });
    }
    return out;
  }
}

/** Whether a commitment in `state` counts toward the building limit. */
function isBuilding(state: TaskState): boolean {
  return state === TaskState.ASSIGNED || state === TaskState.BUILDING;
}
