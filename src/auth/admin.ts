/**
 * Admin-only operations (operator tools that reach beyond one's own jobs: raw SQL, process status,
 * the transactions log). Without auth everyone is an operator.
 * @module
 */
import { PermissionDeniedError } from "../errors.ts";
import type { Principal } from "./tokens.ts";

/** Throws PermissionDeniedError unless auth is off or `principal` is an admin. */
export function requireAdmin(principal: Principal | undefined, what: string): void {
  if (!principal || principal.role === "admin") return;
  throw new PermissionDeniedError(`${principal.user} may not ${what}: it needs an admin token`);
}
