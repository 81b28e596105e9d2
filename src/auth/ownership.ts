/**
 * Who owns a job and who may act on it. With auth on, a job belongs to the user of the token that
 * submitted it and lives under "/<user>/"; without auth (principal undefined) nothing changes.
 * @module
 */
import { InvalidArgumentError, PermissionDeniedError } from "../errors.ts";
import type { JobSpec } from "../rpc/gen/iris/v1/types_pb.ts";
import type { Principal } from "./tokens.ts";

/** The user a job id belongs to: its first segment ("/alice/train/eval" → "alice"). */
export function jobOwner(jobId: string): string {
  return jobId.split("/")[1] ?? "";
}

/**
 * Binds a submitted spec to the caller: sets `spec.user` to the token's user (an admin may name
 * another user), refuses a different user, a full name or parent outside the user's tree, and
 * scopes the request id to the user so two users' retries never collide. Returns the request id.
 */
export function authorizeLaunch(
  principal: Principal | undefined,
  spec: JobSpec,
  requestId: string,
): string {
  if (!principal) return requestId;
  const user = principal.role === "admin" && spec.user ? spec.user : principal.user;
  if (spec.user && spec.user !== user) {
    throw new PermissionDeniedError(
      `spec.user: ${principal.user} may not submit jobs as ${
        JSON.stringify(spec.user.slice(0, 64))
      }`,
    );
  }
  spec.user = user;
  const root = `/${user}/`;
  if (spec.name.startsWith("/") && !spec.name.startsWith(root)) {
    throw new PermissionDeniedError(`spec.name: jobs of ${user} must be under ${root}`);
  }
  if (spec.parentJobId && !spec.parentJobId.startsWith(root)) {
    throw new PermissionDeniedError(`spec.parent_job_id: jobs of ${user} must be under ${root}`);
  }
  if (requestId.length > 256) {
    throw new InvalidArgumentError("request_id", "at most 256 characters");
  }
  return requestId ? `${user}:${requestId}` : "";
}

/**
 * Throws PermissionDeniedError unless `principal` may `action` (terminate, register endpoints
 * for) the job `jobId`: its owner or an admin.
 */
export function authorizeJobAction(
  principal: Principal | undefined,
  jobId: string,
  action = "terminate",
): void {
  if (!principal || principal.role === "admin") return;
  if (principal.role === "user" && jobOwner(jobId) === principal.user) return;
  throw new PermissionDeniedError(
    `${principal.user} may not ${action} ${jobId.slice(0, 300)}: it belongs to ${
      jobOwner(jobId).slice(0, 64)
    }`,
  );
}

/** Longest endpoint name accepted (after a relative name is placed under its job). */
export const MAX_ENDPOINT_NAME = 1024;

/**
 * The name an endpoint is stored under. Names live under their owner, so nobody can plant an
 * address under another user's name: a relative name ("coord") goes under the registering task's
 * job id ("/alice/train/coord"); an absolute one must be under the job's owner ("/alice/…").
 * @throws PermissionDeniedError for an absolute name outside `/<owner>/`, InvalidArgumentError
 *   for an empty, over-long or NUL-carrying name.
 */
export function endpointName(name: string, jobId: string): string {
  const full = name.startsWith("/") ? name : `${jobId}/${name}`;
  if (name === "" || name.includes("\0") || full.length > MAX_ENDPOINT_NAME) {
    throw new InvalidArgumentError(
      "name",
      `must be non-empty, without NUL, at most ${MAX_ENDPOINT_NAME} characters with its job id`,
    );
  }
  const root = `/${jobOwner(jobId)}/`;
  if (!full.startsWith(root) || full.length === root.length) {
    throw new PermissionDeniedError(
      `name: endpoints of ${jobId.slice(0, 300)} must be under ${root.slice(0, 80)} (got ${
        JSON.stringify(full.slice(0, 200))
      }); a name without a leading / goes under the job's id`,
    );
  }
  return full;
}

/**
 * Whether a lookup may return an endpoint: its name lies under the owner of the job that
 * registered it (entries stored before names were owned may not).
 */
export function endpointTrusted(e: { name: string; jobId: string }): boolean {
  return e.name.startsWith(`/${jobOwner(e.jobId)}/`);
}
