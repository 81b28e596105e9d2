/** SharedTimer (src/time.ts): many callbacks on one setTimeout. */
import assert from "node:assert/strict";
import { ms, SharedTimer, waitFor } from "../src/time.ts";

Deno.test("SharedTimer runs each entry once when due, in order; a cancelled one never", async () => {
  const timer = new SharedTimer();
  const ran: string[] = [];
  timer.add(ms(30), () => ran.push("late"));
  const dropped = timer.add(ms(5), () => ran.push("dropped"));
  timer.add(ms(10), () => ran.push("early"));
  timer.cancel(dropped);
  timer.cancel(dropped); // again: harmless
  await waitFor(() => ran.length === 2, { timeout: ms(2000), what: "both entries to run" });
  assert.deepEqual(ran, ["early", "late"]);
});

Deno.test("SharedTimer: entries cancelled while the timer is set for them never run; a later one does", async () => {
  const timer = new SharedTimer();
  const ran: string[] = [];
  const a = timer.add(ms(5), () => ran.push("a"));
  const b = timer.add(ms(10), () => ran.push("b"));
  timer.cancel(a);
  timer.cancel(b); // the last: the timer goes
  timer.add(ms(20), () => ran.push("c")); // armed again, for c alone
  await waitFor(() => ran.length > 0, { timeout: ms(2000), what: "c to run" });
  assert.deepEqual(ran, ["c"]);
});
