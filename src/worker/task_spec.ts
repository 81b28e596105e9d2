/**
 * Pure construction of what a task attempt runs with: its environment, the `deno run` command of a
 * module task, its directory name. Plus the copy of a fetched bundle into the task directory.
 * @module
 */
import { InvalidArgumentError } from "../errors.ts";
import type { ModuleEntrypoint } from "../rpc/gen/iris/v1/types_pb.ts";
import { portEnvName } from "./ports.ts";
import { REAP_TAG_ENV } from "./reaper.ts";

/** PATH given to tasks whose environment does not set one. */
export const DEFAULT_TASK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Options for {@linkcode buildTaskEnv}. */
export interface TaskEnvOptions {
  /** The attempt's directory: also HOME and IRIS_WORKDIR. */
  taskDir: string;
  /** The request's environment (job env + Iris context); wins over the defaults. */
  env: Readonly<Record<string, string>>;
  /** Named ports; become IRIS_PORT_<NAME> and win over everything. */
  ports: Readonly<Record<string, number>>;
  workerId: string;
  /** DENO_DIR for module tasks (a cache shared by the worker's tasks). @default unset */
  denoDir?: string;
  /** The task's own token (IRIS_TOKEN) when auth is on. @default unset */
  token?: string;
  /** The worker root's tag (IRIS_REAP_TAG, see reaper.ts); the job cannot change it. @default unset */
  reapTag?: string;
}

/**
 * Variables a job's env may not set: they would point the task's tools at the worker's or
 * controller's secrets, or change how the worker runs the task.
 */
const RESERVED_ENV = new Set([
  "IRIS_TOKEN",
  "IRIS_TOKEN_FILE",
  "IRIS_WORKER_TOKEN",
  "IRIS_WORKER_TOKEN_FILE",
  REAP_TAG_ENV,
]);

/**
 * The complete environment of a task: nothing is inherited from the worker process, so the
 * worker's own secrets (its token, cloud credentials in its env) never reach a task.
 * Order of precedence: IRIS_PORT_*, IRIS_TOKEN, IRIS_REAP_TAG > request env > PATH/HOME/LANG/TZ/
 * TMPDIR/IRIS_WORKDIR/IRIS_WORKER_ID defaults. Token and tag variables in the request env are
 * dropped.
 */
export function buildTaskEnv(options: TaskEnvOptions): Record<string, string> {
  const env: Record<string, string> = {
    PATH: DEFAULT_TASK_PATH,
    HOME: options.taskDir,
    LANG: "C.UTF-8",
    TZ: "UTC",
    // Temporary files count against the task's disk_bytes and go away with its directory.
    TMPDIR: `${options.taskDir}/tmp`,
    IRIS_WORKDIR: options.taskDir,
    IRIS_WORKER_ID: options.workerId,
  };
  if (options.denoDir) {
    env.DENO_DIR = options.denoDir;
    env.NO_COLOR = "1";
  }
  for (const [k, v] of Object.entries(options.env)) if (!RESERVED_ENV.has(k)) env[k] = v;
  if (options.token) env.IRIS_TOKEN = options.token;
  if (options.reapTag) env[REAP_TAG_ENV] = options.reapTag;
  for (const [name, port] of Object.entries(options.ports)) env[portEnvName(name)] = String(port);
  return env;
}

/** Options for {@linkcode moduleArgv}. */
export interface ModuleArgvOptions {
  /** The deno executable (`Deno.execPath()`). */
  denoPath: string;
  module: ModuleEntrypoint;
  /** The attempt's directory; holds the bundle copy when there is a bundle. */
  taskDir: string;
  /** True when the bundle was copied into `taskDir`; then `module.path` is relative to it. */
  hasBundle: boolean;
  /** The controller's URL; its host:port is the only default network permission. */
  controllerUrl: string;
  /** The task's allocated ports; it may listen on them. */
  ports: readonly number[];
  /**
   * Paths no read or write permission may cover (the worker's directory with every other task's,
   * token files, controller state); the task's own directory is always allowed. @default none
   */
  protectedPaths?: readonly string[];
}

