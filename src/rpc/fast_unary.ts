/**
 * A lean server path for the common call: a Connect-protocol unary POST (binary or JSON, no
 * compression, a valid timeout header or none). It does what Connect's universal handler does for such a call
 * — request gate before the body is read, readMaxBytes, interceptors, the same serialization and
 * the same error wire format (Connect's own helpers) — without the per-call stream adapters,
 * header copies and AbortController that make up most of a small call's cost. Anything else
 * returns undefined from {@linkcode FastUnary.eligible}, and the caller uses the full Connect
 * handler.
 * @module
 */
import { create, type DescMessage } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type ServiceImplSpec,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  createMethodSerializationLookup,
  mergeNonProtocolHeaders,
  type MethodSerializationLookup,
  validateUniversalHandlerOptions,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  contentTypeUnaryJson,
  contentTypeUnaryProto,
  errorToJsonBytes,
  trailerMux,
} from "@connectrpc/connect/protocol-connect";
import { type BodyLimits, DEFAULT_MAX_JSON_DEPTH, readBody } from "./body.ts";
import { toConnectError } from "./errors.ts";

/** Options shared by every method on the fast path; the same values the Connect router gets. */
export interface FastUnaryOptions {
  readMaxBytes: number;
  interceptors?: Interceptor[];
  requestGate?: (ctx: HandlerContext) => void | Promise<void>;
  /** JSON bodies nesting deeper are refused before parsing. @default 64 */
  maxJsonDepth?: number;
  /** Refuse JSON fields the schema does not know (binary stays lenient). @default false */
  ignoreUnknownJsonFields?: boolean;
}

/**
 * What the fast path reads from a request: a fetch Request has all of it, and so does the
 * node:http bridge in src/rpc/server.ts.
 */
export interface FastRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Headers;
  /**
   * One header's value as `headers.get(name)` gives it, when the server can tell it without
   * making `headers` (src/rpc/http1.ts).
   */
  field?(name: string): string | null;
  /** Aborts when the client goes away. */
  readonly signal: AbortSignal;
  readonly body: ReadableStream<Uint8Array> | null;
  /** The body's chunks, when the server has a cheaper source than `body` (node:http). */
  readonly bodyChunks?: AsyncIterable<Uint8Array> | null;
  /** Reads the whole body under `limits` (the server's own way, with its deadline). */
  readBody?(limits: BodyLimits): Promise<Uint8Array>;
}

type UnarySpec = Extract<MethodImplSpec, { kind: "unary" }>;

/** A fast-path answer: the server adds content-length. */
export interface FastResponse {
  status: number;
  headers: Headers | readonly (readonly [string, string])[];
  body: Uint8Array;
}

const PROTO_HEADERS = [["content-type", contentTypeUnaryProto]] as const;
const JSON_HEADERS = [["content-type", contentTypeUnaryJson]] as const;

/** A unary method served without the Connect handler. */
interface FastMethod {
  spec: UnarySpec;
  serialization: MethodSerializationLookup<DescMessage, DescMessage>;
}

/**
 * The fast-path methods of a router, by request path ("/iris.v1.ControllerService/GetJobStatus").
 * Fill it with {@linkcode FastUnary.service} / {@linkcode FastUnary.rpc} alongside the router.
 */
export class FastUnary {
  readonly #methods = new Map<string, FastMethod>();
  readonly #opts: ReturnType<typeof validateUniversalHandlerOptions>;
  readonly #maxJsonDepth: number;

