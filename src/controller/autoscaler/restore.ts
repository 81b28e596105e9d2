/**
 * The autoscaler after a controller restart: merges what it saved in the state store
 * (store.ts) with what the platform lists. Pure: no platform calls, no clock.
 * @module
 */
import type { GroupState, SliceState } from "../../types.ts";
import type { SliceInfo } from "../../platform/mod.ts";
import type { PersistedAutoscaler, PersistedSlice } from "../store.ts";

/** The slices and group states to start from, and what happened to each slice. */
export interface RestoredAutoscaler {
  readonly slices: PersistedSlice[];
  readonly groups: GroupState[];
  /** One line per slice: adopted, restored, or dropped, and why (for the action log). */
  readonly notes: { sliceId: string; group: string; action: string; reason: string }[];
}

/**
 * Rules: the platform's listing decides which slices exist; the saved state supplies what the
 * listing cannot (lifecycle state, idle time, errors) and the groups' backoff and cooldown
 * timestamps. When the listing failed (`listed` undefined), every saved slice is kept, so a
 * slice that exists is never created twice. A slice saved as requesting is booting now (its
 * creation call died with the old controller); one saved as terminating is failed, so it is
 * terminated again.
 */
export function restoreAutoscaler(
  saved: PersistedAutoscaler | undefined,
  listed: readonly SliceInfo[] | undefined,
  groupNames: ReadonlySet<string>,
): RestoredAutoscaler {
  const notes: RestoredAutoscaler["notes"] = [];
  const savedById = new Map((saved?.slices ?? []).map((s) => [s.state.sliceId, s]));
  const slices: PersistedSlice[] = [];
  const resume = (s: PersistedSlice, workerIds: readonly string[]): PersistedSlice => {
    const state: SliceState["state"] = s.state.state === "requesting"
      ? "booting"
      : s.state.state === "terminating"
      ? "failed"
      : s.state.state;
    return { ...s, state: { ...s.state, state, workerIds: [...workerIds] }, workerIds };
  };
  if (listed) {
    for (const info of listed) {
      if (!groupNames.has(info.scaleGroup)) continue;
      const workerIds = info.vms.map((v) => v.workerId);
      const known = savedById.get(info.sliceId);
      savedById.delete(info.sliceId);
      if (known) {
        slices.push(resume(known, workerIds.length ? workerIds : known.workerIds));
        notes.push({
          sliceId: info.sliceId,
          group: info.scaleGroup,
          action: "restore",
          reason: `saved as ${known.state.state}, listed by the platform`,
        });
      } else {
        slices.push({
          state: {
            sliceId: info.sliceId,
            group: info.scaleGroup,
            state: "booting",
            createdAt: info.createdAt,
            workerIds,
          },
          workerIds,
        });
        notes.push({
          sliceId: info.sliceId,
          group: info.scaleGroup,
          action: "adopt",
          reason: "found at start",
        });
      }
    }
    for (const gone of savedById.values()) {
      notes.push({
        sliceId: gone.state.sliceId,
        group: gone.state.group,
        action: "forget",
        reason: `saved as ${gone.state.state}, no longer listed by the platform`,
      });
    }
  } else {
    for (const s of savedById.values()) {
      if (!groupNames.has(s.state.group)) continue;
      slices.push(resume(s, s.workerIds));
      notes.push({
        sliceId: s.state.sliceId,
        group: s.state.group,
        action: "restore",
        reason: `saved as ${s.state.state}; the platform could not list slices`,
      });
    }
  }
  const groups = (saved?.groups ?? []).filter((g) => groupNames.has(g.name));
  return { slices, groups, notes };
}
