/**
 * Builds the jobs tree from hierarchical job ids ("/user/parent/child") and flattens it into
 * table rows. Pure functions; no DOM.
 * @module
 */
import { sortBy, type SortDir } from "./format.ts";

/** The fields of a job the tree needs. */
export interface TreeJob {
  readonly jobId: string;
  readonly parentJobId: string;
}

/** A job and the jobs nested under it. */
export interface TreeNode<J extends TreeJob> {
  readonly job: J;
  readonly children: TreeNode<J>[];
}

/** One visible row of the flattened tree. */
export interface TreeRow<J extends TreeJob> {
  readonly job: J;
  readonly depth: number;
  readonly childCount: number;
  readonly expanded: boolean;
  /** True when the parent is not in the list (e.g. on another page), so the full id is shown. */
  readonly orphan: boolean;
}

/**
 * Nests jobs under their parents. The parent is `parentJobId` when that job is in the list,
 * otherwise the nearest ancestor path in the list ("/a/b/c" under "/a/b" or "/a"). Jobs with
 * no parent in the list are roots. Input order is kept among siblings.
 */
export function buildJobTree<J extends TreeJob>(jobs: readonly J[]): TreeNode<J>[] {
  const nodes = new Map<string, TreeNode<J>>();
  for (const job of jobs) {
    if (!nodes.has(job.jobId)) nodes.set(job.jobId, { job, children: [] });
  }
  const roots: TreeNode<J>[] = [];
  for (const node of nodes.values()) {
    const parent = findParent(node.job, nodes);
    (parent ? parent.children : roots).push(node);
  }
  return roots;
}

function findParent<J extends TreeJob>(
  job: J,
  nodes: ReadonlyMap<string, TreeNode<J>>,
): TreeNode<J> | undefined {
  if (job.parentJobId && job.parentJobId !== job.jobId) {
    const p = nodes.get(job.parentJobId);
    if (p && !isAncestorOf(job.jobId, p.job, nodes)) return p;
  }
  let path = job.jobId;
  for (;;) {
    const i = path.lastIndexOf("/");
    if (i <= 0) return undefined;
    path = path.slice(0, i);
    const p = nodes.get(path);
    if (p) return p;
  }
}

/** Guards against cycles from inconsistent parent ids: is `id` an ancestor of `job`? */
function isAncestorOf<J extends TreeJob>(
  id: string,
  job: J,
  nodes: ReadonlyMap<string, TreeNode<J>>,
): boolean {
  const seen = new Set<string>();
  let cur: J | undefined = job;
  while (cur && !seen.has(cur.jobId)) {
    if (cur.jobId === id) return true;
    seen.add(cur.jobId);
    cur = cur.parentJobId ? nodes.get(cur.parentJobId)?.job : undefined;
  }
  return false;
}

/** Sorts siblings at every level by `key`; children stay under their parent. */
export function sortTree<J extends TreeJob>(
  roots: readonly TreeNode<J>[],
  key: (j: J) => string | number,
  dir: SortDir,
): TreeNode<J>[] {
  return sortBy(roots, (n) => key(n.job), dir).map((n) => ({
    job: n.job,
    children: sortTree(n.children, key, dir),
  }));
}

/** Visible rows in display order; children of ids in `collapsed` are hidden. */
export function flattenTree<J extends TreeJob>(
  roots: readonly TreeNode<J>[],
  collapsed: ReadonlySet<string>,
): TreeRow<J>[] {
  const rows: TreeRow<J>[] = [];
  const walk = (nodes: readonly TreeNode<J>[], depth: number) => {
    for (const n of nodes) {
      const expanded = !collapsed.has(n.job.jobId);
      rows.push({
        job: n.job,
        depth,
        childCount: n.children.length,
        expanded,
        orphan: depth === 0 && n.job.parentJobId !== "",
      });
      if (expanded) walk(n.children, depth + 1);
    }
  };
  walk(roots, 0);
  return rows;
}

/** Ids of every node that has children (for "collapse all"). */
export function parentIds<J extends TreeJob>(roots: readonly TreeNode<J>[]): string[] {
  const out: string[] = [];
  const walk = (nodes: readonly TreeNode<J>[]) => {
    for (const n of nodes) {
      if (n.children.length) {
        out.push(n.job.jobId);
        walk(n.children);
      }
    }
  };
  walk(roots);
  return out;
}
