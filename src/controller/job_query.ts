/**
 * ListJobs as a pure query over the job table: validate the request, filter by scope, user, name
 * and state, sort, page, and count jobs per user. No I/O.
 * @module
 */
import { JobState } from "../rpc/gen/iris/v1/types_pb.ts";
import { InvalidArgumentError, NotFoundError } from "../errors.ts";
import { jobStateName } from "./job_rules.ts";
import type { JobRecord } from "./state.ts";

/** Page size when the request gives none. */
export const DEFAULT_JOB_PAGE = 500;
/** Largest page ListJobs returns. */
export const MAX_JOB_PAGE = 5000;

/** The keys ListJobs can sort by. */
export const JOB_SORT_KEYS = ["name", "state", "user", "tasks", "age", "duration"] as const;
/** One of {@linkcode JOB_SORT_KEYS}. */
export type JobSortKey = typeof JOB_SORT_KEYS[number];

/** Ascending state order: active first, then the ways a job ends. */
const STATE_RANK: readonly JobState[] = [
  JobState.RUNNING,
  JobState.BUILDING,
  JobState.PENDING,
  JobState.UNSCHEDULABLE,
  JobState.FAILED,
  JobState.WORKER_FAILED,
  JobState.KILLED,
  JobState.SUCCEEDED,
];

/** The ListJobsRequest fields the query reads. */
export interface JobQuery {
  readonly prefix: string;
  readonly states: readonly JobState[];
  readonly limit: number;
  readonly offset: number;
  readonly user: string;
  readonly nameContains: string;
  readonly sortBy: string;
  readonly descending: boolean;
  readonly parentJobId: string;
  readonly rootsOnly: boolean;
  readonly includeUserCounts: boolean;
}

/** Jobs of one user by state. */
export interface UserCounts {
  readonly user: string;
  readonly total: number;
  readonly stateCounts: Record<string, number>;
}

/** One page of jobs. */
export interface JobPage {
  readonly jobs: JobRecord[];
  readonly totalCount: number;
  readonly hasMore: boolean;
  readonly users: UserCounts[];
}

function isSortKey(key: string): key is JobSortKey {
  return (JOB_SORT_KEYS as readonly string[]).includes(key);
}

/**
 * Checks the fields that can be wrong on their own.
 * @throws {InvalidArgumentError} naming the field
 */
export function validateJobQuery(q: JobQuery): void {
  if (!Number.isInteger(q.limit) || q.limit < 0 || q.limit > MAX_JOB_PAGE) {
    throw new InvalidArgumentError(
      "limit",
      `must be between 0 and ${MAX_JOB_PAGE} (0 = ${DEFAULT_JOB_PAGE}): current value is ${q.limit}`,
    );
  }
  if (!Number.isInteger(q.offset) || q.offset < 0) {
    throw new InvalidArgumentError("offset", `must be >= 0: current value is ${q.offset}`);
  }
  if (q.sortBy && !isSortKey(q.sortBy)) {
    throw new InvalidArgumentError(
      "sort_by",
      `must be empty or one of ${JOB_SORT_KEYS.join(", ")}: current value is ${
        JSON.stringify(q.sortBy)
      }`,
    );
  }
  for (const s of q.states) {
    if (s === JobState.UNSPECIFIED || JobState[s] === undefined) {
      throw new InvalidArgumentError("states", `unknown job state ${s}`);
    }
  }
  if (q.rootsOnly && q.parentJobId) {
    throw new InvalidArgumentError(
      "roots_only",
      `cannot be combined with parent_job_id (${JSON.stringify(q.parentJobId)})`,
    );
  }
}

function sortValue(key: JobSortKey, nowMs: number): (j: JobRecord) => string | number {
  switch (key) {
    case "name":
      return (j) => j.jobId;
    case "state":
      return (j) => {
        const i = STATE_RANK.indexOf(j.state);
        return i < 0 ? STATE_RANK.length : i;
      };
    case "user":
      return (j) => j.user;
    case "tasks":
      return (j) => j.taskIds.length;
    case "age":
      return (j) => nowMs - j.submittedAtMs;
    case "duration":
      return (j) => j.startedAtMs > 0 ? (j.finishedAtMs || nowMs) - j.startedAtMs : -1;
  }
}

