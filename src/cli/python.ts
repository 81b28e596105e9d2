/**
 * `iris job run`'s Python options (--python, --pip, --requirements, --install-project, --extras,
 * --pip-arg, --setup) and its warning when the submitter's python3 differs from the workers'.
 * @module
 */
import type { EnvironmentInput, IrisClient, JobRequest } from "../client/mod.ts";
import type { WorkerInfo } from "../rpc/mod.ts";
import { bool, type OptionSpec, type Parsed, str, strs } from "./args.ts";

/** The options, spread into `job run`'s. */
export const PYTHON_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  python: {
    type: "string",
    value: "INTERPRETER",
    description:
      "Interpreter of the job's venv (a name on the task PATH like python3.12, or an absolute path)",
  },
  pip: {
    type: "string",
    value: "SPEC",
    multiple: true,
    description: "Install this requirement into the job's venv (repeat)",
  },
  requirements: {
    type: "string",
    value: "FILE",
    description: "Install the workspace's requirements file (e.g. requirements.txt)",
  },
  "install-project": {
    type: "boolean",
    description: "Install the workspace's own project (pyproject.toml) into the venv",
  },
  extras: {
    type: "string",
    value: "NAME",
    multiple: true,
    description: "Extras of --install-project (repeat)",
  },
  "pip-arg": {
    type: "string",
    value: "ARG",
    multiple: true,
    description: "Extra installer argument, e.g. --pip-arg=--find-links=wheels (repeat)",
  },
  setup: {
    type: "string",
    value: "CMD",
    multiple: true,
    description: "Shell command run in the task directory before the task, every attempt (repeat)",
  },
};

/** The job's environment from the options; undefined when none is given. */
export function environmentFromFlags(p: Parsed): EnvironmentInput | undefined {
  const env: EnvironmentInput = {
    interpreter: str(p, "python"),
    pip: strs(p, "pip"),
    requirementsFile: str(p, "requirements"),
    installProject: bool(p, "install-project"),
    extras: strs(p, "extras"),
    pipArgs: strs(p, "pip-arg"),
    setup: strs(p, "setup"),
  };
  const given = env.interpreter !== undefined || env.requirementsFile !== undefined ||
    env.installProject || [env.pip, env.extras, env.pipArgs, env.setup].some((l) => l?.length);
  return given ? env : undefined;
}

/** True when the job runs Python: a python command, or an environment. */
export function runsPython(req: JobRequest): boolean {
  return req.environment !== undefined ||
    (req.command ?? []).some((a) => /(^|\/|\s)python[0-9.]*(\s|$)/.test(a));
}

/** `python3 --version` here ("3.11.7"), or undefined when there is none. */
export async function localPythonVersion(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("python3", {
      args: ["--version"],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(10_000),
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return /Python (\S+)/.exec(text)?.[1];
  } catch {
    return undefined;
  }
}

/**
 * The warning to print when `local` differs (in major.minor) from the python_version some workers
 * report, or undefined.
 */
export function pythonMismatch(
  local: string | undefined,
  workers: readonly WorkerInfo[],
): string | undefined {
  if (!local) return undefined;
  const minor = (v: string) => v.split(".").slice(0, 2).join(".");
  const theirs = new Set<string>();
  for (const w of workers) {
    const v = w.attributes.python_version?.kind;
    if (v?.case === "stringValue" && minor(v.value) !== minor(local)) theirs.add(v.value);
  }
  if (theirs.size === 0) return undefined;
  return `warning: your python3 is ${local} but workers run python3 ${
    [...theirs].sort().join(", ")
  }; name an interpreter with --python, or make sure your code and wheels work there\n`;
}

/** Prints {@linkcode pythonMismatch}'s warning for a Python job (never fails the submit). */
export async function warnPythonMismatch(
  client: IrisClient,
  req: JobRequest,
  err: (text: string) => void,
): Promise<void> {
  if (!runsPython(req)) return;
  try {
    const warning = pythonMismatch(await localPythonVersion(), await client.workers());
    if (warning) err(warning);
  } catch {
    // Only a hint: a controller that cannot list workers still takes the job.
  }
}
