/**
 * The RPC layer: generated messages and services, server and client helpers.
 * @module
 */
export * from "./gen/iris/v1/types_pb.ts";
export * from "./gen/iris/v1/config_pb.ts";
export * from "./gen/iris/v1/controller_pb.ts";
export * from "./gen/iris/v1/worker_pb.ts";
export * from "./server.ts";
export * from "./client.ts";
export * from "./attributes.ts";
export * from "./limits.ts";
