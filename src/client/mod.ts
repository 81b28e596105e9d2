/**
 * The client library: IrisClient, job requests and the in-task job context.
 * @module
 */
export * from "./client.ts";
export * from "./job_request.ts";
export * from "./user.ts";
