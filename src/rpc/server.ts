/**
 * Serves Connect services (Connect JSON/binary and gRPC-web) over HTTP/1.1 on `node:http`. Plain
 * Connect unary calls take a lean path (fast_unary.ts) with the same behaviour on the wire; the rest
 * goes through Connect's handlers. Non-RPC paths fall through to an optional fallback (e.g. the
 * dashboard's static files).
 *
 * Why node:http rather than Deno.serve: Deno.serve (2.9.6) has no header, request or idle timeout
 * (a client that sends half a header, or nothing, holds its connection forever) and gives no
 * access to connections, so no per-client cap either. node:http in Deno has all three timeouts and
 * a `connection` event, at about the same cost per call (docs/security.md has the figures).
 * Bodies are read as streams with their limits checked while reading (body.ts).
 * @module
 */
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { isIP, type Socket } from "node:net";
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
  type UniversalServerRequest,
  universalServerResponseToFetch,
} from "@connectrpc/connect/protocol";
import { PEER_ADDRESS } from "../auth/gate.ts";
import { type Duration, seconds } from "../time.ts";
import { boundedChunks, DEFAULT_MAX_JSON_DEPTH, isJsonContentType } from "./body.ts";
import { type FastRequest, FastUnary } from "./fast_unary.ts";

/** A running RPC server; dispose it to stop listening. */
export interface RpcServer extends AsyncDisposable {
  /** "http://127.0.0.1:12345" */
  readonly url: string;
  readonly port: number;
  readonly hostname: string;
  /** Stops accepting connections and waits for in-flight requests. */
  shutdown(): Promise<void>;
}

/** Connection limits of an RPC server (defaults: {@linkcode DEFAULT_CONNECTION_LIMITS}). */
export interface ConnectionLimits {
  /**
   * Time a client has to send a request's headers, from its connection (or its previous
   * request); past it the server answers 408 and closes the connection (slow or silent clients).
   */
  headersTimeout?: Duration;
  /**
   * Time a client has to send a whole request, headers and body: the body's deadline. Past it
   * the server answers 408 and closes the connection.
   */
  requestTimeout?: Duration;
  /** A kept-alive connection with no request for this long is closed. */
  idleTimeout?: Duration;
  /**
   * Connections one remote address may hold open at once; more are closed as they arrive.
   * 0 means no limit.
   */
  maxConnectionsPerClient?: number;
}

/** The connection limits every server has unless told otherwise. */
export const DEFAULT_CONNECTION_LIMITS: Readonly<Required<ConnectionLimits>> = {
  headersTimeout: seconds(10),
  requestTimeout: seconds(60),
  idleTimeout: seconds(30),
  maxConnectionsPerClient: 256,
};

