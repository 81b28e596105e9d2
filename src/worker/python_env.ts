/**
 * Python environments of tasks (docs/python.md): the interpreter a job names, a venv with its
 * dependencies built while the task is BUILDING (by the task's own step runner, so as the task's
 * user, with its limits, output in its logs), cached on the worker by the hash of its inputs,
 * shared by tasks with the same hash, evicted by size and age; then the job's setup commands.
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Environment } from "../rpc/gen/iris/v1/types_pb.ts";
import { type Duration, seconds } from "../time.ts";
import { directoryUsage } from "./disk.ts";
import { DEFAULT_TASK_PATH } from "./task_spec.ts";

/** Runs one step in the task's sandbox; resolves with its exit code and last output lines. */
export type StepRunner = (
  argv: readonly string[],
  env: PreparedEnv,
) => Promise<{ exitCode: number; tail: readonly string[] }>;

/** A setup step failed: the attempt fails (spending the failure budget) with this message. */
export class EnvironmentSetupError extends Error {
  override name = "EnvironmentSetupError";
}

/** Options for {@linkcode PythonEnvCache}. */
export interface PythonEnvCacheOptions {
  /** Cache directory (the worker's `<root>/python`). */
  rootDir: string;
  /** Venvs beyond this total size are evicted, least recently used first. @default 20 GiB */
  maxBytes?: number;
  /** Venvs unused for this long are evicted. @default 7 days */
  maxAge?: Duration;
  /** Installer: "uv" when `uv` is on the task PATH, else "pip". @default auto */
  installer?: "uv" | "pip" | "auto";
}

/** What a task's environment adds to its process environment. */
export interface PreparedEnv {
  /** Put first on the task's PATH (the venv's bin, or the `python` shim). */
  readonly pathPrefix?: string;
  /** Variables set over the job's (VIRTUAL_ENV). */
  readonly env: Record<string, string>;
}

const READY = ".iris-ready";

/** The directory of `iris_client.py` in this Iris install, put on every task's PYTHONPATH. */
export const PYTHON_CLIENT_DIR = fileURLToPath(new URL("../../python", import.meta.url));
const DEFAULT_MAX_BYTES = 20 * 1024 ** 3;

/** The worker's cache of job venvs, and the `python` shim for jobs without an environment. */
export class PythonEnvCache {
  readonly rootDir: string;
  readonly #maxBytes: number;
  readonly #maxAge: Duration;
  readonly #installer: "uv" | "pip" | "auto";
  readonly #inflight = new Map<string, Promise<void>>();
  readonly #leases = new Map<string, Set<string>>();
  #shim?: Promise<string | undefined>;

  constructor(options: PythonEnvCacheOptions) {
    this.rootDir = options.rootDir;
    this.#maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
    this.#maxAge = options.maxAge ?? seconds(7 * 24 * 3600);
    this.#installer = options.installer ?? "auto";
  }

  /**
   * Prepares the environment of one attempt (`leaseKey`): without `environment`, just `python`
   * (the host's python3) on PATH; with it, the job's venv (built or reused) first on PATH, then
   * the setup commands. Throws EnvironmentSetupError naming the failed step and its output tail.
   */
  async prepare(p: {
    environment: Environment | undefined;
    taskDir: string;
    bundleId: string;
    leaseKey: string;
    user?: { uid: number; gid: number };
    run: StepRunner;
    system: (message: string) => void;
  }): Promise<PreparedEnv> {
    const e = p.environment;
    if (!e) {
      const shim = await (this.#shim ??= this.#makeShim());
      return { pathPrefix: shim, env: {} };
    }
    const { path: interpreter, identity } = await probeInterpreter(e.interpreter || "python3");
    const installer = await this.#pickInstaller();
    const reqText = e.requirementsFile
      ? await readWorkspaceFile(p.taskDir, e.requirementsFile, "environment.requirements_file")
      : "";
    const usesWorkspace = e.requirementsFile !== "" || e.installProject ||
      e.pipArgs.length > 0 || e.pip.some((s) => s.startsWith(".") || s.startsWith("/"));
    const hash = await sha256Hex(JSON.stringify({
      interpreter: identity,
      installer,
      pip: e.pip,
      reqText,
      installProject: e.installProject,
      extras: e.extras,
      pipArgs: e.pipArgs,
      // Workspace files (wheels, the project) are part of the inputs through the bundle id.
      bundle: usesWorkspace ? p.bundleId : "",
    }));
    const venv = join(this.rootDir, "venvs", hash.slice(0, 32));
    this.#lease(venv, p.leaseKey);
    const prepared = { pathPrefix: `${venv}/bin`, env: { VIRTUAL_ENV: venv } };
    const stepEnv = {
      pathPrefix: prepared.pathPrefix,
      env: { ...prepared.env, PIP_DISABLE_PIP_VERSION_CHECK: "1" },
    };
    if (await exists(join(venv, READY))) {
      p.system(`python environment ${venv} (cached)`);
      await touch(join(venv, READY));
    } else {
      let build = this.#inflight.get(venv);
      if (!build) {
        build = this.#build({ ...p, e, venv, interpreter, installer, stepEnv }).finally(() =>
          this.#inflight.delete(venv)
        );
        this.#inflight.set(venv, build);
      } else {
        p.system(`python environment ${venv}: waiting for another task building it`);
      }
      await build;
    }
    for (const [i, cmd] of e.setup.entries()) {
      p.system(`setup ${i + 1}/${e.setup.length}: ${cmd}`);
      const r = await p.run(["sh", "-c", cmd], stepEnv);
      if (r.exitCode !== 0) {
        throw new EnvironmentSetupError(
          `setup command ${JSON.stringify(cmd)} failed (exit ${r.exitCode})${tailText(r.tail)}`,
        );
      }
    }
    return prepared;
  }

