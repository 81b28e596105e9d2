/**
 * Per-client rate limits on chosen RPC methods: a token bucket per caller (the authenticated
 * user, else the peer address). Over the limit, calls fail with ResourceExhausted at once.
 * @module
 */
import type { Interceptor } from "@connectrpc/connect";
import { ResourceExhaustedError } from "../errors.ts";
import { PEER_ADDRESS, PRINCIPAL } from "./gate.ts";

/** A rate limit: `burst` calls at once, refilled at `perSecond`. */
export interface RateLimit {
  readonly perSecond: number;
  readonly burst: number;
}

/** Token buckets by key. Time is passed in, so tests need no clock. */
export class RateLimiter {
  readonly #limit: RateLimit;
  readonly #buckets = new Map<string, { tokens: number; atMs: number }>();
  /** Keys kept before the oldest buckets are dropped, so a flood of peers cannot grow memory. */
  readonly #maxKeys: number;

  constructor(limit: RateLimit, maxKeys = 10_000) {
    if (!(limit.perSecond > 0) || !(limit.burst >= 1)) {
      throw new RangeError("rate limit needs per_second > 0 and burst >= 1");
    }
    this.#limit = limit;
    this.#maxKeys = maxKeys;
  }

  /** Takes one call for `key` at `nowMs`; false when the bucket is empty. */
  take(key: string, nowMs: number): boolean {
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= this.#maxKeys) {
        const oldest = this.#buckets.keys().next().value;
        if (oldest !== undefined) this.#buckets.delete(oldest);
      }
      b = { tokens: this.#limit.burst, atMs: nowMs };
      this.#buckets.set(key, b);
    }
    const elapsed = Math.max(0, nowMs - b.atMs) / 1000;
    b.tokens = Math.min(this.#limit.burst, b.tokens + elapsed * this.#limit.perSecond);
    b.atMs = nowMs;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

/** An interceptor limiting `methods` (proto names, "LaunchJob") per caller. */
export function rateLimitInterceptor(
  methods: readonly string[],
  limit: RateLimit,
  now: () => number = Date.now,
): Interceptor {
  const limiter = new RateLimiter(limit);
  const limited = new Set(methods);
  return (next) => (req) => {
    if (limited.has(req.method.name)) {
      const principal = req.contextValues.get(PRINCIPAL);
      const key = principal
        ? `user:${principal.user}`
        : `peer:${req.contextValues.get(PEER_ADDRESS)}`;
      if (!limiter.take(key, now())) {
        throw new ResourceExhaustedError(
          `${req.method.name} rate limit exceeded for ${key} (${limit.perSecond}/s, burst ${limit.burst}): retry later`,
        );
      }
    }
    return next(req);
  };
}
