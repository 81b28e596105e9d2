/**
 * Hash routes of the dashboards. Ids are URL-encoded as one path segment, so
 * `#/job/%2Falice%2Ftrain` is a shareable link to job "/alice/train".
 * @module
 */

/** A controller dashboard route. */
export type Route =
  /** `query` holds the Jobs page's view (filters, sort, page) so a filtered list is a link. */
  | { readonly page: "jobs"; readonly query?: Readonly<Record<string, string>> }
  | { readonly page: "job"; readonly id: string }
  | { readonly page: "fleet" }
  | { readonly page: "worker"; readonly id: string }
  | { readonly page: "autoscaler" }
  | { readonly page: "endpoints" }
  | { readonly page: "users" }
  | { readonly page: "status" }
  | { readonly page: "usage" }
  | { readonly page: "transactions" };

/** Parses `location.hash`; unknown or empty hashes give the default (jobs). */
export function parseRoute(hash: string): Route {
  const q = hash.indexOf("?");
  const [name, id] = splitHash(q < 0 ? hash : hash.slice(0, q));
  switch (name) {
    case "job":
      return id ? { page: "job", id } : { page: "jobs" };
    case "worker":
      return id ? { page: "worker", id } : { page: "fleet" };
    case "fleet":
    case "autoscaler":
    case "endpoints":
    case "users":
    case "status":
    case "usage":
    case "transactions":
      return { page: name };
    default: {
      const query = q < 0 ? {} : Object.fromEntries(new URLSearchParams(hash.slice(q + 1)));
      return Object.keys(query).length ? { page: "jobs", query } : { page: "jobs" };
    }
  }
}

/** The hash for a route: `#/job/%2Falice%2Ftrain`, `#/jobs?user=alice&sort=age`. */
export function routeHash(route: Route): string {
  switch (route.page) {
    case "job":
    case "worker":
      return `#/${route.page}/${encodeURIComponent(route.id)}`;
    case "jobs": {
      const query = new URLSearchParams(
        Object.entries(route.query ?? {}).filter(([, v]) => v !== ""),
      ).toString();
      return query ? `#/jobs?${query}` : "#/jobs";
    }
    default:
      return `#/${route.page}`;
  }
}

/** Link to a job's detail page. */
export function jobHref(jobId: string): string {
  return routeHash({ page: "job", id: jobId });
}

/** Link to a worker's detail page. */
export function workerHref(workerId: string): string {
  return routeHash({ page: "worker", id: workerId });
}

/** A worker dashboard route. */
export type WorkerRoute = { readonly page: "tasks" } | {
  readonly page: "task";
  readonly id: string;
};

/** Parses the worker dashboard's hash (`#/tasks`, `#/task/<id>`). */
export function parseWorkerRoute(hash: string): WorkerRoute {
  const [name, id] = splitHash(hash);
  return name === "task" && id ? { page: "task", id } : { page: "tasks" };
}

/** The hash for a worker dashboard route. */
export function workerRouteHash(route: WorkerRoute): string {
  return route.page === "task" ? `#/task/${encodeURIComponent(route.id)}` : "#/tasks";
}

/** "#/job/%2Fa%2Fb" → ["job", "/a/b"]. Undecodable ids are kept as written. */
function splitHash(hash: string): [string, string] {
  const path = hash.replace(/^#\/?/, "");
  const slash = path.indexOf("/");
  const name = slash < 0 ? path : path.slice(0, slash);
  const raw = slash < 0 ? "" : path.slice(slash + 1);
  let id = raw;
  try {
    id = decodeURIComponent(raw);
  } catch {
    // Keep the raw text: a hand-edited link with a stray "%".
  }
  return [name, id];
}