/**
 * The argv of a module task: `deno run --no-config --no-prompt` with read of the task dir (and,
 * without a bundle, the module's own directory), write of the task dir, net to the controller and
 * the task's ports, all env (the environment is already clean), plus the job's extra permissions.
 * A permission list containing "*" grants that permission fully.
 * @throws {InvalidArgumentError} on a module path that is absolute inside a bundle, escapes it with
 *   "..", is relative without a bundle, or a permission value containing a comma
 */
export function moduleArgv(options: ModuleArgvOptions): string[] {
  const { module, taskDir } = options;
  const extra = module.permissions;
  let entry: string;
  const read = [taskDir];
  if (options.hasBundle) {
    entry = `${taskDir}/${bundleRelativePath(module.path)}`;
  } else {
    if (!module.path.startsWith("/")) {
      throw new InvalidArgumentError(
        "entrypoint.module.path",
        `must be absolute when the job has no bundle: current value is "${module.path}"`,
      );
    }
    entry = module.path;
    read.push(module.path.slice(0, module.path.lastIndexOf("/")) || "/");
  }
  const guard = protectedPathCheck(taskDir, options.protectedPaths ?? []);
  guard("entrypoint.module.path", read.slice(1));
  // Deno checks the path a task names without resolving symlinks: a granted link is granted
  // where it pointed when checked, and under its own name.
  const extraRead = withResolved(extra?.read ?? [], guard("permissions.read", extra?.read ?? []));
  const extraWrite = withResolved(
    extra?.write ?? [],
    guard("permissions.write", extra?.write ?? []),
  );
  const net: string[] = [];
  try {
    net.push(new URL(options.controllerUrl).host);
  } catch {
    // No usable controller URL: no default network access.
  }
  for (const port of options.ports) {
    net.push(`127.0.0.1:${port}`, `0.0.0.0:${port}`, `localhost:${port}`);
  }
  return [
    options.denoPath,
    "run",
    "--no-config",
    "--no-prompt",
    ...permissionFlag("read", [...read, ...extraRead]),
    ...permissionFlag("write", [taskDir, ...extraWrite]),
    ...permissionFlag("net", [...net, ...(extra?.net ?? [])]),
    "--allow-env",
    ...permissionFlag("run", extra?.run ?? []),
    entry,
    ...module.args,
  ];
}

/** `values` plus, for each, the resolved path that differs from it. */
function withResolved(values: readonly string[], resolved: readonly string[]): string[] {
  return [...values, ...resolved.filter((r) => !values.includes(r))];
}

/**
 * A checker refusing permission paths that would reach a protected path: "*", a protected path
 * itself, anything inside one (other than the task's own directory), or any directory above one.
 * Paths are compared both as written and after resolving symlinks (of the part that exists), so
 * a link to a protected directory — or a link inside the task's directory pointing out of it —
 * is refused like the directory itself. Returns the resolved paths that differ from the values.
 */
function protectedPathCheck(
  taskDir: string,
  protectedPaths: readonly string[],
): (field: string, values: readonly string[]) => string[] {
  const own = [...new Set([normalize(taskDir), realPath(normalize(taskDir))])];
  const guarded = [
    ...new Set(protectedPaths.filter((p) => p !== "").flatMap((p) => [normalize(p), realPath(p)])),
  ];
  return (field, values) => {
    const resolved: string[] = [];
    for (const value of values) {
      if (value === "") continue;
      const lexical = value === "*"
        ? "/"
        : normalize(value.startsWith("/") ? value : `${own[0]}/${value}`);
      const real = realPath(lexical);
      if (real !== lexical && value !== "*") resolved.push(real);
      if (guarded.length === 0) continue;
      for (const path of new Set([lexical, real])) {
        if (own.some((o) => path === o || path.startsWith(o + "/"))) continue;
        const hit = guarded.find((g) => within(path, g) || within(g, path));
        if (hit !== undefined) {
          const via = path === lexical ? "" : ` (through symlinks: ${path})`;
          throw new InvalidArgumentError(
            field,
            `${JSON.stringify(value)}${via} would give the task access to ${hit}, which holds ` +
              "other tasks' files or worker secrets; grant narrower paths",
          );
        }
      }
    }
    return resolved;
  };
}

