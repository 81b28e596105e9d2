/**
 * Serves Connect services (Connect JSON/binary and gRPC-web) over HTTP/1.1. Plain Connect unary
 * calls take a lean path (fast_unary.ts) with the same behaviour on the wire; the rest goes through
 * Connect's handlers. Non-RPC paths fall through to an optional fallback (e.g. the dashboard's
 * static files).
 *
 * Two transports (docs/security.md#request-limits has the figures):
 * - `deno` (default): Deno.serve, the fastest. Bodies are read as streams with the size limit
 *   checked while reading and a deadline (`requestTimeout`), and each remote address may have at
 *   most `maxConnectionsPerClient` requests in flight. Deno.serve (2.9.6) has no header or idle
 *   timeout and gives no access to connections: a client that sends half a header, or nothing,
 *   keeps its connection (not memory, not CPU) until it goes away.
 * - `node`: node:http, which adds what Deno.serve lacks: header, request and idle timeouts close
 *   slow, stalled and idle connections, and the per-client cap counts connections. It costs
 *   latency on small calls in Deno 2.9.6 (measured in docs/security.md).
 * @module
 */
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { isIP, type Socket } from "node:net";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createConnectRouter,
  createContextKey,
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
import { type Duration, seconds } from "../time.ts";
import { formatDuration } from "../format.ts";
import {
  type BodyLimits,
  boundedChunks,
  DEFAULT_MAX_JSON_DEPTH,
  isJsonContentType,
  readBody,
} from "./body.ts";
import { type FastRequest, FastUnary } from "./fast_unary.ts";
import { errorInterceptor, mappedGate } from "./errors.ts";
import { serveHttp1 } from "./http1.ts";

/**
 * The peer's address ("10.0.0.3") in a call's context values, set by {@linkcode serveRpc}; ""
 * when unknown. The transport defines it; policies (src/auth's gate and rate limits) read it.
 */
export const PEER_ADDRESS = createContextKey<string>("", { description: "iris peer address" });

/** A running RPC server; dispose it to stop listening. */
export interface RpcServer extends AsyncDisposable {
  /** "http://127.0.0.1:12345" */
  readonly url: string;
  readonly port: number;
  readonly hostname: string;
  /** Stops accepting connections and waits for in-flight requests. */
  shutdown(): Promise<void>;
}

/** Which HTTP server carries the calls (see the module doc). */
export type HttpTransport = "iris" | "deno" | "node";

/** The HTTP server used unless told otherwise. */
export const DEFAULT_TRANSPORT: HttpTransport = "iris";

/** The transports, for config and flag validation. */
export const HTTP_TRANSPORTS: readonly HttpTransport[] = ["iris", "deno", "node"];

/** Connection limits of an RPC server (defaults: {@linkcode DEFAULT_CONNECTION_LIMITS}). */
export interface ConnectionLimits {
  /** @default "deno" */
  transport?: HttpTransport;
  /**
   * Time a client has to send a request's headers, from its connection (or its previous
   * request); past it the server answers 408 and closes the connection (slow or silent clients).
   * Transport `node` only.
   */
  headersTimeout?: Duration;
  /**
   * Time a client has to send a whole request, headers and body: the body's deadline. Past it
   * the call fails (`deno`: deadline_exceeded; `node`: 408) and the connection is closed.
   */
  requestTimeout?: Duration;
  /** A kept-alive connection with no request for this long is closed. Transport `node` only. */
  idleTimeout?: Duration;
  /**
   * Per remote address: requests in flight at once (transport `deno`; more are refused with
   * resource_exhausted before their body is read) or connections held open (transport `node`;
   * more are closed as they arrive). 0 means no limit.
   */
  maxConnectionsPerClient?: number;
}

