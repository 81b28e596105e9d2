/**
 * Serves Connect services (Connect JSON/binary and gRPC-web) on Deno.serve. Plain Connect unary
 * calls take a lean path (fast_unary.ts) with the same behaviour on the wire; the rest goes
 * through Connect's handlers. Non-RPC paths fall through to an optional fallback (e.g. the
 * dashboard's static files).
 * @module
 */
import {
  type ConnectRouter,
  createConnectRouter,
  createContextValues,
  createMethodImplSpec,
  createServiceImplSpec,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import {
  universalServerRequestFromFetch,
  universalServerResponseToFetch,
} from "@connectrpc/connect/protocol";
import { PEER_ADDRESS } from "../auth/gate.ts";
import { FastUnary } from "./fast_unary.ts";

/** A running RPC server; dispose it to stop listening. */
export interface RpcServer extends AsyncDisposable {
  /** "http://127.0.0.1:12345" */
  readonly url: string;
  readonly port: number;
  readonly hostname: string;
  /** Stops accepting connections and waits for in-flight requests. */
  shutdown(): Promise<void>;
}

/** Options for {@linkcode serveRpc}. */
export interface ServeRpcOptions {
  /** @default "127.0.0.1" */
  hostname?: string;
  /** 0 picks a free port. @default 0 */
  port?: number;
  /** Handles requests that are not RPC calls. @default 404 */
  fallback?: (req: Request) => Response | Promise<Response>;
  /** Largest accepted request body; larger requests fail with ResourceExhausted. @default 64 MiB */
  readMaxBytes?: number;
  /** Runs on every call (after the gate, with the parsed request). */
  interceptors?: Interceptor[];
  /** Runs once headers are in, before the body is read: authentication (src/auth/gate.ts). */
  requestGate?: (ctx: HandlerContext) => void | Promise<void>;
  signal?: AbortSignal;
  /**
   * Serve Connect unary POST calls on a lean path (src/rpc/fast_unary.ts) instead of Connect's
   * universal handler; same behaviour on the wire, a fraction of the cost. @default true
   */
  fastUnary?: boolean;
}

/** Serves the routes registered by `routes` until the returned server is shut down. */
export function serveRpc(
  routes: (router: ConnectRouter) => void,
  options: ServeRpcOptions = {},
): RpcServer {
  const { hostname = "127.0.0.1", port = 0, fallback, readMaxBytes = 64 * 1024 * 1024 } = options;
  const router = createConnectRouter({
    grpc: false,
    readMaxBytes,
    interceptors: options.interceptors,
    requestGate: options.requestGate,
  });
  const fast = options.fastUnary === false ? undefined : new FastUnary({
    readMaxBytes,
    interceptors: options.interceptors,
    requestGate: options.requestGate,
  });
  routes(fast ? recordingRouter(router, fast) : router);
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const server = Deno.serve({
    hostname,
    port,
    signal: options.signal,
    onListen: () => {},
  }, async (req, info) => {
    // The peer address feeds per-client limits when there is no authenticated user.
    const peerValues = () => {
      const contextValues = createContextValues();
      contextValues.set(PEER_ADDRESS, (info.remoteAddr as Deno.NetAddr).hostname ?? "");
      return contextValues;
    };
    const call = fast?.eligible(req, rawPath(req.url));
    if (call) return await fast!.serve(req, call, peerValues());
    const path = new URL(req.url).pathname;
    const handler = handlers.get(path);
    if (handler) {
      const contextValues = peerValues();
      const uReq = { ...universalServerRequestFromFetch(req, {}), contextValues };
      return await undecodableAsInvalidArgument(
        universalServerResponseToFetch(await handler(uReq)),
      );
    }
    if (fallback) return fallback(req);
    return new Response("Not found\n", { status: 404 });
  });
  const addr = server.addr as Deno.NetAddr;
  const urlHost = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let stopped: Promise<void> | undefined;
  const shutdown = () => {
    stopped ??= server.shutdown().then(() => server.finished);
    return stopped;
  };
  return {
    url: `http://${urlHost}:${addr.port}`,
    port: addr.port,
    hostname: addr.hostname,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

/**
 * The path of an absolute URL as sent ("/iris.v1.ControllerService/GetJobStatus"), without the
 * cost of parsing it. Only used to look up fast-path methods, whose paths need no normalizing;
 * everything else is routed on the parsed URL.
 */
function rawPath(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const end = url.indexOf("?", start);
  return end < 0 ? url.slice(start) : url.slice(start, end);
}

/**
 * `router`, also recording each registration in `fast`. Registrations with their own options
 * (other limits or interceptors than the server's) stay on the Connect path only.
 */
function recordingRouter(router: ConnectRouter, fast: FastUnary): ConnectRouter {
  const recording: ConnectRouter = {
    get handlers() {
      return router.handlers;
    },
    service(service, impl, opts) {
      router.service(service, impl, opts);
      if (!opts) fast.service(createServiceImplSpec(service, impl));
      return recording;
    },
    rpc(method, impl, opts) {
      router.rpc(method, impl, opts);
      if (!opts) fast.rpc(createMethodImplSpec(method, impl));
      return recording;
    },
  };
  return recording;
}

/**
 * Connect reports a request body it cannot decode (invalid UTF-8 in a string, a malformed message)
 * as `internal`; for a server that is the client's fault, so it becomes `invalid_argument`.
 */
async function undecodableAsInvalidArgument(res: Response): Promise<Response> {
  if (res.status !== 500 || !res.headers.get("content-type")?.startsWith("application/json")) {
    return res;
  }
  const text = await res.text();
  let body: { code?: unknown; message?: unknown } = {};
  try {
    body = JSON.parse(text);
  } catch {
    // Not a Connect error body: pass it on unchanged.
  }
  const message = typeof body.message === "string" ? body.message : "";
  if (body.code !== "internal" || !/^parse (binary|json): /.test(message)) {
    return new Response(text, { status: res.status, headers: res.headers });
  }
  return new Response(
    JSON.stringify({
      code: "invalid_argument",
      message: `request: cannot be decoded (${message})`,
    }),
    { status: 400, headers: res.headers },
  );
}
