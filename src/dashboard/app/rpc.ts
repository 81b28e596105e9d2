/**
 * Connect clients for the dashboards: JSON over fetch to the page's own origin, so the
 * browser only talks to the server that served it (`connect-src 'self'`).
 * @module
 */
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ControllerService } from "../../rpc/gen/iris/v1/controller_pb.ts";
import { WorkerService } from "../../rpc/gen/iris/v1/worker_pb.ts";

/** The ControllerService client the controller dashboard uses. */
export type ControllerApi = Client<typeof ControllerService>;
/** The WorkerService client the worker dashboard uses. */
export type WorkerApi = Client<typeof WorkerService>;

function transport(baseUrl: string) {
  return createConnectTransport({ baseUrl, useBinaryFormat: false });
}

/** A ControllerService client for `baseUrl` (the page origin). */
export function controllerApi(baseUrl: string): ControllerApi {
  return createClient(ControllerService, transport(baseUrl));
}

/** A WorkerService client for `baseUrl` (the page origin). */
export function workerApi(baseUrl: string): WorkerApi {
  return createClient(WorkerService, transport(baseUrl));
}