function compare(a: string | number, b: string | number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Runs a ListJobs query over `jobs` (in submission order).
 * @throws {InvalidArgumentError} for a malformed request
 * @throws {NotFoundError} when `parentJobId` names no job
 */
export function queryJobs(
  jobs: ReadonlyMap<string, JobRecord>,
  q: JobQuery,
  nowMs: number,
): JobPage {
  validateJobQuery(q);
  let scope: JobRecord[] | undefined;
  if (q.parentJobId) {
    const parent = jobs.get(q.parentJobId);
    if (!parent) throw new NotFoundError(`No job ${q.parentJobId}`);
    scope = [...parent.childIds].flatMap((id) => jobs.get(id) ?? []);
  }
  const needle = q.nameContains.toLowerCase();
  const states = new Set(q.states);
  // Per-user counts look at prefix and name only, so picking a user or state keeps them stable.
  const byUser = new Map<string, number[]>();
  const counted = q.includeUserCounts ? jobs.values() : [];
  for (const j of counted) {
    if (q.prefix && !j.jobId.startsWith(q.prefix)) continue;
    if (needle && !j.jobId.toLowerCase().includes(needle)) continue;
    let counts = byUser.get(j.user);
    if (!counts) byUser.set(j.user, counts = []);
    counts[j.state] = (counts[j.state] ?? 0) + 1;
  }
  const users: UserCounts[] = [];
  for (const [user, counts] of byUser) {
    const stateCounts: Record<string, number> = {};
    let total = 0;
    counts.forEach((n, state) => {
      stateCounts[jobStateName(state)] = n;
      total += n;
    });
    users.push({ user, total, stateCounts });
  }
  const limit = q.limit || DEFAULT_JOB_PAGE;
  // In submission order, only the page's matches are kept; the others are counted.
  const pageOnly = !q.sortBy && !q.descending;
  const matches: JobRecord[] = [];
  let matched = 0;
  for (const j of scope ?? jobs.values()) {
    if (q.rootsOnly && j.parentJobId) continue;
    if (q.prefix && !j.jobId.startsWith(q.prefix)) continue;
    if (q.user && j.user !== q.user) continue;
    if (states.size && !states.has(j.state)) continue;
    if (needle && !j.jobId.toLowerCase().includes(needle)) continue;
    const index = matched++;
    if (!pageOnly || (index >= q.offset && index < q.offset + limit)) matches.push(j);
  }
  let page: JobRecord[];
  if (q.sortBy) {
    const value = sortValue(q.sortBy as JobSortKey, nowMs);
    const sign = q.descending ? -1 : 1;
    const keyed = matches.map((j) => ({ j, v: value(j) }));
    const ordered = smallestSorted(
      keyed,
      q.offset + limit,
      (a, b) => sign * (compare(a.v, b.v) || compare(a.j.jobId, b.j.jobId)),
    );
    page = ordered.slice(q.offset, q.offset + limit).map((k) => k.j);
  } else if (pageOnly) {
    page = matches;
  } else {
    matches.reverse();
    page = matches.slice(q.offset, q.offset + limit);
  }
  return {
    jobs: page,
    totalCount: matched,
    hasMore: q.offset + page.length < matched,
    users: users.sort((a, b) => compare(a.user, b.user)),
  };
}

/**
 * The `k` smallest of `items` by `cmp`, in order (all of them sorted when k covers most). For
 * one page out of many jobs: a three-way quickselect moves the k smallest to the front in
 * linear time on average, then only those are sorted. Reorders `items`.
 */
export function smallestSorted<T>(items: T[], k: number, cmp: (a: T, b: T) => number): T[] {
  if (k <= 0) return [];
  if (k >= items.length / 2) return items.sort(cmp).slice(0, k);
  const swap = (i: number, j: number) => {
    const t = items[i]!;
    items[i] = items[j]!;
    items[j] = t;
  };
  let lo = 0;
  let hi = items.length - 1;
  while (lo < hi) {
    const pivot = items[lo + Math.floor(Math.random() * (hi - lo + 1))]!;
    // [lo, lt) < pivot, [lt, i) == pivot, (gt, hi] > pivot.
    let lt = lo, i = lo, gt = hi;
    while (i <= gt) {
      const c = cmp(items[i]!, pivot);
      if (c < 0) swap(lt++, i++);
      else if (c > 0) swap(i, gt--);
      else i++;
    }
    if (k - 1 < lt) hi = lt - 1;
    else if (k - 1 > gt) lo = gt + 1;
    else break;
  }
  return items.slice(0, k).sort(cmp);
}
