/**
 * Iris as a library: the client, job requests, the in-task job context, configuration loading,
 * and the public RPC types.
 *
 * @example Submit a job and wait for it
 * ```ts no-eval
 * import { IrisClient } from "./mod.ts";
 * const client = new IrisClient("http://127.0.0.1:10000");
 * const jobId = await client.submit({ name: "hello", command: ["echo", "hello"] });
 * const job = await client.wait(jobId, { onLog: (l) => console.log(l.text) });
 * ```
 * @module
 */
export * from "./src/client/mod.ts";
export { JobState, TaskState } from "./src/rpc/gen/iris/v1/types_pb.ts";
export type { JobStatus, LogLine, TaskStatus, WorkerInfo } from "./src/rpc/gen/iris/v1/types_pb.ts";
export { type Duration, minutes, ms, seconds } from "./src/time.ts";
export { formatBytes, formatDuration } from "./src/format.ts";
export { VERSION } from "./src/version.ts";