  /** Ends the lease of `leaseKey` (the attempt ended): its venv may be evicted again. */
  release(leaseKey: string): void {
    for (const [venv, keys] of this.#leases) {
      keys.delete(leaseKey);
      if (keys.size === 0) this.#leases.delete(venv);
    }
  }

  /**
   * Evicts venvs not leased by a running attempt: those unused for longer than the max age, then
   * the least recently used while all together exceed the max size. Returns the evicted dirs.
   */
  async evict(now = Date.now()): Promise<string[]> {
    const dir = join(this.rootDir, "venvs");
    const entries: { path: string; used: number; bytes: number }[] = [];
    try {
      for await (const d of Deno.readDir(dir)) {
        if (!d.isDirectory) continue;
        const path = join(dir, d.name);
        if (this.#leases.has(path) || this.#inflight.has(path)) continue;
        const st = await Deno.stat(join(path, READY)).catch(() => null);
        entries.push({
          path,
          used: st?.mtime?.getTime() ?? 0,
          bytes: await directoryUsage(path).catch(() => 0),
        });
      }
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return [];
      throw err;
    }
    entries.sort((a, b) => a.used - b.used);
    let total = entries.reduce((n, e) => n + e.bytes, 0);
    const evicted: string[] = [];
    for (const e of entries) {
      if (now - e.used <= this.#maxAge && total <= this.#maxBytes) break;
      await Deno.remove(e.path, { recursive: true }).catch(() => {});
      total -= e.bytes;
      evicted.push(e.path);
    }
    return evicted;
  }

  #lease(venv: string, key: string): void {
    const keys = this.#leases.get(venv) ?? new Set();
    keys.add(key);
    this.#leases.set(venv, keys);
  }

  async #build(b: {
    e: Environment;
    venv: string;
    interpreter: string;
    installer: "uv" | "pip";
    stepEnv: PreparedEnv;
    user?: { uid: number; gid: number };
    run: StepRunner;
    system: (message: string) => void;
  }): Promise<void> {
    const { e, venv } = b;
    await Deno.mkdir(join(this.rootDir, "venvs"), { recursive: true, mode: 0o711 });
    await Deno.chmod(this.rootDir, 0o711);
    await Deno.chmod(join(this.rootDir, "venvs"), 0o711);
    await Deno.remove(venv, { recursive: true }).catch(() => {});
    await Deno.mkdir(venv, { mode: 0o755 });
    await Deno.chmod(venv, 0o755);
    // Built as the task's user (the task's sandbox), then handed back to the worker so that no
    // later task can change a venv others share.
    if (b.user) await Deno.chown(venv, b.user.uid, b.user.gid);
    const installs = e.pip.length > 0 || e.requirementsFile !== "" || e.installProject;
    const step = async (what: string, argv: string[]) => {
      b.system(`${what}: ${argv.join(" ")}`);
      const r = await b.run(argv, b.stepEnv);
      if (r.exitCode !== 0) {
        throw new EnvironmentSetupError(
          `${what} failed (exit ${r.exitCode})${tailText(r.tail)}`,
        );
      }
    };
    try {
      await step(
        `creating python environment ${venv}`,
        b.installer === "uv"
          ? ["uv", "venv", "--python", b.interpreter, venv]
          : [b.interpreter, "-m", "venv", ...(installs ? [] : ["--without-pip"]), venv],
      );
      if (installs) {
        const project = e.installProject
          ? [e.extras.length ? `.[${e.extras.join(",")}]` : "."]
          : [];
        const args = [
          ...e.pipArgs,
          ...(e.requirementsFile ? ["-r", e.requirementsFile] : []),
          ...e.pip,
          ...project,
        ];
        await step(
          `installing with ${b.installer}`,
          b.installer === "uv"
            ? ["uv", "pip", "install", "--python", `${venv}/bin/python`, ...args]
            : [`${venv}/bin/python`, "-m", "pip", "install", ...args],
        );
      }
      if (b.user) await chownTreeTo(venv, Deno.uid() ?? 0, Deno.gid() ?? 0);
      await Deno.writeTextFile(join(venv, READY), "");
    } catch (err) {
      await Deno.remove(venv, { recursive: true }).catch(() => {});
      throw err;
    }
    await this.evict().catch(() => []);
  }

  async #pickInstaller(): Promise<"uv" | "pip"> {
    if (this.#installer !== "auto") return this.#installer;
    return (await findOnPath("uv")) ? "uv" : "pip";
  }

  /**
   * `<root>/shim/python`: a script running the host's python3 (on the task PATH), so `python`
   * resolves. Never fails a task: without python3, or when it cannot be written, no shim.
   */
  async #makeShim(): Promise<string | undefined> {
    try {
      const python3 = await findOnPath("python3");
      if (!python3) return undefined;
      const dir = join(this.rootDir, "shim");
      await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
      await Deno.chmod(this.rootDir, 0o711);
      await Deno.chmod(dir, 0o755);
      // A script, not a symlink: scoped workers (local platform) may not create symlinks.
      await Deno.writeTextFile(join(dir, "python"), `#!/bin/sh\nexec ${python3} "$@"\n`);
      await Deno.chmod(join(dir, "python"), 0o755);
      return dir;
    } catch {
      return undefined;
    }
  }
}

