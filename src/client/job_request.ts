/**
 * The friendly job description users write (`JobRequest`) and its conversion to the wire
 * `JobSpec`, including child-job inheritance from the enclosing task's context.
 * @module
 */
import { create, fromJson } from "@bufbuild/protobuf";
import {
  AcceleratorType,
  type Constraint,
  ConstraintMode,
  ConstraintOp,
  ConstraintSchema,
  ExistingJobPolicy,
  type JobSpec,
  JobSpecSchema,
  PriorityBand,
} from "../rpc/mod.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { Duration } from "../time.ts";
import type { AttributeScalar, ConstraintOp as Op } from "../types.ts";
import type { JobContext } from "./client.ts";
import { tpuShape } from "../config/mod.ts";

/** A constraint as users write it. */
export interface ConstraintInput {
  readonly key: string;
  readonly op: Op;
  readonly value?: AttributeScalar;
  readonly values?: readonly AttributeScalar[];
  readonly preferred?: boolean;
}

/** A job as users describe it. Sizes in bytes, cpu in cores. */
export interface JobRequest {
  /** Leaf name ("train"), or full name ("/alice/train"). */
  readonly name: string;
  /** A command to run (argv). Exactly one of command / module. */
  readonly command?: readonly string[];
  /** A TypeScript module inside the bundle. */
  readonly module?: {
    path: string;
    args?: string[];
    read?: string[];
    write?: string[];
    net?: string[];
    env?: string[];
  };
  readonly env?: Readonly<Record<string, string>>;
  /** CPU cores per task. @default 1 */
  readonly cpu?: number;
  /** Memory bytes per task. @default 256 MiB */
  readonly memory?: number;
  /**
   * Number of tasks. @default 1, or the slice's host count for a multi-host TPU variant
   * (see {@linkcode multiHostTpuDefaults})
   */
  readonly replicas?: number;
  readonly accelerator?: { kind: "tpu" | "gpu"; variant?: string; count?: number };
  readonly constraints?: readonly ConstraintInput[];
  /**
   * Coscheduling attribute: all replicas together on workers sharing its value. `""` turns
   * coscheduling off. @default none, or "tpu-name" for a multi-host TPU variant
   */
  readonly groupBy?: string;
  readonly maxRetriesFailure?: number;
  readonly maxRetriesPreemption?: number;
  readonly maxTaskFailures?: number;
  readonly timeout?: Duration;
  readonly schedulingTimeout?: Duration;
  readonly ports?: readonly string[];
  readonly bundleId?: string;
  readonly user?: string;
  /** Parent job; defaults to the enclosing task's job when submitted from inside a task. */
  readonly parentJobId?: string;
  readonly priority?: "production" | "interactive" | "batch";
  /** Scratch disk bytes per task. @default none */
  readonly disk?: number;
  /**
   * When a job of the same name exists: "error" refuses, "keep" returns the existing job,
   * "recreate" replaces it. @default replace a finished job, refuse a running one
   */
  readonly existingJobPolicy?: "error" | "keep" | "recreate";
  /**
   * Workers to hold for the job before its tasks start, grouped by shape: each entry asks for
   * `count` alike workers (sizes as in the request; an entry's omitted fields take the job's own).
   * Sent as `JobSpec.reservation`, one wire entry per worker.
   */
  readonly reservation?: readonly ReservationInput[];
  /** Python environment and setup steps, prepared on the worker (docs/python.md). */
  readonly environment?: EnvironmentInput;
  /**
   * Attach the task's stdin (and, with `tty`, a terminal of rows x cols) to a client through
   * AttachTask / ExecInput (`iris job run -i`); one-replica jobs only. @default stdin is /dev/null
   */
  readonly interactive?: { readonly tty?: boolean; readonly rows?: number; readonly cols?: number };
}

/** A job's environment as users write it (the wire `Environment`). */
export interface EnvironmentInput {
  /** Interpreter: a name on the task PATH ("python3.12") or an absolute path. @default "python3" */
  readonly interpreter?: string;
  /** Requirement specifiers to install into the job's venv. */
  readonly pip?: readonly string[];
  /** A requirements file in the workspace ("requirements.txt"). */
  readonly requirementsFile?: string;
  /** Install the workspace's own project (pyproject.toml), with `extras`. */
  readonly installProject?: boolean;
  readonly extras?: readonly string[];
  /** Extra installer arguments ("--no-index", "--find-links=wheels"). */
  readonly pipArgs?: readonly string[];
  /** Shell commands run in the task directory before the task, every attempt. */
  readonly setup?: readonly string[];
}

