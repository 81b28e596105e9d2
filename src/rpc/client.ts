/**
 * Typed Connect clients for the controller and worker services, over fetch.
 * @module
 */
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ControllerService } from "./gen/iris/v1/controller_pb.ts";
import { WorkerService } from "./gen/iris/v1/worker_pb.ts";
import { createHttp1Transport } from "./http1_client.ts";

/** A typed ControllerService client. */
export type ControllerClient = Client<typeof ControllerService>;
/** A typed WorkerService client. */
export type WorkerClient = Client<typeof WorkerService>;

/** Options for the transport helpers. */
export interface TransportOptions {
  /** Use the binary protobuf format (faster) instead of JSON. @default true */
  binary?: boolean;
  interceptors?: Interceptor[];
  /** Sent as `Authorization: Bearer <token>` on every call. @default none */
  token?: string;
}

/** An interceptor adding `Authorization: Bearer <token>` to every call. */
export function bearerInterceptor(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/**
 * A Connect transport to `baseUrl` ("http://127.0.0.1:10000"): binary unary calls to an http URL
 * go over Iris's own HTTP/1.1 client (src/rpc/http1_client.ts), the rest over fetch.
 */
export function rpcTransport(baseUrl: string, options: TransportOptions = {}): Transport {
  const binary = options.binary ?? true;
  const viaFetch = createConnectTransport({
    baseUrl,
    useBinaryFormat: binary,
    interceptors: [
      ...(options.token ? [bearerInterceptor(options.token)] : []),
      ...(options.interceptors ?? []),
    ],
  });
  if (!binary || !baseUrl.startsWith("http://") || proxied()) return viaFetch;
  return createHttp1Transport({
    baseUrl,
    token: options.token,
    interceptors: options.interceptors,
    fallback: viaFetch,
  });
}

/** Whether fetch would send plain-http calls through a proxy (then fetch carries them). */
function proxied(): boolean {
  try {
    return !!(Deno.env.get("HTTP_PROXY") || Deno.env.get("http_proxy") ||
      Deno.env.get("ALL_PROXY") || Deno.env.get("all_proxy"));
  } catch {
    return false; // no env permission: fetch would not see one either
  }
}

/** A ControllerService client for `baseUrl`. */
export function controllerClient(baseUrl: string, options?: TransportOptions): ControllerClient {
  return createClient(ControllerService, rpcTransport(baseUrl, options));
}

/** A WorkerService client for `baseUrl`. */
export function workerClient(baseUrl: string, options?: TransportOptions): WorkerClient {
  return createClient(WorkerService, rpcTransport(baseUrl, options));
}

/**
 * Whether a call failed for want of a connection (refused, reset, closed, unreachable), as opposed
 * to an answer: fetch and our HTTP/1 transport report these as Unknown with a TypeError cause,
 * Connect as Unavailable. The call may be retried; the peer may be down.
 */
export function isConnectionFailure(err: unknown): boolean {
  if (err instanceof ConnectError) {
    return err.code === Code.Unavailable ||
      (err.code === Code.Unknown && err.cause instanceof TypeError);
  }
  return err instanceof TypeError;
}
