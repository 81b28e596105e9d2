/**
 * Delta snapshots: a worker leaves its resource snapshot out of a heartbeat when nothing but the
 * time changed since the last one the controller acknowledged, and the controller keeps the last
 * one it got. An idle fleet's heartbeats carry no snapshot at all.
 * @module
 */
import { create, equals } from "@bufbuild/protobuf";
import { type ResourceSnapshot, ResourceSnapshotSchema } from "../rpc/gen/iris/v1/types_pb.ts";

/** `snapshot` without its timestamps (its own and each task sample's). */
function timeless(snapshot: ResourceSnapshot): ResourceSnapshot {
  return create(ResourceSnapshotSchema, {
    ...snapshot,
    timestampMs: 0,
    tasks: snapshot.tasks.map((t) => ({ ...t, timestampMs: 0 })),
  });
}

/** Whether `next` says nothing `last` did not (timestamps aside). */
export function sameSnapshot(last: ResourceSnapshot | undefined, next: ResourceSnapshot): boolean {
  if (last === undefined) return false;
  // Under load most heartbeats' snapshots differ in a total: said without copying both (#20).
  if (
    last.runningTasks !== next.runningTasks || last.tasks.length !== next.tasks.length ||
    last.cpuPercent !== next.cpuPercent || last.memoryUsedBytes !== next.memoryUsedBytes ||
    last.processCount !== next.processCount || last.devices.length !== next.devices.length
  ) {
    return false;
  }
  return equals(ResourceSnapshotSchema, timeless(last), timeless(next));
}
