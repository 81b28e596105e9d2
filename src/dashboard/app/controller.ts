/**
 * Entry point of the controller dashboard (bundled into `/app.js`).
 * @module
 */
import { autoscalerPage } from "./autoscaler.ts";
import { endpointsPage } from "./endpoints.ts";
import { fleetPage, workerDetailPage } from "./fleet.ts";
import { jobDetailPage } from "./job_detail.ts";
import { jobsPage } from "./jobs.ts";
import type { Page, PageEnv } from "./page.ts";
import { type ControllerApi, controllerApi } from "./rpc.ts";
import { parseRoute, type Route } from "./routes.ts";
import { startShell } from "./shell.ts";
import { statusPage } from "./status.ts";
import { usagePage } from "./usage.ts";
import { usersPage } from "./users.ts";
import { transactionsPage } from "./transactions.ts";

function mount(route: Route, env: PageEnv<ControllerApi>): Page {
  switch (route.page) {
    case "job":
      return jobDetailPage(env, route.id);
    case "fleet":
      return fleetPage(env);
    case "worker":
      return workerDetailPage(env, route.id);
    case "autoscaler":
      return autoscalerPage(env);
    case "endpoints":
      return endpointsPage(env);
    case "users":
      return usersPage(env);
    case "status":
      return statusPage(env);
    case "usage":
      return usagePage(env);
    case "transactions":
      return transactionsPage(env);
    default:
      return jobsPage(env, route.query);
  }
}

startShell<Route, ControllerApi>({
  product: "controller",
  api: controllerApi(location.origin),
  parse: parseRoute,
  mount,
  tabs: [
    { label: "Jobs", href: "#/jobs", active: (r) => r.page === "jobs" || r.page === "job" },
    { label: "Fleet", href: "#/fleet", active: (r) => r.page === "fleet" || r.page === "worker" },
    { label: "Usage", href: "#/usage", active: (r) => r.page === "usage" },
    { label: "Autoscaler", href: "#/autoscaler", active: (r) => r.page === "autoscaler" },
    { label: "Endpoints", href: "#/endpoints", active: (r) => r.page === "endpoints" },
    { label: "Users", href: "#/users", active: (r) => r.page === "users" },
    { label: "Status", href: "#/status", active: (r) => r.page === "status" },
    { label: "Transactions", href: "#/transactions", active: (r) => r.page === "transactions" },
  ],
});
