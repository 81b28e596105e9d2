/**
 * Pure rules of the job model: which task states are terminal, how a job's state follows from
 * its tasks' states (docs/states.md), and state names for people. No I/O.
 * @module
 */
import { JobState, TaskState } from "../rpc/gen/iris/v1/types_pb.ts";

/** Task states after which the task never runs again. */
export function isTaskTerminal(state: TaskState): boolean {
  return state === TaskState.SUCCEEDED || state === TaskState.FAILED ||
    state === TaskState.KILLED ||
    state === TaskState.WORKER_FAILED || state === TaskState.UNSCHEDULABLE ||
    state === TaskState.PREEMPTED;
}

/** Task states that hold resources on a worker. */
export function isTaskActive(state: TaskState): boolean {
  return state === TaskState.ASSIGNED || state === TaskState.BUILDING ||
    state === TaskState.RUNNING;
}

/** Job states after which nothing of the job runs again. */
export function isJobTerminal(state: JobState): boolean {
  return state === JobState.SUCCEEDED || state === JobState.FAILED || state === JobState.KILLED ||
    state === JobState.WORKER_FAILED || state === JobState.UNSCHEDULABLE;
}

/** Lower-case name of a task state: "running". */
export function taskStateName(state: TaskState): string {
  return (TaskState[state] ?? "UNSPECIFIED").toLowerCase();
}

/** Lower-case name of a job state: "succeeded". */
export function jobStateName(state: JobState): string {
  return (JobState[state] ?? "UNSPECIFIED").toLowerCase();
}

/** Parses "running" / "RUNNING" into a JobState, or undefined. */
export function parseJobState(name: string): JobState | undefined {
  const key = name.toUpperCase() as keyof typeof JobState;
  const value = JobState[key];
  return typeof value === "number" && value !== JobState.UNSPECIFIED ? value : undefined;
}

/** Count of tasks per TaskState value. */
export type TaskStateCounts = Readonly<Partial<Record<TaskState, number>>>;

/** Counts task states. */
export function countTaskStates(states: readonly TaskState[]): Partial<Record<TaskState, number>> {
  const counts: Partial<Record<TaskState, number>> = {};
  for (const s of states) counts[s] = (counts[s] ?? 0) + 1;
  return counts;
}

/**
 * Derives a job's state from its tasks' states; the first matching rule wins:
 * 1. every task SUCCEEDED → SUCCEEDED
 * 2. more FAILED tasks than `maxTaskFailures` → FAILED
 * 3. any UNSCHEDULABLE → UNSCHEDULABLE
 * 4. any KILLED → KILLED
 * 5. every task terminal and some WORKER_FAILED/PREEMPTED → WORKER_FAILED
 * 6. every task terminal (failures within `maxTaskFailures`) → SUCCEEDED
 * 7. any ASSIGNED/BUILDING/RUNNING → RUNNING
 * 8. otherwise PENDING
 */
export function deriveJobState(
  counts: TaskStateCounts,
  total: number,
  maxTaskFailures: number,
): JobState {
  const c = (s: TaskState) => counts[s] ?? 0;
  const succeeded = c(TaskState.SUCCEEDED), failed = c(TaskState.FAILED);
  const lost = c(TaskState.WORKER_FAILED) + c(TaskState.PREEMPTED);
  const terminal = succeeded + failed + lost + c(TaskState.KILLED) + c(TaskState.UNSCHEDULABLE);
  if (total > 0 && succeeded === total) return JobState.SUCCEEDED;
  if (failed > maxTaskFailures) return JobState.FAILED;
  if (c(TaskState.UNSCHEDULABLE) > 0) return JobState.UNSCHEDULABLE;
  if (c(TaskState.KILLED) > 0) return JobState.KILLED;
  if (total > 0 && terminal === total && lost > 0) return JobState.WORKER_FAILED;
  if (total > 0 && terminal === total) return JobState.SUCCEEDED;
  if (c(TaskState.RUNNING) + c(TaskState.ASSIGNED) + c(TaskState.BUILDING) > 0) {
    return JobState.RUNNING;
  }
  return JobState.PENDING;
}

/**
 * The task states that decide a finished job's state (whose reason becomes the job's error):
 * FAILED for FAILED, UNSCHEDULABLE for UNSCHEDULABLE, KILLED for KILLED, WORKER_FAILED and
 * PREEMPTED for WORKER_FAILED; none otherwise.
 */
export function decidingTaskStates(state: JobState): readonly TaskState[] {
  switch (state) {
    case JobState.FAILED:
      return [TaskState.FAILED];
    case JobState.UNSCHEDULABLE:
      return [TaskState.UNSCHEDULABLE];
    case JobState.KILLED:
      return [TaskState.KILLED];
    case JobState.WORKER_FAILED:
      return [TaskState.WORKER_FAILED, TaskState.PREEMPTED];
    default:
      return [];
  }
}