/** Options for {@linkcode serveRpc}. */
export interface ServeRpcOptions extends ConnectionLimits {
  /** @default "127.0.0.1" */
  hostname?: string;
  /** 0 picks a free port. @default 0 */
  port?: number;
  /** Handles requests that are not RPC calls. @default 404 */
  fallback?: (req: Request) => Response | Promise<Response>;
  /** Largest accepted request body; larger requests fail with ResourceExhausted. @default 64 MiB */
  readMaxBytes?: number;
  /** JSON request bodies nesting deeper fail with InvalidArgument before parsing. @default 64 */
  maxJsonDepth?: number;
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
  const maxJsonDepth = options.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH;
  const limits = { ...DEFAULT_CONNECTION_LIMITS };
  for (const k of Object.keys(limits) as (keyof ConnectionLimits)[]) {
    if (options[k] !== undefined) limits[k] = options[k] as never;
  }
  // Unknown JSON fields are refused (a typo must not be dropped silently); binary stays lenient.
  const jsonOptions = { ignoreUnknownFields: false };
  const router = createConnectRouter({
    grpc: false,
    readMaxBytes,
    jsonOptions,
    interceptors: options.interceptors,
    requestGate: options.requestGate,
  });
  const fast = options.fastUnary === false ? undefined : new FastUnary({
    readMaxBytes,
    maxJsonDepth,
    interceptors: options.interceptors,
    requestGate: options.requestGate,
  });
  routes(fast ? recordingRouter(router, fast) : router);
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));

  const inflight = new Set<NodeRequest>();
  let closing = false;
  let drained: (() => void) | undefined;

  const serveOne = async (call: NodeRequest): Promise<Response> => {
    const contextValues = createContextValues();
    contextValues.set(PEER_ADDRESS, call.peer);
    const route = fast?.eligible(call, call.path);
    if (route) return await fast!.serve(call, route, contextValues);
    const handler = handlers.get(new URL(call.url).pathname);
    if (handler) {
      const type = call.headers.get("content-type");
      const uReq: UniversalServerRequest & { contextValues: typeof contextValues } = {
        httpVersion: call.req.httpVersion,
        method: call.method,
        url: call.url,
        header: withoutLengthHint(call.headers, readMaxBytes),
        body: boundedChunks(call.body, {
          readMaxBytes,
          contentLength: call.headers.get("content-length"),
          maxJsonDepth: isJsonContentType(type) ? maxJsonDepth : undefined,
        }),
        signal: call.signal,
        contextValues,
      };
      return await undecodableAsInvalidArgument(
        universalServerResponseToFetch(await handler(uReq)),
      );
    }
    if (fallback) return await fallback(call.toFetchRequest());
    return new Response("Not found\n", { status: 404 });
  };

  const server = http.createServer({
    headersTimeout: Math.min(limits.headersTimeout, limits.requestTimeout || Infinity),
    requestTimeout: limits.requestTimeout,
    keepAliveTimeout: limits.idleTimeout,
    // How often timeouts are checked: often enough to be within a quarter of the shortest.
    connectionsCheckingInterval: Math.max(
      50,
      Math.min(1000, Math.min(limits.headersTimeout, limits.requestTimeout || Infinity) / 4),
    ),
  }, (req: IncomingMessage, res: ServerResponse) => {
    const call = new NodeRequest(req, res, baseUrl);
    inflight.add(call);
    serveOne(call)
      .catch((err) =>
        new Response(`internal error: ${err instanceof Error ? err.message : String(err)}\n`, {
          status: 500,
        })
      )
      .then((response) => writeResponse(call, response, closing))
      .catch(() => res.destroy())
      .finally(() => {
        inflight.delete(call);
        if (inflight.size === 0) drained?.();
      });
  });
  server.headersTimeout = Math.min(limits.headersTimeout, limits.requestTimeout || Infinity);
  server.requestTimeout = limits.requestTimeout;
  server.keepAliveTimeout = limits.idleTimeout;

  const perClient = new Map<string, number>();
  server.on("connection", (socket: Socket) => {
    const peer = normalizeAddress(socket.remoteAddress);
    const n = (perClient.get(peer) ?? 0) + 1;
    if (limits.maxConnectionsPerClient > 0 && n > limits.maxConnectionsPerClient) {
      socket.destroy();
      return;
    }
    perClient.set(peer, n);
    socket.once("close", () => {
      const left = (perClient.get(peer) ?? 1) - 1;
      if (left <= 0) perClient.delete(peer);
      else perClient.set(peer, left);
    });
  });
  server.on("error", (err: Error) => console.error(`rpc server: ${err.message}`));

  const addr = listenNow(server, hostname, port);
  const urlHost = addr.address.includes(":") ? `[${addr.address}]` : addr.address;
  const baseUrl = `http://${urlHost}:${addr.port}`;
  let stopped: Promise<void> | undefined;
  const shutdown = () => {
    stopped ??= (async () => {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // A request still sending its body will not finish by itself: drop it.
      for (const call of inflight) if (!call.req.complete) call.req.socket.destroy();
      if (inflight.size > 0) await new Promise<void>((resolve) => drained = resolve);
      server.closeAllConnections();
      await closed;
    })();
    return stopped;
  };
  options.signal?.addEventListener("abort", () => void shutdown(), { once: true });
  return {
    url: baseUrl,
    port: addr.port,
    hostname: addr.address,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

/**
 * Binds `server` now, so the port is known when serveRpc returns (node's `listen` with a host
 * binds only after a DNS lookup). A name or a fixed port is first checked with Deno.listen, which
 * resolves the name and throws AddrInUse at once, as Deno.serve did.
 */
function listenNow(
  server: http.Server,
  hostname: string,
  port: number,
): { address: string; port: number } {
  let host = hostname;
  if (isIP(hostname) === 0 || port !== 0) {
    const probe = Deno.listen({ hostname, port });
    host = (probe.addr as Deno.NetAddr).hostname;
    probe.close();
  }
  const bind = (server as unknown as {
    _listen2?: (address: string, port: number, addressType: number, backlog: number) => void;
  })._listen2;
  if (typeof bind !== "function") throw new Error("node:http cannot bind synchronously here");
  bind.call(server, host, port, isIP(host), 511);
  const addr = server.address();
  if (addr === null || typeof addr === "string") {
    throw new Error(`rpc server: could not listen on ${hostname}:${port}`);
  }
  return { address: addr.address, port: addr.port };
}

/** "::ffff:10.0.0.3" → "10.0.0.3"; undefined → "". */
function normalizeAddress(address: string | undefined): string {
  if (!address) return "";
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

/** A node:http request seen as a fetch-like request (what the fast path reads). */
class NodeRequest implements FastRequest {
  readonly headers: Headers;
  readonly url: string;
  readonly path: string;
  readonly peer: string;
  #abort: AbortController | undefined;
  #body: ReadableStream<Uint8Array> | null | undefined;

  constructor(readonly req: IncomingMessage, readonly res: ServerResponse, baseUrl: string) {
    const headers = new Headers();
    const raw = req.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
    this.headers = headers;
    const target = req.url ?? "/";
    this.url = target.startsWith("/") ? baseUrl + target : `${baseUrl}/`;
    const q = target.indexOf("?");
    this.path = q < 0 ? target : target.slice(0, q);
    this.peer = normalizeAddress(req.socket.remoteAddress);
  }

  get method(): string {
    return this.req.method ?? "GET";
  }

  /** Aborts when the connection closes before the response was sent. */
  get signal(): AbortSignal {
    if (!this.#abort) {
      const abort = new AbortController();
      this.#abort = abort;
      this.res.once("close", () => {
        if (!this.res.writableFinished) {
          abort.abort(new DOMException("the client went away", "AbortError"));
        }
      });
    }
    return this.#abort.signal;
  }

  /** The body as a stream, pulled from the socket only as it is read. */
  get body(): ReadableStream<Uint8Array> | null {
    if (this.#body === undefined) {
      const m = this.method;
      this.#body = m === "GET" || m === "HEAD" ? null : nodeBodyStream(this.req);
    }
    return this.#body;
  }

  toFetchRequest(): Request {
    const body = this.body;
    return new Request(this.url, {
      method: this.method,
      headers: this.headers,
      body,
      signal: this.signal,
      ...(body ? { duplex: "half" } : {}),
    } as RequestInit);
  }
}

/** A request body as a pull stream: the socket is paused whenever nobody is reading. */
function nodeBodyStream(req: IncomingMessage): ReadableStream<Uint8Array> {
  let settled = false;
  return new ReadableStream<Uint8Array>({
    start(c) {
      req.pause();
      req.on("data", (chunk: Uint8Array) => {
        if (settled) return;
        c.enqueue(chunk);
        if ((c.desiredSize ?? 0) <= 0) req.pause();
      });
      req.once("end", () => {
        if (settled) return;
        settled = true;
        c.close();
      });
      const fail = (err?: Error) => {
        if (settled) return;
        settled = true;
        c.error(err ?? new Error("the client closed the connection before sending the whole body"));
      };
      req.once("error", fail);
      req.once("close", () => {
        if (!req.complete) fail();
      });
    },
    pull() {
      req.resume();
    },
    cancel() {
      settled = true;
      req.pause();
    },
  }, { highWaterMark: 1 });
}

/**
 * Connect preallocates a buffer of the announced Content-Length before reading; the body reader
 * (body.ts) checks the length itself, so Connect gets no hint unless it is over the limit (which
 * Connect refuses without reading).
 */
function withoutLengthHint(headers: Headers, readMaxBytes: number): Headers {
  const length = headers.get("content-length");
  if (length === null) return headers;
  const n = Number(length);
  if (Number.isSafeInteger(n) && n > readMaxBytes) return headers;
  const copy = new Headers(headers);
  copy.delete("content-length");
  return copy;
}

/**
 * Writes `response` to the node response. A request whose body was not read to its end (refused
 * early, too large) gets its connection closed after the answer rather than drained.
 */
async function writeResponse(call: NodeRequest, response: Response, closing: boolean) {
  const { req, res } = call;
  if (res.destroyed) {
    await response.body?.cancel();
    return;
  }
  const bytes = response.body ? new Uint8Array(await response.arrayBuffer()) : undefined;
  res.statusCode = response.status;
  response.headers.forEach((value, key) => res.setHeader(key, value));
  // The body's own length: a rewritten response may carry its original's header.
  res.setHeader("content-length", String(bytes?.byteLength ?? 0));
  if (closing || !req.complete) res.setHeader("connection", "close");
  res.end(bytes);
  if (!req.complete) res.once("finish", () => req.socket.end());
}

/**
 * The path of an absolute URL as sent ("/iris.v1.ControllerService/GetJobStatus"), without the
 * cost of parsing it. Only used to look up fast-path methods, whose paths need no normalizing;
 * everything else is routed on the parsed URL.
 */
function _rawPath(url: string): string {
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
