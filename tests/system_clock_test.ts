/** The real clock (src/time.ts systemClock): wall time with sub-millisecond resolution. */
import { assert, assertEquals, assertRejects } from "./_helpers/assert.ts";
import { ms, nextTurn, systemClock } from "../src/time.ts";

Deno.test("systemClock.now: the wall clock with sub-millisecond resolution", () => {
  const before = Date.now();
  const stamps = Array.from({ length: 50 }, () => systemClock.now());
  const after = Date.now();
  for (const t of stamps) {
    assert(t >= before && t < after + 1, `${t} outside [${before}, ${after}]`);
  }
  // Whole milliseconds (Date.now()) would make every stamp an integer.
  assert(stamps.some((t) => !Number.isInteger(t)), `only whole milliseconds: ${stamps}`);
});

Deno.test("systemClock.sleep(0): the event loop's next turn, not a zero-delay timer", async () => {
  // Deno fires a zero-delay setTimeout after ~2 ms: a zero-length sleep must not use one.
  const timers: unknown[] = [];
  const realSetTimeout = globalThis.setTimeout;
  const order: string[] = [];
  queueMicrotask(() => order.push("microtask"));
  globalThis.setTimeout = ((fn: () => void, delay?: number) => {
    timers.push(delay);
    return realSetTimeout(fn, delay);
  }) as typeof setTimeout;
  let zero: Promise<void>, negative: Promise<void>;
  try {
    zero = systemClock.sleep(ms(0));
    negative = systemClock.sleep(ms(-5));
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
  await zero;
  order.push("sleep");
  await negative;
  assertEquals(timers, [], "timers set by zero-length sleeps");
  assertEquals(order, ["microtask", "sleep"]);
});

Deno.test("nextTurn: an aborted signal rejects with its reason, before or during the wait", async () => {
  const before = new AbortController();
  before.abort(new Error("stopped before"));
  await assertRejects(() => nextTurn(before.signal), /stopped before/);
  const during = new AbortController();
  let resolved = false;
  const waiting = nextTurn(during.signal).then(() => resolved = true);
  during.abort(new Error("stopped during"));
  await assertRejects(() => waiting, /stopped during/);
  // The turn it was waiting for comes and goes without it (its immediate was cleared: the test's
  // sanitizers would also see one left behind).
  await nextTurn();
  assertEquals(resolved, false);
});
