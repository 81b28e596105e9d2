/**
 * Who is submitting: IRIS_USER, else $USER, else the OS account running this process, else
 * "anonymous" (when neither env nor sys access is permitted, as in a module task).
 * @module
 */
import { userInfo } from "node:os";

/** A user name fit for a job id segment, or undefined. */
function clean(name: string | undefined): string | undefined {
  const v = name?.trim();
  return v && !v.includes("/") ? v : undefined;
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** The OS account's name, looked up once: it may read the user database (NSS) each time. */
let osUserName: { name: string | undefined } | undefined;

function osUser(): string | undefined {
  if (osUserName) return osUserName.name;
  let name: string | undefined;
  try {
    name = userInfo().username;
  } catch {
    name = undefined;
  }
  osUserName = { name };
  return name;
}

/** The user jobs are submitted as when a request names none. */
export function defaultUser(): string {
  return envUser() ?? clean(osUser()) ?? "anonymous";
}

/**
 * The user named by the environment (IRIS_USER, else $USER), or undefined. With an API token
 * this is the whole default: the controller then takes the token's own identity, which an OS
 * account name (often "root" on a shared box) would contradict.
 */
export function envUser(): string | undefined {
  return clean(env("IRIS_USER")) ?? clean(env("USER"));
}

/** A job or task id as typed: a short name ("train", "train/0") is taken under `/<user>/`. */
export function resolveJobId(id: string, user: string = defaultUser()): string {
  return id.startsWith("/") ? id : `/${user}/${id}`;
}
