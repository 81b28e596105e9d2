/**
 * Checks a submitted JobSpec and resolves its full hierarchical name. Every problem is an
 * InvalidArgumentError naming the field; nothing here touches controller state.
 * @module
 */
import { InvalidArgumentError } from "../errors.ts";
import {
  AcceleratorType,
  ConstraintOp,
  ExistingJobPolicy,
  type JobSpec,
  PriorityBand,
} from "../rpc/gen/iris/v1/types_pb.ts";
import { isBundleId } from "../bundle/mod.ts";

/** Upper bounds that keep one request from exhausting the controller. */
export const LIMITS = {
  maxReplicas: 10_000,
  maxCpuMillicores: 1_024_000,
  maxMemoryBytes: 64 * 2 ** 40,
  maxNameLength: 256,
  maxArgs: 4096,
  maxArgBytes: 256 * 1024,
  maxEnvEntries: 512,
  maxConstraints: 64,
  maxPorts: 32,
  maxRetries: 1000,
  maxTimeoutMs: 365 * 24 * 3600 * 1000,
  maxReservationEntries: 1024,
  /** Segments of a job id below the user ("/alice/a/b" is 2 deep). */
  maxJobDepth: 16,
  maxJobIdLength: 1024,
  maxEnvKeyLength: 256,
  maxConstraintKeyLength: 256,
  maxConstraintValues: 256,
  maxConstraintValueLength: 1024,
  maxPermissionEntries: 64,
  maxPermissionLength: 4096,
  maxVariantLength: 64,
  maxPathLength: 4096,
  /**
   * Linux's MAX_ARG_STRLEN: the longest single string execve(2) takes, an argument or a
   * `KEY=VALUE` variable, its NUL included. Longer ones fail at start with E2BIG.
   */
  maxExecStringBytes: 128 * 1024,
  /**
   * Arguments plus environment (strings, NULs and 8-byte pointers), as execve(2) counts them
   * against ARG_MAX (2 MiB with the usual 8 MiB stack). Half of it: the rest is room for what
   * the worker adds (IRIS_* variables, a module task's deno flags).
   */
  maxExecBytes: 1024 * 1024,
} as const;

/**
 * The length of `text` in UTF-8, as TextEncoder would encode it (a lone surrogate becomes
 * U+FFFD, 3 bytes), without encoding it: every submit counts its arguments (#20).
 */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/** Bytes execve(2) counts for one string: UTF-8, its NUL and its pointer. */
function execBytes(text: string): number {
  return utf8Length(text) + 1 + 8;
}

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PORT_NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;

function checkSegments(field: string, name: string): void {
  for (const seg of name.split("/").filter((s, i) => i > 0 || s !== "")) {
    if (!SEGMENT.test(seg)) {
      throw new InvalidArgumentError(
        field,
        `name segment ${
          JSON.stringify(seg.slice(0, 40))
        } must start with a letter or digit and use only letters, digits, '.', '_' or '-'`,
      );
    }
  }
}

/** Checks a user name. */
export function validateUser(user: string): void {
  if (user.length > 64 || !SEGMENT.test(user)) {
    throw new InvalidArgumentError(
      "spec.user",
      `must be 1..64 letters, digits, '.', '_' or '-' (got ${JSON.stringify(user.slice(0, 40))})`,
    );
  }
}

/**
 * The full job id for a spec: "/user/name" for a root job, "<parent>/name" for a child.
 * A full name ("/alice/x") is kept as is but must agree with the parent when one is given.
 */
export function resolveJobId(spec: JobSpec, user: string): string {
  const id = resolveJobIdUnchecked(spec, user);
  if (id.length > LIMITS.maxJobIdLength) {
    throw new InvalidArgumentError(
      "spec.name",
      `the job id would be longer than ${LIMITS.maxJobIdLength} characters`,
    );
  }
  const depth = id.split("/").length - 2;
  if (depth > LIMITS.maxJobDepth) {
    throw new InvalidArgumentError(
      "spec.name",
      `the job id would be nested ${depth} levels deep (at most ${LIMITS.maxJobDepth})`,
    );
  }
  return id;
}

