/**
 * The controller layer: state, pure scheduling, the loop, the RPC service and the server.
 * @module
 */
export { Controller, type ControllerOptions } from "./controller.ts";
export { type ControllerServer, startController, type StartControllerOptions } from "./server.ts";
export { type BundleStorage, controllerRoutes, controllerService } from "./service.ts";
export {
  deriveJobState,
  isJobTerminal,
  isTaskTerminal,
  jobStateName,
  parseJobState,
  taskStateName,
} from "./job_rules.ts";
export { AutoscalerRunner, type ScaleGroup } from "./autoscaler/runner.ts";
export { backupController, restoreController } from "./backup.ts";
export { budgetsFromConfig } from "./budgets.ts";
export { JOB_SORT_KEYS } from "./job_query.ts";
export { levelRank, LOG_LEVELS } from "./logs.ts";
export { MAX_QUERY_ROWS, MAX_QUERY_TIMEOUT } from "./raw_query.ts";
