/**
 * Connect-level access control: a request gate that authenticates the bearer token before the
 * request body is read, and the context keys handlers read the caller from.
 * @module
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { PermissionDeniedError, UnauthenticatedError } from "../errors.ts";
import { type AuthPolicy, bearerToken, type Principal, principalOf } from "./tokens.ts";

/** The authenticated caller; undefined when auth is off. */
export const PRINCIPAL = createContextKey<Principal | undefined>(undefined, {
  description: "iris principal",
});

/** The peer's address ("10.0.0.3"), set by serveRpc; "" when unknown (defined by src/rpc). */
export { PEER_ADDRESS } from "../rpc/mod.ts";

/** Decides whether a principal may call a method (by its proto name, "LaunchJob"). */
export type MethodRule = (method: string, principal: Principal) => boolean;

/** ControllerService methods only workers call; a user token must not pose as a worker. */
const WORKER_METHODS = new Set(["RegisterWorker", "Heartbeat"]);
/** ControllerService methods a worker token may call besides WORKER_METHODS. */
const WORKER_ALSO = new Set(["GetBundle"]);

/** Who may call ControllerService methods: workers the worker RPCs, users and admins the rest. */
export const controllerRule: MethodRule = (method, p) =>
  p.role === "enrolment"
    ? method === "EnrolWorker"
    : p.role === "worker"
    ? WORKER_METHODS.has(method) || WORKER_ALSO.has(method)
    : !WORKER_METHODS.has(method) && method !== "EnrolWorker";

/** Who may call WorkerService methods: the controller, which holds the worker token. */
export const workerRule: MethodRule = (_method, p) => p.role === "worker";

/**
 * The request gate for a service under `policy`, or undefined when auth is off. A missing or
 * unknown token is Unauthenticated; a valid token of the wrong role is PermissionDenied. Messages
 * never contain the token.
 */
export function authGate(
  policy: AuthPolicy,
  rule: MethodRule,
  /** Tokens besides the policy's (API keys, looked up on every request). */
  lookup?: (token: string) => Principal | undefined,
): ((ctx: HandlerContext) => void) | undefined {
  if (policy.mode === "none") return undefined;
  return (ctx) => {
    const token = bearerToken(ctx.requestHeader.get("authorization"));
    if (token === "") {
      throw new UnauthenticatedError(
        "authentication required: send a bearer token (IRIS_TOKEN or --token-file)",
      );
    }
    const principal = principalOf(policy, token) ?? lookup?.(token);
    if (!principal) throw new UnauthenticatedError("invalid token");
    if (!rule(ctx.method.name, principal)) {
      throw new PermissionDeniedError(
        `${principal.role} ${principal.user} may not call ${ctx.method.name}`,
      );
    }
    ctx.values.set(PRINCIPAL, principal);
  };
}