/**
 * `path` with the symlinks of its longest existing prefix resolved (realpath(3) of what exists,
 * the rest appended as is); the normalized path itself when nothing can be resolved (e.g. this
 * thread may not read the file system).
 */
function realPath(path: string): string {
  const segments = normalize(path).split("/").filter((s) => s !== "");
  for (let n = segments.length; n >= 0; n--) {
    try {
      const base = Deno.realPathSync("/" + segments.slice(0, n).join("/"));
      const rest = segments.slice(n);
      return normalize(rest.length ? `${base}/${rest.join("/")}` : base);
    } catch {
      // Missing (or not visible): try the parent.
    }
  }
  return normalize(path);
}

/** True when `path` is `dir` or below it. */
function within(path: string, dir: string): boolean {
  return dir === "/" || path === dir || path.startsWith(dir + "/");
}

/** An absolute path without "."/".."/empty segments ("/" for the root). */
function normalize(path: string): string {
  const out: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") out.pop();
    else out.push(seg);
  }
  return "/" + out.join("/");
}

/** Normalises a module path inside a bundle ("./src/main.ts" → "src/main.ts"). */
function bundleRelativePath(path: string): string {
  const field = "entrypoint.module.path";
  if (path.startsWith("/")) {
    throw new InvalidArgumentError(
      field,
      `must be relative to the bundle: current value is "${path}"`,
    );
  }
  const segments = path.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) {
    throw new InvalidArgumentError(field, `must not contain "..": current value is "${path}"`);
  }
  if (segments.length === 0) throw new InvalidArgumentError(field, "must not be empty");
  return segments.join("/");
}

function permissionFlag(name: string, values: readonly string[]): string[] {
  const unique = [...new Set(values.filter((v) => v !== ""))];
  if (unique.length === 0) return [];
  if (unique.includes("*")) return [`--allow-${name}`];
  const bad = unique.find((v) => v.includes(","));
  if (bad !== undefined) {
    throw new InvalidArgumentError(
      `permissions.${name}`,
      `must not contain a comma: current value is "${bad}"`,
    );
  }
  return [`--allow-${name}=${unique.join(",")}`];
}

/**
 * The directory name of an attempt: a readable slug of the task id, a short hash that keeps
 * distinct ids apart, and the attempt number ("alice_train_0-1a2b3c4d_attempt_2").
 */
export function attemptDirName(taskId: string, attemptId: number): string {
  const slug = taskId.replace(/[^A-Za-z0-9.-]+/g, "_").replace(/^[_.]+/, "").replace(/_+$/, "")
    .slice(0, 80);
  return `${slug || "task"}-${fnv1a(taskId)}_attempt_${attemptId}`;
}

/** 32-bit FNV-1a of a string, as 8 hex digits. */
function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** Copies a directory tree (files, directories, symlinks as symlinks) into `to`, which must exist. */
export async function copyTree(from: string, to: string): Promise<void> {
  for await (const entry of Deno.readDir(from)) {
    const src = `${from}/${entry.name}`;
    const dst = `${to}/${entry.name}`;
    if (entry.isSymlink) {
      await Deno.symlink(await Deno.readLink(src), dst);
    } else if (entry.isDirectory) {
      await Deno.mkdir(dst);
      await copyTree(src, dst);
    } else if (entry.isFile) {
      await Deno.copyFile(src, dst);
    }
  }
}
