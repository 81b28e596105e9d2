/**
 * Authentication and authorization: tokens, the Connect request gate, rate limits, and job
 * ownership rules. See docs/security.md.
 * @module
 */
export * from "./tokens.ts";
export * from "./gate.ts";
export * from "./rate_limit.ts";
export * from "./ownership.ts";
export { requireAdmin } from "./admin.ts";
