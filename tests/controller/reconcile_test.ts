/** Reconciliation (reconcile.ts): lost attempts on heartbeats and re-registration. No I/O. */
import { assertEquals } from "../_helpers/assert.ts";
import { MISSING_HEARTBEATS, Reconciler } from "../../src/controller/reconcile.ts";
import { workerTable } from "./_concern_fixtures.ts";

const res = { cpuMillicores: 100, memoryBytes: 0, accelerators: 0 };
const none = () => false;

Deno.test("reconcile: an attempt missing from two heartbeats in a row is lost; a mention resets the count", () => {
  const workers = workerTable(1);
  const w = workers.workers.get("w0")!;
  workers.commit(w, "t/0#1", res);
  workers.commit(w, "t/1#1", res);
  const r = new Reconciler();
  assertEquals(MISSING_HEARTBEATS, 2);
  assertEquals(r.lostOnHeartbeat(w, new Set(["t/0#1"]), none), []); // t/1 missing once
  assertEquals(r.lostOnHeartbeat(w, new Set(["t/1#1"]), none), []); // t/1 reset, t/0 once
  assertEquals(r.lostOnHeartbeat(w, new Set(["t/1#1"]), none), ["t/0#1"]);
  workers.release("w0", "t/0#1");
  assertEquals(r.lostOnHeartbeat(w, new Set(), none), [], "t/1 was mentioned last time");
  assertEquals(r.lostOnHeartbeat(w, new Set(), none), ["t/1#1"]);
});

Deno.test("reconcile: an attempt whose RunTask is in flight is never missing", () => {
  const workers = workerTable(1);
  const w = workers.workers.get("w0")!;
  workers.commit(w, "t/0#1", res);
  const r = new Reconciler();
  for (let i = 0; i < 3; i++) assertEquals(r.lostOnHeartbeat(w, new Set(), () => true), []);
});

Deno.test("reconcile: a re-registering worker loses what it does not list, unclaimed ones included", () => {
  const workers = workerTable(1);
  const w = workers.workers.get("w0")!;
  workers.commit(w, "t/0#1", res);
  workers.commit(w, "t/1#1", res);
  const r = new Reconciler();
  r.awaitClaim("t/2#1"); // loaded from the store, placed on w0
  r.awaitClaim("t/3#1"); // placed on another worker
  const workerOf = (k: string) => k === "t/3#1" ? "w9" : "w0";
  const lost = r.lostOnRegister(w, new Set(["t/0#1"]), none, workerOf);
  assertEquals(lost.sort(), ["t/1#1", "t/2#1"]);
  assertEquals(r.unclaimedCount, 1);
  assertEquals(r.takeUnclaimed(), ["t/3#1"]);
  assertEquals(r.unclaimedCount, 0);
});