function resolveJobIdUnchecked(spec: JobSpec, user: string): string {
  const name = spec.name;
  if (name === "") throw new InvalidArgumentError("spec.name", "must not be empty");
  if (name.length > LIMITS.maxNameLength) {
    throw new InvalidArgumentError(
      "spec.name",
      `must be at most ${LIMITS.maxNameLength} characters (got ${name.length})`,
    );
  }
  checkSegments("spec.name", name);
  if (name.startsWith("/")) {
    const segments = name.split("/").slice(1);
    if (segments.length < 2) {
      throw new InvalidArgumentError(
        "spec.name",
        `a full name must be /<user>/<job> (got ${name})`,
      );
    }
    if (spec.parentJobId && !name.startsWith(spec.parentJobId + "/")) {
      throw new InvalidArgumentError(
        "spec.name",
        `must be under the parent ${spec.parentJobId} (got ${name})`,
      );
    }
    return name;
  }
  if (name.includes("/")) {
    throw new InvalidArgumentError("spec.name", `a leaf name must not contain '/' (got ${name})`);
  }
  return spec.parentJobId ? `${spec.parentJobId}/${name}` : `/${user}/${name}`;
}

function checkRange(field: string, value: number, min: number, max: number): void {
  if (!Number.isFinite(value) || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(field, `must be an integer in ${min}..${max} (got ${value})`);
  }
}

function checkArgs(field: string, args: readonly string[]): void {
  if (args.length > LIMITS.maxArgs) {
    throw new InvalidArgumentError(
      field,
      `at most ${LIMITS.maxArgs} arguments (got ${args.length})`,
    );
  }
  const bytes = args.reduce((n, a) => n + a.length, 0);
  if (bytes > LIMITS.maxArgBytes) {
    throw new InvalidArgumentError(
      field,
      `at most ${LIMITS.maxArgBytes} bytes in total (got ${bytes})`,
    );
  }
  if (args.some((a) => a.includes("\0"))) {
    throw new InvalidArgumentError(field, "must not contain NUL characters");
  }
  checkExecStrings(field, args);
}

/** Each argument must fit execve(2)'s per-string limit (MAX_ARG_STRLEN). */
function checkExecStrings(field: string, args: readonly string[]): void {
  args.forEach((a, i) => {
    const n = utf8Length(a) + 1;
    if (n > LIMITS.maxExecStringBytes) {
      throw new InvalidArgumentError(
        `${field}[${i}]`,
        `is ${n} bytes with its NUL; exec takes at most ${LIMITS.maxExecStringBytes} bytes per ` +
          "argument (MAX_ARG_STRLEN)",
      );
    }
  });
}

/**
 * The task's arguments and environment must fit execve(2)'s budget (LIMITS.maxExecBytes);
 * names spec.env when it holds anything, else the arguments.
 */
function checkExecSize(spec: JobSpec): void {
  const entry = spec.entrypoint?.kind;
  const perms = entry?.case === "module" ? entry.value.permissions : undefined;
  const args: readonly string[] = entry?.case === "command"
    ? entry.value.argv
    : entry?.case === "module"
    ? [
      entry.value.path,
      ...entry.value.args,
      ...(perms?.read ?? []),
      ...(perms?.write ?? []),
      ...(perms?.net ?? []),
      ...(perms?.run ?? []),
      ...(perms?.env ?? []),
    ]
    : [];
  const argBytes = args.reduce((n, a) => n + execBytes(a), 0);
  const envBytes = Object.entries(spec.env).reduce((n, [k, v]) => n + execBytes(`${k}=${v}`), 0);
  const total = argBytes + envBytes;
  if (total <= LIMITS.maxExecBytes) return;
  const field = envBytes > 0
    ? "spec.env"
    : entry?.case === "module"
    ? "spec.entrypoint.module.args"
    : "spec.entrypoint.command.argv";
  throw new InvalidArgumentError(
    field,
    `environment (${envBytes} bytes) and arguments (${argBytes} bytes) total ${total} bytes as ` +
      `exec counts them (strings, NULs, pointers); at most ${LIMITS.maxExecBytes} are allowed, ` +
      "the rest of exec's ARG_MAX is kept for the variables the worker adds",
  );
}