  constructor(options: FastUnaryOptions) {
    this.#maxJsonDepth = options.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH;
    this.#opts = validateUniversalHandlerOptions({
      readMaxBytes: options.readMaxBytes,
      interceptors: options.interceptors,
      requestGate: options.requestGate,
      jsonOptions: { ignoreUnknownFields: options.ignoreUnknownJsonFields ?? false },
    });
  }

  /** Records a service's unary methods (what `router.service(desc, impl)` registers). */
  service(spec: ServiceImplSpec): void {
    for (const m of Object.values(spec.methods)) this.#add(m);
  }

  /** Records one method (what `router.rpc(method, impl)` registers). */
  rpc(spec: MethodImplSpec): void {
    this.#add(spec);
  }

  #add(spec: MethodImplSpec): void {
    if (spec.kind !== "unary") return;
    this.#methods.set(`/${spec.method.parent.typeName}/${spec.method.name}`, {
      spec,
      serialization: createMethodSerializationLookup(
        spec.method,
        this.#opts.binaryOptions,
        this.#opts.jsonOptions,
        this.#opts,
      ),
    });
  }

  /**
   * The method `req` calls if the fast path can serve it, with the body format; undefined sends
   * the request to the full Connect handler (GET, streaming, compression, a timeout header that
   * is malformed or over the limit, other protocols or content types, clients without
   * `Connect-Protocol-Version: 1`).
   */
  eligible(
    req: FastRequest,
    path: string,
  ): { method: FastMethod; binary: boolean; timeoutMs?: number } | undefined {
    if (req.method !== "POST") return undefined;
    const method = this.#methods.get(path);
    if (!method) return undefined;
    const get = req.field
      ? (name: string) => req.field!(name)
      : (name: string) => req.headers.get(name);
    if (get("connect-protocol-version") !== "1") return undefined;
    const type = get("content-type");
    const binary = type === contentTypeUnaryProto;
    if (!binary && type !== contentTypeUnaryJson && type !== "application/json; charset=utf-8") {
      return undefined;
    }
    const encoding = get("content-encoding");
    if (encoding !== null && encoding !== "identity") return undefined;
    const timeout = get("connect-timeout-ms");
    if (timeout === null) return { method, binary };
    // A worker's heartbeat carries one (#20); Connect's handler answers a bad one with its error.
    if (!/^\d{1,10}$/.test(timeout)) return undefined;
    const timeoutMs = Number(timeout);
    if (timeoutMs > this.#opts.maxTimeoutMs) return undefined;
    return { method, binary, timeoutMs };
  }

  /** Serves one call that {@linkcode eligible} accepted. Never throws: errors become responses. */
  async serve(
    req: FastRequest,
    call: { method: FastMethod; binary: boolean; timeoutMs?: number },
    values: ContextValues,
  ): Promise<Response> {
    const r = await this.serveRaw(req, call, values);
    const headers = r.headers instanceof Headers ? r.headers : [...r.headers] as [string, string][];
    return new Response(r.body as Uint8Array<ArrayBuffer>, { status: r.status, headers });
  }

  /**
   * {@linkcode serve} without the fetch Response: status, headers and body bytes, for a server
   * that writes them itself (src/rpc/http1.ts). The headers include content-length.
   */
  async serveRaw(
    req: FastRequest,
    call: { method: FastMethod; binary: boolean; timeoutMs?: number },
    values: ContextValues,
  ): Promise<FastResponse> {
    const { spec, serialization } = call.method;
    const ctx = new FastContext(spec, req, values, call.timeoutMs);
    let status = 200;
    let body: Uint8Array;
    let contentType = call.binary ? contentTypeUnaryProto : contentTypeUnaryJson;
    let errorMetadata: Headers | undefined;
    try {
      // Before the body is read, so a rejected caller's body is never received or parsed.
      if (this.#opts.requestGate) await this.#opts.requestGate(ctx);
      const limits: BodyLimits = {
        readMaxBytes: this.#opts.readMaxBytes,
        contentLength: req.field ? req.field("content-length") : req.headers.get("content-length"),
        maxJsonDepth: call.binary ? undefined : this.#maxJsonDepth,
      };
      const bytes = req.readBody
        ? await req.readBody(limits)
        : await readBody(req.bodyChunks !== undefined ? req.bodyChunks : req.body, limits);
      const input = serialization.getI(call.binary).parse(bytes);
      let output;
      try {
        output = this.#opts.interceptors.length === 0
          ? create(spec.method.output, await spec.impl(input, ctx))
          : await invokeIntercepted(spec, ctx, input, this.#opts.interceptors);
      } catch (e) {
        // What serveRpc's errorInterceptor does on the Connect path (rpc/errors.ts).
        throw toConnectError(e);
      }
      body = serialization.getO(call.binary).serialize(output);
    } catch (e) {
      const error = undecodableAsInvalidArgument(
        e instanceof ConnectError
          ? e
          : new ConnectError("internal error", Code.Internal, undefined, undefined, e),
      );
      status = codeToHttpStatus(error.code);
      contentType = contentTypeUnaryJson;
      if (!error.isWireError) errorMetadata = error.metadata;
      body = errorToJsonBytes(error, this.#opts.jsonOptions);
      ctx.finish(error);
    }
    ctx.finish();
    if (ctx.setHeaders || errorMetadata) {
      const header = ctx.responseHeaders(contentType);
      if (errorMetadata) mergeNonProtocolHeaders(header, errorMetadata);
      header.delete("content-length");
      return { status, headers: header, body };
    }
    return {
      status,
      headers: contentType === contentTypeUnaryProto ? PROTO_HEADERS : JSON_HEADERS,
      body,
    };
  }
}

/**
 * Connect reports a request body it cannot decode (invalid UTF-8 in a string, a malformed message)
 * as `internal`; for a server that is the client's fault, so it becomes `invalid_argument` — the
 * same rewrite serveRpc applies to the Connect path's responses.
 */
function undecodableAsInvalidArgument(error: ConnectError): ConnectError {
  if (error.code !== Code.Internal || !/^parse (binary|json): /.test(error.rawMessage)) {
    return error;
  }
  return new ConnectError(
    `request: cannot be decoded (${error.rawMessage})`,
    Code.InvalidArgument,
  );
}

/**
 * Runs the implementation inside the interceptors, as Connect's invokeUnaryImplementation does,
 * but hands the implementation `ctx` itself unless an interceptor replaced the request's header,
 * signal or context values.
 */
async function invokeIntercepted(
  spec: UnarySpec,
  ctx: FastContext,
  input: unknown,
  interceptors: Interceptor[],
): Promise<UnaryResponse["message"]> {
  const { method } = spec;
  type Next = (req: UnaryRequest) => Promise<UnaryResponse>;
  const impl: Next = async (req) => {
    const same = req.header === ctx.requestHeader && req.signal === ctx.signal &&
      req.contextValues === ctx.values;
    const implCtx: HandlerContext = same ? ctx : {
      method,
      service: method.parent,
      requestMethod: ctx.requestMethod,
      protocolName: ctx.protocolName,
      url: ctx.url,
      timeoutMs: () => ctx.timeoutMs(),
      signal: req.signal,
      requestHeader: req.header,
      values: req.contextValues,
      responseHeader: ctx.responseHeader,
      responseTrailer: ctx.responseTrailer,
    };
    return {
      stream: false,
      service: method.parent,
      method,
      header: ctx.responseHeader,
      trailer: ctx.responseTrailer,
      message: create(method.output, await spec.impl(req.message as never, implCtx)),
    };
  };
  let next = impl;
  for (const i of [...interceptors].reverse()) next = i(next as never) as Next;
  const res = await next({
    stream: false,
    service: method.parent,
    method,
    requestMethod: ctx.requestMethod,
    url: ctx.url,
    signal: ctx.signal,
    header: ctx.requestHeader,
    contextValues: ctx.values,
    message: input as never,
  });
  copyHeaders(res.header, ctx.responseHeader);
  copyHeaders(res.trailer, ctx.responseTrailer);
  return res.message;
}

/** Replaces `to`'s entries with `from`'s (a no-op when they are the same object). */
function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  for (const key of [...to.keys()]) to.delete(key);
  from.forEach((value, key) => to.set(key, value));
}

/** Aborts a call's signal when the call is over; one instance, so no DOMException per call. */
const CALL_FINISHED = new DOMException("the call has finished", "AbortError");

/**
 * A HandlerContext whose costly parts (signal, response headers) are made on first use. Like
 * Connect's, the signal aborts when the client goes away or the call finishes.
 */
class FastContext implements HandlerContext {
  readonly method: UnarySpec["method"];
  readonly service: UnarySpec["method"]["parent"];
  readonly requestMethod = "POST";
  readonly protocolName = "connect";
  readonly values: ContextValues;
  readonly url: string;
  readonly #request: FastRequest;
  /** When the caller's timeout ends (Date.now() time), if it sent one. */
  readonly #deadline: number | undefined;
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  #abort: AbortController | undefined;
  #finished = false;
  #responseHeader: Headers | undefined;
  #responseTrailer: Headers | undefined;

  constructor(spec: UnarySpec, req: FastRequest, values: ContextValues, timeoutMs?: number) {
    this.method = spec.method;
    this.service = spec.method.parent;
    this.values = values;
    this.url = req.url;
    this.#request = req;
    this.#deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  }

  /** The request's headers (made by the server only when first read, src/rpc/http1.ts). */
  get requestHeader(): Headers {
    return this.#request.headers;
  }

  /** What is left of the caller's timeout, as Connect's context says it. */
  timeoutMs(): number | undefined {
    return this.#deadline === undefined ? undefined : this.#deadline - Date.now();
  }

  get signal(): AbortSignal {
    if (!this.#abort) {
      const abort = new AbortController();
      this.#abort = abort;
      const client = this.#request.signal;
      if (this.#finished) abort.abort(CALL_FINISHED);
      else if (client.aborted) abort.abort(client.reason);
      else {
        const onClientGone = () => abort.abort(client.reason);
        client.addEventListener("abort", onClientGone, { once: true });
        abort.signal.addEventListener(
          "abort",
          () => client.removeEventListener("abort", onClientGone),
          { once: true },
        );
        // The caller's deadline aborts it too, with Connect's error; timed only once asked for.
        const left = this.timeoutMs();
        if (left !== undefined && !abort.signal.aborted) {
          const timedOut = () =>
            abort.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
          if (left <= 0) timedOut();
          else this.#deadlineTimer = setTimeout(timedOut, left);
        }
      }
    }
    return this.#abort.signal;
  }

  get responseHeader(): Headers {
    return this.#responseHeader ??= new Headers();
  }

  get responseTrailer(): Headers {
    return this.#responseTrailer ??= new Headers();
  }

  /** Ends the call: aborts the signal if anyone took it (with `reason` if the call failed). */
  finish(reason?: unknown): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#deadlineTimer);
    this.#abort?.abort(reason ?? CALL_FINISHED);
  }

  /** Whether the implementation may have set response headers or trailers. */
  get setHeaders(): boolean {
    return this.#responseHeader !== undefined || this.#responseTrailer !== undefined;
  }

  /** The HTTP response headers: what the implementation set, trailers as `trailer-*`. */
  responseHeaders(contentType: string): Headers {
    const header = this.#responseTrailer
      ? trailerMux(this.responseHeader, this.#responseTrailer)
      : new Headers(this.#responseHeader);
    header.set("content-type", contentType);
    return header;
  }
}
