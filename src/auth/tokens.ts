/**
 * Tokens and who they belong to. Tokens are opaque strings; configs and the controller keep only
 * their SHA-256 (hex), so a leaked config does not leak a usable token.
 * @module
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { InvalidArgumentError } from "../errors.ts";

/** What a caller may do: `user` manages its own jobs, `admin` any job, `worker` only worker RPCs. */
export type Role = "user" | "admin" | "worker" | "enrolment";

/** The authenticated caller of one RPC. */
export interface Principal {
  /** User name ("alice"); "worker" for the worker token; the job owner for a task token. */
  readonly user: string;
  readonly role: Role;
  /** The API key the caller used (keys live in the controller's accounts). */
  readonly keyId?: string;
}

/** One configured user token, by hash. */
export interface TokenEntry {
  /** Lower-case hex SHA-256 of the token. */
  readonly sha256: string;
  readonly user: string;
  readonly role: "user" | "admin";
}

/**
 * How RPCs are authenticated. `none` lets everyone in (local default). `token` requires a bearer
 * token: one of `tokens`, the worker token, or a task token derived from the worker token.
 */
export type AuthPolicy =
  | { readonly mode: "none" }
  | {
    readonly mode: "token";
    readonly tokens: readonly TokenEntry[];
    /** The worker token itself (the controller needs it to call workers). */
    readonly workerToken: string;
  };

/** The policy that lets everyone in. */
export const NO_AUTH: AuthPolicy = Object.freeze({ mode: "none" });

/** Lower-case hex SHA-256 of a token: what the config stores. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** A fresh random token (32 bytes, base64url). */
export function newToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

const TASK_TOKEN_PREFIX = "iris-task-v1.";
const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * The token a task of `user`'s job gets as IRIS_TOKEN: it acts as that user (submit child jobs,
 * register endpoints) and reveals nothing about the worker token it is derived from.
 */
export function taskToken(workerToken: string, user: string): string {
  return `${TASK_TOKEN_PREFIX}${user}.${taskMac(workerToken, user)}`;
}

function taskMac(workerToken: string, user: string): string {
  return createHmac("sha256", workerToken).update(`iris-task:${user}`).digest("hex");
}

function sameText(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Who `token` belongs to under `policy`, or undefined when it is not valid. */
export function principalOf(policy: AuthPolicy, token: string): Principal | undefined {
  if (policy.mode === "none") return undefined;
  if (token === "") return undefined;
  if (policy.workerToken !== "" && sameText(token, policy.workerToken)) {
    return { user: "worker", role: "worker" };
  }
  if (token.startsWith(TASK_TOKEN_PREFIX) && policy.workerToken !== "") {
    const rest = token.slice(TASK_TOKEN_PREFIX.length);
    const dot = rest.lastIndexOf(".");
    const user = rest.slice(0, dot);
    if (
      dot > 0 && USER_NAME.test(user) &&
      sameText(rest.slice(dot + 1), taskMac(policy.workerToken, user))
    ) {
      return { user, role: "user" };
    }
    return undefined;
  }
  const hash = hashToken(token);
  const entry = policy.tokens.find((t) => sameText(t.sha256, hash));
  return entry ? { user: entry.user, role: entry.role } : undefined;
}

/** The token of an `Authorization: Bearer <token>` header, or "". */
export function bearerToken(header: string | null): string {
  if (!header) return "";
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return m?.[1] ?? "";
}

/** Checks a user name as configs and tokens use it. */
export function checkUserName(field: string, user: string): void {
  if (!USER_NAME.test(user)) {
    throw new InvalidArgumentError(
      field,
      `must be 1..64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

/**
 * Reads a token from a file (trimmed). The file's content is never put in an error message.
 * @throws {InvalidArgumentError} naming `field` when the file is missing or empty
 */
export function readTokenFile(field: string, path: string): string {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    throw new InvalidArgumentError(
      field,
      `cannot read token file ${path}: ${err instanceof Error ? err.name : "error"}`,
    );
  }
  const token = text.trim();
  if (token === "" || /\s/.test(token)) {
    throw new InvalidArgumentError(field, `token file ${path} must hold one token on one line`);
  }
  return token;
}