/** Workers of one shape a job reserves (see {@linkcode JobRequest.reservation}). */
export interface ReservationInput {
  /** Alike workers. @default 1 */
  readonly count?: number;
  readonly cpu?: number;
  readonly memory?: number;
  readonly disk?: number;
  readonly accelerator?: JobRequest["accelerator"];
  readonly constraints?: readonly ConstraintInput[];
}

const POLICIES = {
  error: ExistingJobPolicy.ERROR,
  keep: ExistingJobPolicy.KEEP,
  recreate: ExistingJobPolicy.RECREATE,
} as const;

function resources(
  r: { cpu?: number; memory?: number; disk?: number; accelerator?: JobRequest["accelerator"] },
) {
  return {
    cpuMillicores: Math.round((r.cpu ?? 1) * 1000),
    memoryBytes: r.memory ?? DEFAULT_TASK_MEMORY,
    diskBytes: r.disk ?? 0,
    accelerator: r.accelerator
      ? {
        type: r.accelerator.kind === "tpu" ? AcceleratorType.TPU : AcceleratorType.GPU,
        variant: r.accelerator.variant ?? "",
        count: r.accelerator.count ?? 0,
      }
      : undefined,
  };
}

const OPS: Record<Op, ConstraintOp> = {
  eq: ConstraintOp.EQ,
  ne: ConstraintOp.NE,
  exists: ConstraintOp.EXISTS,
  "not_exists": ConstraintOp.NOT_EXISTS,
  gt: ConstraintOp.GT,
  ge: ConstraintOp.GE,
  lt: ConstraintOp.LT,
  le: ConstraintOp.LE,
  in: ConstraintOp.IN,
};

function scalar(v: AttributeScalar) {
  return {
    kind: typeof v === "string"
      ? { case: "stringValue" as const, value: v }
      : typeof v === "boolean"
      ? { case: "boolValue" as const, value: v }
      : Number.isInteger(v)
      ? { case: "intValue" as const, value: v }
      : { case: "floatValue" as const, value: v },
  };
}

/** Builds a wire constraint. */
export function constraint(c: ConstraintInput): Constraint {
  return create(ConstraintSchema, {
    key: c.key,
    op: OPS[c.op],
    value: c.value === undefined ? undefined : scalar(c.value),
    values: (c.values ?? []).map(scalar),
    mode: c.preferred ? ConstraintMode.PREFERRED : ConstraintMode.REQUIRED,
  });
}

/** Default memory per task when a request does not say. */
export const DEFAULT_TASK_MEMORY = 256 * 1024 * 1024;

/** Attribute that names a TPU slice: a multi-host job is coscheduled on one slice by it. */
export const TPU_SLICE_ATTRIBUTE = "tpu-name";

/**
 * What a multi-host TPU request fills in: one task per host of the slice (`replicas` = the
 * variant's host count) coscheduled on one slice (`groupBy` = "tpu-name"). Undefined for CPU/GPU,
 * an empty or unknown variant, and single-host variants. Values the request sets win.
 */
export function multiHostTpuDefaults(
  accelerator: JobRequest["accelerator"],
): { replicas: number; groupBy: string } | undefined {
  if (accelerator?.kind !== "tpu" || !accelerator.variant) return undefined;
  const shape = tpuShape(accelerator.variant);
  if (!shape || shape.vmCount <= 1) return undefined;
  return { replicas: shape.vmCount, groupBy: TPU_SLICE_ATTRIBUTE };
}

/** Region and zone constraints are what a child job inherits from its parent. */
export const INHERITED_CONSTRAINT_KEYS: readonly string[] = ["region", "zone"];

/**
 * Converts a JobRequest to a JobSpec. Inside a task, the job becomes a child of the task's job.
 * `defaultUser` (a name, or how to find one: called only when the request and context name none)
 * is the user when neither the request nor the enclosing task names one.
 */
