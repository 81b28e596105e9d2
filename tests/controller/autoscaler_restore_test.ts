/** restoreAutoscaler: saved autoscaler state merged with the platform's listing after a restart. */
import { assertEquals } from "../_helpers/assert.ts";
import { restoreAutoscaler } from "../../src/controller/autoscaler/restore.ts";
import type { PersistedAutoscaler, PersistedSlice } from "../../src/controller/store.ts";
import type { SliceInfo } from "../../src/platform/platform.ts";
import type { SliceLifecycle } from "../../src/types.ts";
import type { Timestamp } from "../../src/time.ts";

const ts = (n: number) => n as Timestamp;

function saved(id: string, state: SliceLifecycle, group = "cpu"): PersistedSlice {
  return {
    state: {
      sliceId: id,
      group,
      state,
      createdAt: ts(1),
      idleSince: ts(2),
      workerIds: [`${id}-w0`],
    },
    workerIds: [`${id}-w0`],
  };
}

function listed(id: string, group = "cpu"): SliceInfo {
  return {
    sliceId: id,
    scaleGroup: group,
    zone: "local",
    state: "ready",
    vms: [{ vmId: `${id}-w0`, workerId: `${id}-w0`, address: "", state: "ready", attributes: {} }],
    createdAt: ts(1),
    labels: {},
  };
}

const groups = new Set(["cpu"]);
const state: PersistedAutoscaler = {
  slices: [saved("ready", "ready"), saved("req", "requesting"), saved("term", "terminating")],
  groups: [
    { name: "cpu", consecutiveFailures: 3, backoffUntil: ts(50), lastScaleUp: ts(40) },
    { name: "removed-group", consecutiveFailures: 1 },
  ],
};

Deno.test("restoreAutoscaler: listed slices keep their saved state; unknown ones are adopted; gone ones forgotten", () => {
  const r = restoreAutoscaler(state, [listed("ready"), listed("term"), listed("new")], groups);
  const byId = Object.fromEntries(r.slices.map((s) => [s.state.sliceId, s.state]));
  assertEquals(Object.keys(byId).sort(), ["new", "ready", "term"]);
  assertEquals(byId.ready!.state, "ready");
  assertEquals(byId.ready!.idleSince, ts(2));
  assertEquals(byId.term!.state, "failed", "an interrupted termination is retried");
  assertEquals(byId.new!.state, "booting");
  assertEquals(r.notes.map((n) => `${n.action} ${n.sliceId}`).sort(), [
    "adopt new",
    "forget req",
    "restore ready",
    "restore term",
  ]);
  assertEquals(r.groups, [state.groups[0]!], "group backoff and cooldown survive");
});

Deno.test("restoreAutoscaler: when the platform cannot list slices every saved slice is kept", () => {
  const r = restoreAutoscaler(state, undefined, groups);
  assertEquals(
    r.slices.map((s) => [s.state.sliceId, s.state.state]),
    [["ready", "ready"], ["req", "booting"], ["term", "failed"]],
  );
});

Deno.test("restoreAutoscaler: without saved state it adopts what the platform lists", () => {
  const r = restoreAutoscaler(undefined, [listed("a"), listed("x", "other-group")], groups);
  assertEquals(r.slices.map((s) => [s.state.sliceId, s.state.state]), [["a", "booting"]]);
  assertEquals(r.groups, []);
});