/** Validates every field of a spec; throws on the first problem, naming the field. */
export function validateJobSpec(spec: JobSpec): void {
  const entry = spec.entrypoint?.kind;
  if (!entry || entry.case === undefined) {
    throw new InvalidArgumentError("spec.entrypoint", "must have a command or a module");
  }
  if (entry.case === "command") {
    const argv = entry.value.argv;
    if (argv.length === 0 || argv[0] === "") {
      throw new InvalidArgumentError("spec.entrypoint.command.argv", "must not be empty");
    }
    if (argv.length > LIMITS.maxArgs) {
      throw new InvalidArgumentError(
        "spec.entrypoint.command.argv",
        `at most ${LIMITS.maxArgs} arguments (got ${argv.length})`,
      );
    }
    const bytes = argv.reduce((n, a) => n + a.length, 0);
    if (bytes > LIMITS.maxArgBytes) {
      throw new InvalidArgumentError(
        "spec.entrypoint.command.argv",
        `at most ${LIMITS.maxArgBytes} bytes in total (got ${bytes})`,
      );
    }
    if (argv.some((a) => a.includes("\0"))) {
      throw new InvalidArgumentError(
        "spec.entrypoint.command.argv",
        "must not contain NUL characters",
      );
    }
    checkExecStrings("spec.entrypoint.command.argv", argv);
  } else {
    const path = entry.value.path;
    if (!path || path.startsWith("/") || path.split("/").includes("..")) {
      throw new InvalidArgumentError(
        "spec.entrypoint.module.path",
        `must be a relative path inside the bundle (got ${JSON.stringify(path)})`,
      );
    }
    if (!spec.bundleId) {
      throw new InvalidArgumentError("spec.bundle_id", "a module entrypoint needs a bundle");
    }
    if (path.length > LIMITS.maxPathLength) {
      throw new InvalidArgumentError(
        "spec.entrypoint.module.path",
        `at most ${LIMITS.maxPathLength} characters`,
      );
    }
    checkArgs("spec.entrypoint.module.args", entry.value.args);
    const perms = entry.value.permissions;
    for (
      const [name, list] of Object.entries({
        read: perms?.read ?? [],
        write: perms?.write ?? [],
        net: perms?.net ?? [],
        run: perms?.run ?? [],
        env: perms?.env ?? [],
      })
    ) {
      const field = `spec.entrypoint.module.permissions.${name}`;
      if (list.length > LIMITS.maxPermissionEntries) {
        throw new InvalidArgumentError(
          field,
          `at most ${LIMITS.maxPermissionEntries} entries (got ${list.length})`,
        );
      }
      if (list.some((v) => v.length > LIMITS.maxPermissionLength || v.includes("\0"))) {
        throw new InvalidArgumentError(
          field,
          `entries must be at most ${LIMITS.maxPermissionLength} characters, without NUL`,
        );
      }
    }
  }
  checkRange("spec.replicas", spec.replicas, 0, LIMITS.maxReplicas);
  if (spec.interactive) {
    if (spec.replicas > 1) {
      throw new InvalidArgumentError(
        "spec.interactive",
        `needs a one-replica job (got replicas ${spec.replicas}): one terminal, one task`,
      );
    }
    checkRange("spec.interactive.rows", spec.interactive.rows, 0, 10_000);
    checkRange("spec.interactive.cols", spec.interactive.cols, 0, 10_000);
  }
  if (spec.parentJobId.length > LIMITS.maxJobIdLength) {
    throw new InvalidArgumentError(
      "spec.parent_job_id",
      `at most ${LIMITS.maxJobIdLength} characters (got ${spec.parentJobId.length})`,
    );
  }
  if (spec.bundleId && !isBundleId(spec.bundleId)) {
    throw new InvalidArgumentError(
      "spec.bundle_id",
      `must be "sha256-<64 hex digits>" (got ${JSON.stringify(spec.bundleId.slice(0, 80))})`,
    );
  }
  if (!(spec.priority in PriorityBand)) {
    throw new InvalidArgumentError("spec.priority", `unknown priority band ${spec.priority}`);
  }
  if (!(spec.existingJobPolicy in ExistingJobPolicy)) {
    throw new InvalidArgumentError(
      "spec.existing_job_policy",
      `unknown policy ${spec.existingJobPolicy}`,
    );
  }
  const r = spec.resources;
  if (r) {
    checkRange("spec.resources.cpu_millicores", r.cpuMillicores, 0, LIMITS.maxCpuMillicores);
    checkRange("spec.resources.memory_bytes", r.memoryBytes, 0, LIMITS.maxMemoryBytes);
    checkRange("spec.resources.disk_bytes", r.diskBytes, 0, Number.MAX_SAFE_INTEGER);
    if (r.accelerator) {
      checkRange("spec.resources.accelerator.count", r.accelerator.count, 0, 4096);
      if (r.accelerator.variant.length > LIMITS.maxVariantLength) {
        throw new InvalidArgumentError(
          "spec.resources.accelerator.variant",
          `at most ${LIMITS.maxVariantLength} characters (got ${r.accelerator.variant.length})`,
        );
      }
      if (!(r.accelerator.type in AcceleratorType)) {
        throw new InvalidArgumentError(
          "spec.resources.accelerator.type",
          `unknown accelerator type ${r.accelerator.type}`,
        );
      }
    }
  }
  const envKeys = Object.keys(spec.env);
  if (envKeys.length > LIMITS.maxEnvEntries) {
    throw new InvalidArgumentError(
      "spec.env",
      `at most ${LIMITS.maxEnvEntries} entries (got ${envKeys.length})`,
    );
  }
  for (const k of envKeys) {
    if (k.length > LIMITS.maxEnvKeyLength || !ENV_KEY.test(k)) {
      throw new InvalidArgumentError(
        `spec.env.${k.slice(0, 40)}`,
        "must be a valid environment variable name",
      );
    }
    if ((spec.env[k] ?? "").includes("\0")) {
      throw new InvalidArgumentError(`spec.env.${k}`, "must not contain NUL characters");
    }
    // The task receives it as one "KEY=VALUE" string.
    const n = utf8Length(`${k}=${spec.env[k] ?? ""}`) + 1;
    if (n > LIMITS.maxExecStringBytes) {
      throw new InvalidArgumentError(
        `spec.env.${k}`,
        `"${k}=<value>" is ${n} bytes with its NUL; exec takes at most ` +
          `${LIMITS.maxExecStringBytes} bytes per variable (MAX_ARG_STRLEN), so the value may ` +
          `have at most ${LIMITS.maxExecStringBytes - k.length - 2} bytes`,
      );
    }
  }
  checkExecSize(spec);
  if (spec.constraints.length > LIMITS.maxConstraints) {
    throw new InvalidArgumentError(
      "spec.constraints",
      `at most ${LIMITS.maxConstraints} (got ${spec.constraints.length})`,
    );
  }
  spec.constraints.forEach((c, i) => {
    const field = `spec.constraints[${i}]`;
    if (!c.key) throw new InvalidArgumentError(`${field}.key`, "must not be empty");
    if (c.key.length > LIMITS.maxConstraintKeyLength) {
      throw new InvalidArgumentError(
        `${field}.key`,
        `at most ${LIMITS.maxConstraintKeyLength} characters (got ${c.key.length})`,
      );
    }
    if (c.op === ConstraintOp.UNSPECIFIED) {
      throw new InvalidArgumentError(`${field}.op`, "must be set");
    }
    if (!(c.op in ConstraintOp)) {
      throw new InvalidArgumentError(`${field}.op`, `unknown operator ${c.op}`);
    }
    if (c.values.length > LIMITS.maxConstraintValues) {
      throw new InvalidArgumentError(
        `${field}.values`,
        `at most ${LIMITS.maxConstraintValues} (got ${c.values.length})`,
      );
    }
    for (const v of [c.value, ...c.values]) {
      const k = v?.kind;
      if (k?.case === "stringValue" && k.value.length > LIMITS.maxConstraintValueLength) {
        throw new InvalidArgumentError(
          `${field}.value`,
          `strings of at most ${LIMITS.maxConstraintValueLength} characters`,
        );
      }
    }
  });
  if (spec.ports.length > LIMITS.maxPorts) {
    throw new InvalidArgumentError(
      "spec.ports",
      `at most ${LIMITS.maxPorts} (got ${spec.ports.length})`,
    );
  }
  spec.ports.forEach((p, i) => {
    if (!PORT_NAME.test(p)) {
      throw new InvalidArgumentError(
        `spec.ports[${i}]`,
        `must be a name like "http" (got ${JSON.stringify(p.slice(0, 40))})`,
      );
    }
  });
  if (new Set(spec.ports).size !== spec.ports.length) {
    throw new InvalidArgumentError("spec.ports", "names must be unique");
  }
  checkRange("spec.max_retries_failure", spec.maxRetriesFailure, 0, LIMITS.maxRetries);
  if (spec.maxRetriesPreemption !== undefined) {
    checkRange("spec.max_retries_preemption", spec.maxRetriesPreemption, 0, LIMITS.maxRetries);
  }
  checkRange("spec.max_task_failures", spec.maxTaskFailures, 0, LIMITS.maxReplicas);
  checkRange("spec.timeout_ms", spec.timeoutMs, 0, LIMITS.maxTimeoutMs);
  checkRange("spec.scheduling_timeout_ms", spec.schedulingTimeoutMs, 0, LIMITS.maxTimeoutMs);
  if (spec.reservation.length > LIMITS.maxReservationEntries) {
    throw new InvalidArgumentError(
      "spec.reservation",
      `at most ${LIMITS.maxReservationEntries} entries (got ${spec.reservation.length})`,
    );
  }
  spec.reservation.forEach((e, i) => {
    const f = `spec.reservation[${i}]`;
    const r = e.resources;
    if (r) {
      checkRange(`${f}.resources.cpu_millicores`, r.cpuMillicores, 0, LIMITS.maxCpuMillicores);
      checkRange(`${f}.resources.memory_bytes`, r.memoryBytes, 0, LIMITS.maxMemoryBytes);
      if (r.accelerator) {
        checkRange(`${f}.resources.accelerator.count`, r.accelerator.count, 0, 4096);
        if (!(r.accelerator.type in AcceleratorType)) {
          throw new InvalidArgumentError(
            `${f}.resources.accelerator.type`,
            `unknown accelerator type ${r.accelerator.type}`,
          );
        }
      }
    }
    if (e.constraints.length > LIMITS.maxConstraints) {
      throw new InvalidArgumentError(
        `${f}.constraints`,
        `at most ${LIMITS.maxConstraints} (got ${e.constraints.length})`,
      );
    }
    e.constraints.forEach((c, j) => {
      if (!c.key) throw new InvalidArgumentError(`${f}.constraints[${j}].key`, "must not be empty");
      if (c.op === ConstraintOp.UNSPECIFIED) {
        throw new InvalidArgumentError(`${f}.constraints[${j}].op`, "must be set");
      }
    });
  });
  if (spec.coscheduling?.groupBy && !/^[A-Za-z0-9:._-]+$/.test(spec.coscheduling.groupBy)) {
    throw new InvalidArgumentError(
      "spec.coscheduling.group_by",
      `must be an attribute name (got ${JSON.stringify(spec.coscheduling.groupBy.slice(0, 40))})`,
    );
  }
}