export function jobSpecFromRequest(
  req: JobRequest,
  options: { context?: JobContext; defaultUser?: string | (() => string | undefined) } = {},
): JobSpec {
  if (!!req.command === !!req.module) {
    throw new InvalidArgumentError("command", "give exactly one of command or module");
  }
  const ctx = options.context;
  const parentJobId = req.parentJobId ?? ctx?.jobId ?? "";
  // Only a child of the enclosing task's own job inherits from it.
  const parent = ctx && parentJobId !== "" && parentJobId === ctx.jobId ? ctx : undefined;
  const inheritedConstraints = parent
    ? parent.constraints.map((c) => fromJson(ConstraintSchema, c as never)).filter((c) =>
      INHERITED_CONSTRAINT_KEYS.includes(c.key)
    )
    : [];
  const tpu = multiHostTpuDefaults(req.accelerator);
  const groupBy = req.groupBy ?? tpu?.groupBy;
  const own = (req.constraints ?? []).map(constraint);
  const ownKeys = new Set(own.map((c) => c.key));
  return create(JobSpecSchema, {
    name: req.name,
    entrypoint: req.command ? { kind: { case: "command", value: { argv: [...req.command] } } } : {
      kind: {
        case: "module",
        value: {
          path: req.module!.path,
          args: req.module!.args ?? [],
          permissions: {
            read: req.module!.read ?? [],
            write: req.module!.write ?? [],
            net: req.module!.net ?? [],
            env: req.module!.env ?? [],
          },
        },
      },
    },
    // Children inherit the parent's env; their own values win.
    env: { ...parent?.jobEnv, ...req.env },
    resources: resources(req),
    replicas: req.replicas ?? tpu?.replicas ?? 1,
    coscheduling: groupBy ? { groupBy } : undefined,
    constraints: [...inheritedConstraints.filter((c) => !ownKeys.has(c.key)), ...own],
    maxRetriesFailure: req.maxRetriesFailure ?? 0,
    maxRetriesPreemption: req.maxRetriesPreemption,
    maxTaskFailures: req.maxTaskFailures ?? 0,
    timeoutMs: req.timeout ?? 0,
    schedulingTimeoutMs: req.schedulingTimeout ?? 0,
    ports: [...(req.ports ?? [])],
    bundleId: req.bundleId ?? "",
    user: req.user ?? (ctx?.user || undefined) ?? defaultUserOf(options.defaultUser) ?? "",
    environment: req.environment
      ? {
        interpreter: req.environment.interpreter ?? "",
        pip: [...(req.environment.pip ?? [])],
        requirementsFile: req.environment.requirementsFile ?? "",
        installProject: req.environment.installProject ?? false,
        extras: [...(req.environment.extras ?? [])],
        pipArgs: [...(req.environment.pipArgs ?? [])],
        setup: [...(req.environment.setup ?? [])],
      }
      : undefined,
    interactive: req.interactive
      ? {
        tty: req.interactive.tty ?? false,
        rows: req.interactive.rows ?? 0,
        cols: req.interactive.cols ?? 0,
      }
      : undefined,
    parentJobId,
    priority: req.priority === "production"
      ? PriorityBand.PRODUCTION
      : req.priority === "batch"
      ? PriorityBand.BATCH
      : PriorityBand.INTERACTIVE,
    existingJobPolicy: req.existingJobPolicy
      ? POLICIES[req.existingJobPolicy]
      : ExistingJobPolicy.UNSPECIFIED,
    reservation: (req.reservation ?? []).flatMap((r, i) => {
      const count = r.count ?? 1;
      if (!Number.isSafeInteger(count) || count < 1 || count > 10_000) {
        throw new InvalidArgumentError(
          `reservation[${i}].count`,
          `must be 1..10000 (got ${count})`,
        );
      }
      return Array.from({ length: count }, () => r);
    }).map((e) => ({
      resources: resources({
        cpu: e.cpu ?? req.cpu,
        memory: e.memory ?? req.memory,
        disk: e.disk ?? req.disk,
        accelerator: e.accelerator ?? req.accelerator,
      }),
      constraints: (e.constraints ?? req.constraints ?? []).filter((c) => !c.preferred).map(
        constraint,
      ),
    })),
  });
}

function defaultUserOf(user: string | (() => string | undefined) | undefined): string | undefined {
  return typeof user === "function" ? user() : user;
}
