/** Assertions for tests: node:assert/strict under the names our tests use. */
import assertStrict from "node:assert/strict";

/** Fails unless `cond` is truthy. */
export function assert(cond: unknown, message?: string): asserts cond {
  assertStrict.ok(cond, message);
}

/** Deep strict equality. */
export function assertEquals<T>(
  actual: unknown,
  expected: T,
  message?: string,
): asserts actual is T {
  assertStrict.deepStrictEqual(actual, expected, message);
}

/** Fails unless `text` matches `re`. */
export function assertMatch(text: string, re: RegExp, message?: string): void {
  assertStrict.match(text, re, message);
}

/** Fails unless `fn` rejects; returns the error. */
export async function assertRejects(fn: () => Promise<unknown>, match?: RegExp): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    if (match) assertStrict.match(err instanceof Error ? err.message : String(err), match);
    return err as Error;
  }
  throw new assertStrict.AssertionError({ message: "expected a rejection" });
}
