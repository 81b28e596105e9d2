/**
 * The operator tools (docs/operations.md), gathered so main.ts registers them with one line.
 * @module
 */
import type { CommandSpec } from "./args.ts";
import { clusterDebugCommands } from "./cluster_debug.ts";
import { endpointsCommands } from "./endpoints.ts";
import { jobReportCommands } from "./job_report.ts";
import { processCommands } from "./process.ts";
import { queryCommands } from "./query.ts";
import { rpcCommands } from "./rpc.ts";
import { taskCommands } from "./task.ts";

/** rpc, endpoints, query, process, job summary and bug-report, task exec, cluster debug health. */
export const opsCommands: readonly CommandSpec[] = [
  ...rpcCommands,
  ...endpointsCommands,
  ...queryCommands,
  ...processCommands,
  ...jobReportCommands,
  ...taskCommands,
  ...clusterDebugCommands,
];
