/** src/format.ts helpers not covered beside their users. */
import { isoStamper } from "../src/format.ts";
import { assertEquals } from "./_helpers/assert.ts";

Deno.test("isoStamper stamps as toISOString: fractions, negatives, second and year edges", () => {
  const stamp = isoStamper();
  const times = [
    0,
    1,
    999,
    1000,
    1000.5,
    1796299000123.456,
    -1,
    -1000.5,
    -62198755200000,
    253402300799999,
    253402300800000,
    8.64e15,
  ];
  let x = 1234567;
  for (let i = 0; i < 2000; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    times.push((x / 2147483648) * 4e12 - 1e12 + (i % 3) * 0.37);
  }
  for (const t of times) assertEquals([t, stamp(t)], [t, new Date(t).toISOString()]);
});