/** The connection limits every server has unless told otherwise. */
export const DEFAULT_CONNECTION_LIMITS: Readonly<Required<Omit<ConnectionLimits, "transport">>> = {
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
  for (const k of Object.keys(limits) as (keyof Limits)[]) {
    if (options[k] !== undefined) limits[k] = options[k] as never;
  }
  // Unknown JSON fields are refused (a typo must not be dropped silently); binary stays lenient.
  const jsonOptions = { ignoreUnknownFields: false };
  // Handlers and gates throw Iris errors (src/errors.ts); they reach the wire as Connect codes
  // through errorInterceptor (the fast path maps them the same way, rpc/errors.ts).
  const requestGate = mappedGate(options.requestGate);
  const router = createConnectRouter({
    grpc: false,
    readMaxBytes,
    jsonOptions,
    interceptors: [errorInterceptor, ...(options.interceptors ?? [])],
    requestGate,
  });
  const fast = options.fastUnary === false ? undefined : new FastUnary({
    readMaxBytes,
    maxJsonDepth,
    interceptors: options.interceptors,
    requestGate,
  });
  routes(fast ? recordingRouter(router, fast) : router);
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));

  const serveOne = async (call: IncomingCall): Promise<Response> => {
    const contextValues = createContextValues();
    contextValues.set(PEER_ADDRESS, call.peer);
    const route = fast?.eligible(call, call.path);
    if (route) return await fast!.serve(call, route, contextValues);
    const handler = handlers.get(new URL(call.url).pathname);
    if (handler) {
      const type = call.headers.get("content-type");
      const uReq: UniversalServerRequest & { contextValues: typeof contextValues } = {
        httpVersion: call.httpVersion,
        method: call.method,
        url: call.url,
        header: withoutLengthHint(call.headers, readMaxBytes),
        body: boundedChunks(call.bodyChunks, {
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
  const listen = { hostname, port, signal: options.signal };
  const transport = options.transport ?? DEFAULT_TRANSPORT;
  if (transport === "iris") {
    // The fast path's answer goes out as bytes, without a fetch Response.
    return serveHttp1(
      (call) => {
        const route = fast?.eligible(call, call.path);
        if (route) {
          const contextValues = createContextValues();
          contextValues.set(PEER_ADDRESS, call.peer);
          return fast!.serveRaw(call, route, contextValues);
        }
        return serveOne(call);
      },
      limits,
      listen,
    );
  }
  return transport === "node"
    ? serveNode(serveOne, limits, listen)
    : serveDeno(serveOne, limits, listen);
}

/** What serveOne needs of a call, whichever server received it. */
interface IncomingCall extends FastRequest {
  readonly path: string;
  readonly peer: string;
  readonly httpVersion: string;
  readonly bodyChunks: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array> | null;
  toFetchRequest(): Request;
}

type ServeOne = (call: IncomingCall) => Promise<Response>;
type Limits = Required<Omit<ConnectionLimits, "transport">>;
interface Listen {
  hostname: string;
  port: number;
  signal?: AbortSignal;
}

/** A Connect error response, as Connect writes them. */
function connectErrorResponse(code: "resource_exhausted", message: string): Response {
  return new Response(JSON.stringify({ code, message }), {
    status: 429,
    headers: { "content-type": "application/json" },
  });
}

/** Counts requests in flight per remote address. */
class PerClient {
  readonly #counts = new Map<string, number>();
  constructor(readonly cap: number) {}
  /** Takes a slot for `peer`; false when it already has `cap`. */
  take(peer: string): boolean {
    const n = this.#counts.get(peer) ?? 0;
    if (this.cap > 0 && n >= this.cap) return false;
    this.#counts.set(peer, n + 1);
    return true;
  }
  give(peer: string): void {
    const n = (this.#counts.get(peer) ?? 1) - 1;
    if (n <= 0) this.#counts.delete(peer);
    else this.#counts.set(peer, n);
  }
}

/** Transport `deno`: Deno.serve. */
function serveDeno(serveOne: ServeOne, limits: Limits, listen: Listen): RpcServer {
  const perClient = new PerClient(limits.maxConnectionsPerClient);
  const server = Deno.serve({
    hostname: listen.hostname,
    port: listen.port,
    signal: listen.signal,
    onListen: () => {},
  }, async (req, info) => {
    const peer = (info.remoteAddr as Deno.NetAddr).hostname ?? "";
    if (!perClient.take(peer)) {
      await req.body?.cancel().catch(() => {});
      return connectErrorResponse(
        "resource_exhausted",
        `too many requests in flight from ${peer} (at most ${perClient.cap}): retry later`,
      );
    }
    try {
      return await serveOne(new DenoCall(req, peer, limits.requestTimeout));
    } finally {
      perClient.give(peer);
    }
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

/** A Deno.serve request as an IncomingCall; its body must arrive within `timeout`. */
class DenoCall implements IncomingCall {
  readonly path: string;
  readonly httpVersion = "1.1";
  constructor(readonly req: Request, readonly peer: string, readonly timeout: Duration) {
    this.path = rawPath(req.url);
  }
  get method(): string {
    return this.req.method;
  }
  get url(): string {
    return this.req.url;
  }
  get headers(): Headers {
    return this.req.headers;
  }
  get signal(): AbortSignal {
    return this.req.signal;
  }
  get body(): ReadableStream<Uint8Array> | null {
    return this.req.body;
  }
  get bodyChunks(): AsyncIterable<Uint8Array> | null {
    const body = this.req.body;
    return body && this.timeout > 0 ? deadlineChunks(body, this.timeout) : body;
  }
  readBody(limits: BodyLimits): Promise<Uint8Array> {
    return readBody(
      this.req.body,
      limits,
      this.timeout,
      () => formatDuration(this.timeout),
    );
  }
  toFetchRequest(): Request {
    return this.req;
  }
}

/**
 * A body's chunks, failing with deadline_exceeded (and cancelling the stream) when the whole body
 * has not arrived within `timeout`.
 */
async function* deadlineChunks(
  body: ReadableStream<Uint8Array>,
  timeout: Duration,
): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    reader.cancel().catch(() => {});
  }, timeout);
  let done = false;
  try {
    for (;;) {
      const r = await reader.read().catch((err) => {
        if (expired) return { done: true, value: undefined } as const;
        throw err;
      });
      if (expired) {
        throw new ConnectError(
          `request: the body did not arrive within ${formatDuration(timeout)}`,
          Code.DeadlineExceeded,
        );
      }
      if (r.done) break;
      yield r.value;
    }
    done = true;
  } finally {
    clearTimeout(timer);
    if (!done && !expired) reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** Transport `node`: node:http with header, request and idle timeouts. */
function serveNode(serveOne: ServeOne, limits: Limits, listen: Listen): RpcServer {
  const inflight = new Set<NodeRequest>();
  let closing = false;
  let drained: (() => void) | undefined;

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

  const addr = listenNow(server, listen.hostname, listen.port);
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
  listen.signal?.addEventListener("abort", () => void shutdown(), { once: true });
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
class NodeRequest implements IncomingCall {
  readonly headers: Headers;
  readonly url: string;
  readonly path: string;
  readonly peer: string;
  readonly httpVersion: string;
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
    this.httpVersion = req.httpVersion;
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

  /** The body's chunks straight from node's events (cheaper than a ReadableStream). */
  get bodyChunks(): AsyncIterable<Uint8Array> | null {
    const m = this.method;
    return m === "GET" || m === "HEAD" ? null : nodeChunks(this.req);
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

/**
 * A request body's chunks, read from node's events; the socket is paused while chunks wait.
 * Stopping early leaves the socket paused (the answer then closes the connection) rather than
 * destroying it, so the client still gets the error.
 */
function nodeChunks(req: IncomingMessage): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
      const queue: Uint8Array[] = [];
      let ended = req.complete && req.readableEnded;
      let error: Error | undefined;
      let wake: (() => void) | undefined;
      const poke = () => {
        const w = wake;
        wake = undefined;
        w?.();
      };
      const onData = (chunk: Uint8Array) => {
        queue.push(chunk);
        if (queue.length >= 16) req.pause();
        poke();
      };
      const onEnd = () => {
        ended = true;
        poke();
      };
      const onError = (err: Error) => {
        error ??= err;
        poke();
      };
      const onClose = () => {
        if (!req.complete) {
          error ??= new Error("the client closed the connection before sending the whole body");
        }
        poke();
      };
      const detach = () => {
        req.off("data", onData);
        req.off("end", onEnd);
        req.off("error", onError);
        req.off("close", onClose);
      };
      req.on("data", onData);
      req.on("end", onEnd);
      req.on("error", onError);
      req.on("close", onClose);
      return {
        async next(): Promise<IteratorResult<Uint8Array>> {
          for (;;) {
            const chunk = queue.shift();
            if (chunk) {
              if (queue.length < 4 && req.isPaused()) req.resume();
              return { value: chunk, done: false };
            }
            if (error) {
              detach();
              throw error;
            }
            if (ended) {
              detach();
              return { value: undefined, done: true };
            }
            await new Promise<void>((r) => wake = r);
          }
        },
        return(): Promise<IteratorResult<Uint8Array>> {
          detach();
          req.pause();
          return Promise.resolve({ value: undefined, done: true });
        },
      };
    },
  };
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
