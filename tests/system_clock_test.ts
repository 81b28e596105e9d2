/** The real clock (src/time.ts systemClock): wall time with sub-millisecond resolution. */
import { assert } from "./_helpers/assert.ts";
import { systemClock } from "../src/time.ts";

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
