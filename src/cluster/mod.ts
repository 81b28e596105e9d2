/**
 * A whole cluster from a config: `startCluster`, the controller lifecycles, the local
 * controller, platforms and scale groups from config, and the operations behind `iris cluster`.
 * @module
 */
export { startCluster } from "./cluster.ts";
export { createControllerLifecycle } from "./lifecycle.ts";
export { LocalController } from "./local_controller.ts";
export {
  type ClusterConnection,
  connectCluster,
  irisHome,
  localRecordPath,
  readLocalRecord,
  removeLeftovers,
  startClusterLogStreaming,
  stopCluster,
  writeLocalRecord,
} from "./manager.ts";
export { platformFromConfig } from "./platforms.ts";
