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