/**
 * The request env with a prepared environment applied: its bin directory first on PATH (before
 * the PATH the job set, else the default one), its variables over the job's.
 */
export function withPythonEnv(
  reqEnv: Readonly<Record<string, string>>,
  prepared: PreparedEnv,
): Record<string, string> {
  const path = reqEnv.PATH ?? DEFAULT_TASK_PATH;
  return {
    ...reqEnv,
    ...prepared.env,
    PATH: prepared.pathPrefix ? `${prepared.pathPrefix}:${path}` : path,
    // The Python client (python/iris_client.py) of this Iris install, then the job's own.
    PYTHONPATH: reqEnv.PYTHONPATH ? `${PYTHON_CLIENT_DIR}:${reqEnv.PYTHONPATH}` : PYTHON_CLIENT_DIR,
  };
}

/**
 * The interpreter's path (absolute as given, else looked up on the task's default PATH) and its
 * identity (real path and version, part of a venv's hash). Runs it, as lookups by stat need read
 * permissions a scoped worker (local platform) lacks.
 */
export async function probeInterpreter(name: string): Promise<{ path: string; identity: string }> {
  if (name.includes("/") && !name.startsWith("/")) {
    throw new EnvironmentSetupError(
      `environment.interpreter ${JSON.stringify(name)} must be a name or an absolute path`,
    );
  }
  const path = name.startsWith("/") ? name : await findOnPath(name);
  if (!path) {
    throw new EnvironmentSetupError(
      `environment.interpreter ${JSON.stringify(name)} is not on the task PATH ` +
        `(${DEFAULT_TASK_PATH}) of this worker`,
    );
  }
  const probe = await runQuiet(path, [
    "-c",
    "import os, sys; print(os.path.realpath(sys.executable)); print(sys.version)",
  ]);
  if (probe === undefined) {
    throw new EnvironmentSetupError(
      `environment.interpreter ${path} does not run on this worker (not a Python interpreter?)`,
    );
  }
  return { path, identity: probe.trim() };
}

/** `name` on the task's default PATH (`command -v`), or undefined. */
export async function findOnPath(name: string): Promise<string | undefined> {
  const out = await runQuiet("/bin/sh", ["-c", 'command -v "$1"', "sh", name]);
  const path = out?.trim();
  return path && path.startsWith("/") ? path : undefined;
}

/** Stdout of a short command run with the task's default PATH, or undefined when it fails. */
async function runQuiet(program: string, args: string[]): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(program, {
      args,
      stdout: "piped",
      stderr: "piped",
      env: { PATH: DEFAULT_TASK_PATH },
      clearEnv: true,
      signal: AbortSignal.timeout(10_000),
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The version of `python3` tasks get ("3.11.2"), reported by workers in their attributes;
 * undefined when there is none.
 */
export async function hostPythonVersion(): Promise<string | undefined> {
  const python3 = await findOnPath("python3");
  if (!python3) return undefined;
  try {
    const out = await new Deno.Command(python3, {
      args: ["--version"],
      stdout: "piped",
      stderr: "piped",
      env: { PATH: DEFAULT_TASK_PATH },
      clearEnv: true,
      signal: AbortSignal.timeout(10_000),
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return /Python (\S+)/.exec(text)?.[1];
  } catch {
    return undefined;
  }
}

async function readWorkspaceFile(taskDir: string, rel: string, field: string): Promise<string> {
  if (rel.startsWith("/") || rel.split("/").includes("..")) {
    throw new EnvironmentSetupError(`${field} must be a path inside the workspace (got ${rel})`);
  }
  try {
    return await Deno.readTextFile(join(taskDir, rel));
  } catch {
    throw new EnvironmentSetupError(`${field}: ${rel} is not in the workspace`);
  }
}

function tailText(tail: readonly string[]): string {
  return tail.length ? `:\n${tail.slice(-20).join("\n")}` : "";
}

async function sha256Hex(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

async function touch(path: string): Promise<void> {
  const now = new Date();
  await Deno.utime(path, now, now).catch(() => {});
}

async function chownTreeTo(dir: string, uid: number, gid: number): Promise<void> {
  await Deno.chown(dir, uid, gid);
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isSymlink) continue;
    await Deno.chown(path, uid, gid);
    if (entry.isDirectory) await chownTreeTo(path, uid, gid);
  }
}
