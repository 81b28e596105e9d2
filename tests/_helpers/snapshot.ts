/**
 * Builders of scheduler snapshot parts (src/types.ts) for the pure scheduler's tests: a worker and
 * a job with every field defaulted, so a test names only what it is about.
 * @module
 */
import type {
  AcceleratorSpec,
  Attributes,
  Band,
  ConstraintSpec,
  SchedulerJob,
  SchedulerWorker,
} from "../../src/types.ts";
import { timestamp } from "../../src/time.ts";

/** Bytes in a GiB. */
export const GiB = 2 ** 30;
/** A CPU-only host's accelerator. */
export const CPU: AcceleratorSpec = { kind: "cpu", variant: "", count: 0 };

/** What a test may set on a {@linkcode schedulerWorker}. */
export interface WorkerInit {
  /** Cores. @default 8 */
  cpu?: number;
  /** Memory in GiB. @default 32 */
  memGiB?: number;
  /** @default CPU */
  acc?: AcceleratorSpec;
  /** @default {} */
  attributes?: Attributes;
  /** @default true */
  healthy?: boolean;
  /** Attempts ASSIGNED or BUILDING on it. @default 0 */
  building?: number;
  /** Free cores. @default all */
  freeCpu?: number;
  /** Free memory in GiB. @default all */
  freeMemGiB?: number;
  /** @default `slice-<id>` */
  sliceId?: string;
}

/** A healthy worker of scale group "g", all free unless told otherwise. */
export function schedulerWorker(id: string, init: WorkerInit = {}): SchedulerWorker {
  const acc = init.acc ?? CPU;
  const cpu = init.cpu ?? 8;
  const mem = init.memGiB ?? 32;
  return {
    id,
    sliceId: init.sliceId ?? `slice-${id}`,
    scaleGroup: "g",
    accelerator: acc,
    total: { cpuMillicores: cpu * 1000, memoryBytes: mem * GiB, accelerators: acc.count },
    free: {
      cpuMillicores: (init.freeCpu ?? cpu) * 1000,
      memoryBytes: (init.freeMemGiB ?? mem) * GiB,
      accelerators: acc.count,
    },
    attributes: init.attributes ?? {},
    healthy: init.healthy ?? true,
    buildingCount: init.building ?? 0,
  };
}

/** What a test may set on a {@linkcode schedulerJob}. */
export interface JobInit {
  /** Replicas, all pending. @default 1 */
  tasks?: number;
  /** Cores per task. @default 1 */
  cpu?: number;
  /** Memory per task in GiB. @default 1 */
  memGiB?: number;
  /** @default CPU */
  acc?: AcceleratorSpec;
  /** @default [] */
  constraints?: ConstraintSpec[];
  /** Coscheduling attribute (a gang). */
  groupBy?: string;
  /** @default 2 (INTERACTIVE) */
  band?: Band;
  user?: string;
}

/** A job whose tasks are all pending, submitted at time 0. */
export function schedulerJob(jobId: string, init: JobInit = {}): SchedulerJob {
  const n = init.tasks ?? 1;
  const acc = init.acc ?? CPU;
  return {
    jobId,
    ...(init.user !== undefined ? { user: init.user } : {}),
    resources: {
      cpuMillicores: (init.cpu ?? 1) * 1000,
      memoryBytes: (init.memGiB ?? 1) * GiB,
      accelerators: acc.count,
    },
    accelerator: acc,
    constraints: init.constraints ?? [],
    groupBy: init.groupBy,
    replicas: n,
    pendingTaskIndices: Array.from({ length: n }, (_, i) => i),
    band: init.band ?? 2,
    submittedAt: timestamp(0),
  };
}
