/**
 * A small HTTP/1.1 server on Deno.listen, made for Connect calls (unary and server-streaming) and
 * the dashboard's static files: transport `iris` of src/rpc/server.ts, the default.
 *
 * What it adds over Deno.serve (2.9.6): it owns its connections, so a client that is slow to send
 * its headers (slowloris) or sends nothing is answered 408 and closed after `headersTimeout`, a
 * kept-alive connection without a request is closed after `idleTimeout`, a body must arrive within
 * `requestTimeout`, a client that stops reading its response is dropped after `requestTimeout`, and
 * one remote address may hold at most `maxConnectionsPerClient` connections. A waiting connection
 * costs one read buffer (4 KiB), whatever length its request announces. It is also cheaper per call:
 * a small call is one read and one write, and the fast path (fast_unary.ts) hands it raw bytes, not
 * a fetch Response.
 *
 * The protocol covered: keep-alive and pipelined requests (answered in order), Content-Length and
 * chunked request bodies, `Expect: 100-continue`, HEAD, HTTP/1.0 clients (no keep-alive unless
 * asked), chunked responses for bodies of unknown length (streamed as the handler produces them).
 * Not covered: upgrades (WebSocket, h2c), request trailers (read and dropped), TLS.
 * @module
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Duration } from "../time.ts";
import { formatDuration } from "../format.ts";
import { type BodyLimits, JsonDepthScanner } from "./body.ts";

/** Timeouts and caps of an {@linkcode Http1Server}. */
export interface Http1Limits {
  /** Time to send a request's head, from the connection (or the request's first byte). */
  headersTimeout: Duration;
  /** Time to send a whole request, head and body; also the most a response write may wait. */
  requestTimeout: Duration;
  /** A kept-alive connection without a new request for this long is closed. */
  idleTimeout: Duration;
  /** Connections one remote address may hold; more are answered 429 and closed. 0: no limit. */
  maxConnectionsPerClient: number;
  /** Largest request head (request line and headers). @default 64 KiB */
  maxHeaderBytes?: number;
}

/** A response given as bytes (what the fast path produces; no fetch Response needed). */
export interface RawResponse {
  status: number;
  /** Without content-length: the server sets it. */
  headers: Headers | readonly (readonly [string, string])[];
  body: Uint8Array;
}

/** Answers one request; throwing gives a 500. */
export type Http1Handler = (req: Http1Request) => Promise<Response | RawResponse>;

/** Where to listen. */
export interface Http1Listen {
  hostname: string;
  port: number;
  signal?: AbortSignal;
}

/** A running server; dispose it to stop. */
export interface Http1Server extends AsyncDisposable {
  readonly hostname: string;
  readonly port: number;
  readonly url: string;
  /** Stops accepting, closes idle and unfinished requests, waits for responses in progress. */
  shutdown(): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const INITIAL_BUFFER = 4096;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A header value a Headers object would refuse (NUL, CR, LF, a character past U+00FF). */
const BAD_VALUE = /[\0\r\n]|[^\0-\xff]/;

const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  412: "Precondition Failed",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  499: "Client Closed Request",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** A "HTTP/1.1 <status> <reason>" head with `connection: close` and an empty or small body. */
function simpleResponse(status: number, body = "", type = "text/plain"): Uint8Array {
  const bytes = encoder.encode(body);
  return encoder.encode(
    `HTTP/1.1 ${status} ${REASONS[status] ?? "Status"}\r\nconnection: close\r\n` +
      (bytes.length ? `content-type: ${type}\r\n` : "") +
      `content-length: ${bytes.length}\r\n\r\n${body}`,
  );
}

/** Starts the server. The port is bound when this returns. */
export function serveHttp1(
  handler: Http1Handler,
  limits: Http1Limits,
  listen: Http1Listen,
): Http1Server {
  const listener = Deno.listen({ hostname: listen.hostname, port: listen.port });
  const addr = listener.addr as Deno.NetAddr;
  const urlHost = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const server = new Server(listener, handler, limits, `http://${urlHost}:${addr.port}`);
  const shutdown = () => server.shutdown();
  listen.signal?.addEventListener("abort", () => void shutdown(), { once: true });
  if (listen.signal?.aborted) void shutdown();
  return {
    hostname: addr.hostname,
    port: addr.port,
    url: server.baseUrl,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

class Server {
  readonly connections = new Set<Connection>();
  readonly perClient = new Map<string, number>();
  readonly maxHeaderBytes: number;
  closing = false;
  date = new Date().toUTCString();
  #sweeper: ReturnType<typeof setInterval>;
  #stopped: Promise<void> | undefined;
  #drained: (() => void) | undefined;
  #accepting: Promise<void>;

  constructor(
    readonly listener: Deno.Listener,
    readonly handler: Http1Handler,
    readonly limits: Http1Limits,
    readonly baseUrl: string,
  ) {
    this.maxHeaderBytes = limits.maxHeaderBytes ?? 64 * 1024;
    const shortest = Math.min(
      ...[limits.headersTimeout, limits.requestTimeout, limits.idleTimeout].filter((t) => t > 0),
      4000,
    );
    // Deadlines are checked by one sweep, often enough to be within a quarter of the shortest.
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(25, Math.min(1000, shortest / 4)));
    this.#accepting = this.#accept();
  }

  async #accept(): Promise<void> {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.listener.accept() as Deno.TcpConn;
      } catch {
        return; // closed
      }
      if (this.closing) {
        conn.close();
        continue;
      }
      const peer = (conn.remoteAddr as Deno.NetAddr).hostname ?? "";
      const n = (this.perClient.get(peer) ?? 0) + 1;
      const cap = this.limits.maxConnectionsPerClient;
      if (cap > 0 && n > cap) {
        void refuse(
          conn,
          simpleResponse(
            429,
            JSON.stringify({
              code: "resource_exhausted",
              message: `too many connections from ${peer} (at most ${cap}): retry later`,
            }),
            "application/json",
          ),
        );
        continue;
      }
      this.perClient.set(peer, n);
      try {
        conn.setNoDelay(true);
      } catch { /* closed already */ }
      const c = new Connection(this, conn, peer);
      this.connections.add(c);
      void c.run().finally(() => {
        this.connections.delete(c);
        const left = (this.perClient.get(peer) ?? 1) - 1;
        if (left <= 0) this.perClient.delete(peer);
        else this.perClient.set(peer, left);
        if (this.connections.size === 0) this.#drained?.();
      });
    }
  }

  #sweep(): void {
    const now = Date.now();
    this.date = new Date(now).toUTCString();
    for (const c of this.connections) {
      if (c.deadline > 0 && now >= c.deadline) c.expire();
    }
  }

  shutdown(): Promise<void> {
    this.#stopped ??= (async () => {
      this.closing = true;
      try {
        this.listener.close();
      } catch { /* closed */ }
      await this.#accepting;
      for (const c of this.connections) c.stopWhenIdle();
      if (this.connections.size > 0) {
        await new Promise<void>((resolve) => this.#drained = resolve);
      }
      clearInterval(this.#sweeper);
    })();
    return this.#stopped;
  }
}

async function refuse(conn: Deno.Conn, answer: Uint8Array): Promise<void> {
  try {
    await writeAll(conn, answer);
  } catch { /* gone */ }
  try {
    conn.close();
  } catch { /* closed */ }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(off === 0 ? bytes : bytes.subarray(off));
}

/** What a connection is doing, for its deadline. */
const enum State {
  /** Waiting for a request's first byte (after a response). */
  Idle,
  /** Reading a request head. */
  Head,
  /** The handler runs; the body may still be arriving. */
  Handling,
  /** Writing a response. */
  Writing,
  Closed,
}

const DEADLINE = Symbol("deadline");

class Connection {
  buf = new Uint8Array(INITIAL_BUFFER);
  /** Unread bytes are buf[start, end). */
  start = 0;
  end = 0;
  /** A read in progress (at most one). */
  pending: Promise<number | null> | undefined;
  eof = false;
  state = State.Idle;
  /** Epoch ms when the current state's time is up; 0: none. */
  deadline = 0;
  /** The request whose body may still be arriving. */
  current: Http1Request | undefined;
  #wakeBody: ((v: typeof DEADLINE) => void) | undefined;
  #stopWhenIdle = false;

  constructor(readonly server: Server, readonly conn: Deno.TcpConn, readonly peer: string) {}

  /** Reads more bytes into the buffer (one read at a time); null at the end of the stream. */
  read(): Promise<number | null> {
    if (this.pending) return this.pending;
    if (this.eof) return Promise.resolve(null);
    if (this.start === this.end) this.start = this.end = 0;
    else if (this.end === this.buf.length) {
      if (this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      } else {
        const bigger = new Uint8Array(this.buf.length * 2);
        bigger.set(this.buf);
        this.buf = bigger;
      }
    }
    const p = this.conn.read(this.buf.subarray(this.end)).then(
      (n) => {
        this.pending = undefined;
        if (n === null) this.eof = true;
        else this.end += n;
        return n;
      },
      () => {
        this.pending = undefined;
        this.eof = true;
        return null;
      },
    );
    this.pending = p;
    return p;
  }

  /** A read for a body, which fails with deadline_exceeded when the request's time is up. */
  async readForBody(req: Http1Request): Promise<number | null> {
    if (req.expired) throw req.deadlineError();
    const read = this.read();
    const r = await Promise.race([read, new Promise<typeof DEADLINE>((r) => this.#wakeBody = r)]);
    this.#wakeBody = undefined;
    if (r === DEADLINE) throw req.deadlineError();
    return r;
  }

  /** The sweep found this connection's deadline passed. */
  expire(): void {
    this.deadline = 0;
    switch (this.state) {
      case State.Idle:
        this.close();
        break;
      case State.Head:
        void this.#answerAndClose(simpleResponse(408, "request headers not received in time\n"));
        break;
      case State.Handling: {
        const req = this.current;
        if (req && !req.bodyDone) {
          req.expired = true;
          this.#wakeBody?.(DEADLINE);
        }
        break;
      }
      case State.Writing:
        this.close(); // the client does not read its response
        break;
    }
  }

  /** Server shutdown: close now if no request is being handled, else after the response. */
  stopWhenIdle(): void {
    this.#stopWhenIdle = true;
    if (this.state === State.Idle || this.state === State.Head) this.close();
    else if (this.current && !this.current.bodyDone) this.close();
  }

  async #answerAndClose(bytes: Uint8Array): Promise<void> {
    this.state = State.Writing;
    this.deadline = Date.now() + 1000;
    try {
      await writeAll(this.conn, bytes);
    } catch { /* gone */ }
    this.close();
  }

  close(): void {
    if (this.state === State.Closed) return;
    this.state = State.Closed;
    this.deadline = 0;
    this.eof = true;
    try {
      this.conn.close();
    } catch { /* closed */ }
  }

  async run(): Promise<void> {
    const { limits } = this.server;
    let first = true;
    try {
      while (this.state !== State.Closed && !this.#stopWhenIdle) {
        // Wait for a request head.
        if (first || this.start < this.end) {
          this.state = State.Head;
          this.deadline = Date.now() + limits.headersTimeout;
        } else {
          this.state = State.Idle;
          this.deadline = limits.idleTimeout > 0 ? Date.now() + limits.idleTimeout : 0;
        }
        first = false;
        const headEnd = await this.#readHead();
        if (headEnd < 0) break;
        const req = this.#parseHead(headEnd);
        if (req === undefined) break;
        this.current = req;
        this.state = State.Handling;
        this.deadline = limits.requestTimeout > 0 && !req.bodyDone
          ? req.startedAt + limits.requestTimeout
          : 0;
        if (req.expectContinue && !req.bodyDone) {
          await writeAll(this.conn, encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
        }
        let res: Response | RawResponse;
        try {
          res = await this.server.handler(req);
        } catch (err) {
          res = {
            status: 500,
            headers: [["content-type", "text/plain"]],
            body: encoder.encode(
              `internal error: ${err instanceof Error ? err.message : String(err)}\n`,
            ),
          };
        }
        if ((this.state as State) === State.Closed) {
          if (res instanceof Response) await res.body?.cancel().catch(() => {});
          break;
        }
        // A body not read to its end: skip it if it is all here, else close after answering.
        const keepAlive = req.keepAlive && req.skipRest() && !this.server.closing &&
          !this.#stopWhenIdle;
        this.state = State.Writing;
        this.deadline = limits.requestTimeout > 0 ? Date.now() + limits.requestTimeout : 0;
        const ok = res instanceof Response
          ? await this.#writeResponse(req, res, keepAlive)
          : await this.#writeRaw(req, res, keepAlive);
        this.current = undefined;
        req.finish();
        if (!ok || !keepAlive) break;
      }
    } catch {
      // A write or read failed: the client went away.
    } finally {
      this.current?.abort();
      this.close();
    }
  }

  /** Reads until a whole head is buffered; its end (after the blank line), or -1 to close. */
  async #readHead(): Promise<number> {
    // Bytes after `start` already searched (reads may move the buffer's contents).
    let seen = 0;
    for (;;) {
      // Tolerate empty lines before a request (RFC 9112 §2.2).
      while (
        this.start < this.end && (this.buf[this.start] === 13 || this.buf[this.start] === 10)
      ) {
        this.start++;
        seen = Math.max(0, seen - 1);
      }
      const found = indexOfHeadEnd(this.buf, this.start + Math.max(0, seen - 3), this.end);
      if (found >= 0) return found + 4;
      seen = this.end - this.start;
      if (this.end - this.start >= this.server.maxHeaderBytes) {
        await this.#answerAndClose(simpleResponse(431, "request head too large\n"));
        return -1;
      }
      const n = await this.read();
      if (n === null) return -1;
      if (this.state === State.Idle) {
        this.state = State.Head;
        this.deadline = Date.now() + this.server.limits.headersTimeout;
      }
    }
  }

  /** Parses the head in buf[start, headEnd); undefined (after answering 400) when malformed. */
  #parseHead(headEnd: number): Http1Request | undefined {
    const text = decoder.decode(this.buf.subarray(this.start, headEnd - 4));
    this.start = headEnd;
    const lines = text.split("\r\n");
    const requestLine = lines[0]!.split(" ");
    const bad = (why: string, status = 400) => {
      void this.#answerAndClose(simpleResponse(status, `${why}\n`));
      return undefined;
    };
    if (requestLine.length !== 3) return bad("malformed request line");
    const [method, target, version] = requestLine as [string, string, string];
    if (!TOKEN.test(method)) return bad("malformed method");
    if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
      return bad("HTTP version not supported", 505);
    }
    // Names lower-cased, values trimmed: what a Headers object would hold, made only when read.
    const fields: [string, string][] = [];
    let contentLength: string | null = null;
    let transferEncoding: string | null = null;
    let connection: string | null = null;
    let host: string | null = null;
    let expect: string | null = null;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(":");
      if (colon <= 0) return bad("malformed header line");
      const name = line.slice(0, colon);
      const value = line.slice(colon + 1).trim();
      if (!TOKEN.test(name)) return bad("malformed header name");
      // What Headers.append refuses: NUL, CR, LF, and characters past U+00FF.
      if (BAD_VALUE.test(value)) return bad("malformed header value");
      fields.push([name.toLowerCase(), value]);
      switch (name.length) {
        case 4:
          if (name.toLowerCase() === "host") host = value;
          break;
        case 6:
          if (name.toLowerCase() === "expect") expect = value;
          break;
        case 10:
          if (name.toLowerCase() === "connection") connection = value;
          break;
        case 14:
          if (name.toLowerCase() === "content-length") {
            if (contentLength !== null && contentLength !== value) {
              return bad("conflicting content-length");
            }
            contentLength = value;
          }
          break;
        case 17:
          if (name.toLowerCase() === "transfer-encoding") {
            transferEncoding = transferEncoding === null ? value : `${transferEncoding}, ${value}`;
          }
          break;
      }
    }
    let length = 0;
    let chunked = false;
    if (transferEncoding !== null) {
      if (contentLength !== null) return bad("both content-length and transfer-encoding");
      if (transferEncoding.toLowerCase() !== "chunked") {
        return bad("transfer-encoding not supported", 501);
      }
      chunked = true;
    } else if (contentLength !== null) {
      if (!/^\d{1,15}$/.test(contentLength)) return bad("malformed content-length");
      length = Number(contentLength);
    }
    const conn = connection?.toLowerCase();
    const keepAlive = version === "HTTP/1.1"
      ? !(conn && /(?:^|,)\s*close\s*(?:,|$)/.test(conn))
      : !!(conn && /(?:^|,)\s*keep-alive\s*(?:,|$)/.test(conn));
    return new Http1Request(this, {
      method,
      target,
      version,
      fields,
      host: host && /^[\w.\-:[\]]+$/.test(host) ? host : undefined,
      length,
      chunked,
      keepAlive,
      expectContinue: version === "HTTP/1.1" && expect?.toLowerCase() === "100-continue",
    });
  }

  #head(status: number, keepAlive: boolean, http10: boolean): string {
    return `HTTP/1.1 ${status} ${REASONS[status] ?? "Status"}\r\ndate: ${this.server.date}\r\n` +
      (keepAlive ? (http10 ? "connection: keep-alive\r\n" : "") : "connection: close\r\n");
  }

  /** Writes one chunk of a chunked body (HTTP/1.0: the bytes), after `head` if given. */
  async #writeChunk(head: Uint8Array | undefined, chunk: Uint8Array, http10: boolean) {
    const size = http10 ? "" : `${chunk.byteLength.toString(16)}\r\n`;
    const tail = http10 ? 0 : 2;
    const before = (head?.length ?? 0) + size.length;
    const out = new Uint8Array(before + chunk.byteLength + tail);
    if (head) out.set(head);
    encoder.encodeInto(size, out.subarray(head?.length ?? 0));
    out.set(chunk, before);
    if (tail) out.set([13, 10], before + chunk.byteLength);
    await writeAll(this.conn, out);
  }

  async #writeRaw(req: Http1Request, res: RawResponse, keepAlive: boolean): Promise<boolean> {
    let head = this.#head(res.status, keepAlive, req.version === "HTTP/1.0");
    if (Array.isArray(res.headers)) {
      for (const [k, v] of res.headers) head += `${k}: ${v}\r\n`;
    } else (res.headers as Headers).forEach((v, k) => head += `${k}: ${v}\r\n`);
    const body = req.method === "HEAD" ? undefined : res.body;
    head += `content-length: ${res.body.byteLength}\r\n\r\n`;
    const out = new Uint8Array(head.length + (body?.byteLength ?? 0));
    const { read, written } = encoder.encodeInto(head, out);
    let bytes: Uint8Array;
    if (read === head.length && written === head.length) {
      if (body) out.set(body, written);
      bytes = out;
    } else {
      const h = encoder.encode(head);
      bytes = new Uint8Array(h.length + (body?.byteLength ?? 0));
      bytes.set(h);
      if (body) bytes.set(body, h.length);
    }
    await writeAll(this.conn, bytes);
    return true;
  }

  async #writeResponse(req: Http1Request, res: Response, keepAlive: boolean): Promise<boolean> {
    const http10 = req.version === "HTTP/1.0";
    const noBody = req.method === "HEAD" || res.status === 204 || res.status === 304;
    // A body of unknown length is sent chunked (HTTP/1.0: until the connection closes).
    const body = noBody ? null : res.body;
    if (noBody) await res.body?.cancel().catch(() => {});
    const ka = keepAlive && !(body && http10);
    let head = this.#head(res.status, ka, http10);
    res.headers.forEach((v, k) => {
      if (
        k === "content-length" || k === "transfer-encoding" || k === "connection" ||
        k === "keep-alive" || k === "date"
      ) return;
      head += `${k}: ${v}\r\n`;
    });
    if (!body) {
      head += res.status === 304 || res.status === 204 ? "\r\n" : "content-length: 0\r\n\r\n";
      await writeAll(this.conn, encoder.encode(head));
      return true;
    }
    const reader = body.getReader();
    let pendingHead: Uint8Array | undefined;
    try {
      // A body that is not a stream of messages is sent whole, with its length, when it is small.
      let buffered: Uint8Array[] | undefined;
      if (!STREAMING_TYPE.test(res.headers.get("content-type") ?? "")) {
        buffered = [];
        let size = 0;
        for (;;) {
          const r = await reader.read();
          if (r.done) {
            const h = encoder.encode(`${head}content-length: ${size}\r\n\r\n`);
            const out = new Uint8Array(h.length + size);
            out.set(h);
            let off = h.length;
            for (const c of buffered) {
              out.set(c, off);
              off += c.byteLength;
            }
            await writeAll(this.conn, out);
            return ka;
          }
          buffered.push(r.value);
          size += r.value.byteLength;
          if (size > MAX_BUFFERED_BODY) break;
        }
      }
      if (!http10) head += "transfer-encoding: chunked\r\n";
      head += "\r\n";
      pendingHead = encoder.encode(head);
      for (const chunk of buffered ?? []) {
        await this.#writeChunk(pendingHead, chunk, http10);
        pendingHead = undefined;
      }
      for (;;) {
        this.deadline = 0; // waiting on the handler, not the client
        const r = await reader.read();
        this.deadline = this.server.limits.requestTimeout > 0
          ? Date.now() + this.server.limits.requestTimeout
          : 0;
        if (r.done) break;
        if (r.value.byteLength === 0) continue;
        await this.#writeChunk(pendingHead, r.value, http10);
        pendingHead = undefined;
      }
      const last = http10 ? new Uint8Array(0) : encoder.encode("0\r\n\r\n");
      if (pendingHead) {
        const out = new Uint8Array(pendingHead.length + last.length);
        out.set(pendingHead);
        out.set(last, pendingHead.length);
        await writeAll(this.conn, out);
      } else if (last.length) await writeAll(this.conn, last);
    } catch (err) {
      reader.cancel(err).catch(() => {});
      req.abort();
      return false;
    } finally {
      reader.releaseLock();
    }
    return ka;
  }
}

/** Response types whose body is a stream of messages: sent chunked as they come. */
const STREAMING_TYPE = /^application\/(?:connect\+|grpc)|^text\/event-stream/i;
/** Larger bodies of other types are sent chunked rather than buffered for their length. */
const MAX_BUFFERED_BODY = 4 * 1024 * 1024;

/** Index of the blank line (CR LF CR LF) ending a head in buf[from, to), or -1. */
function indexOfHeadEnd(buf: Uint8Array, from: number, to: number): number {
  // A plain loop: TypedArray.indexOf would scan past `to`, to the end of the buffer.
  for (let i = from; i + 3 < to; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

/** The client went away before its answer was sent. */
const CLIENT_GONE = new DOMException("the client went away", "AbortError");

interface ParsedHead {
  method: string;
  target: string;
  version: string;
  /** Header fields in order, names lower-cased. */
  fields: readonly (readonly [string, string])[];
  host: string | undefined;
  /** Content-Length (0 without one). */
  length: number;
  chunked: boolean;
  keepAlive: boolean;
  expectContinue: boolean;
}

/** One request on a connection: what the RPC layer reads (src/rpc/server.ts IncomingCall). */
export class Http1Request {
  readonly method: string;
  readonly path: string;
  readonly peer: string;
  readonly httpVersion: string;
  readonly version: string;
  readonly keepAlive: boolean;
  readonly expectContinue: boolean;
  readonly startedAt = Date.now();
  /** The request's time is up (the body did not arrive in time). */
  expired = false;
  bodyDone: boolean;
  readonly #conn: Connection;
  readonly #target: string;
  readonly #host: string | undefined;
  readonly #chunked: boolean;
  /** Body bytes still to come (Content-Length), or of the current chunk (chunked). */
  #remaining: number;
  #chunkState: "size" | "data" | "trailers" = "size";
  #received = 0;
  #abort: AbortController | undefined;
  #url: string | undefined;
  #bodyStream: ReadableStream<Uint8Array> | null | undefined;
  #finished = false;
  readonly #fields: readonly (readonly [string, string])[];
  #headers: Headers | undefined;

  constructor(conn: Connection, head: ParsedHead) {
    this.#conn = conn;
    this.method = head.method;
    this.#fields = head.fields;
    this.#target = head.target;
    this.#host = head.host;
    const q = head.target.indexOf("?");
    this.path = q < 0 ? head.target : head.target.slice(0, q);
    this.peer = conn.peer;
    this.version = head.version;
    this.httpVersion = head.version === "HTTP/1.0" ? "1.0" : "1.1";
    this.keepAlive = head.keepAlive;
    this.expectContinue = head.expectContinue;
    this.#chunked = head.chunked;
    this.#remaining = head.chunked ? 0 : head.length;
    this.bodyDone = !head.chunked && head.length === 0;
  }

  /**
   * The request's headers, made when first read: a Headers object validates each field again
   * (a few µs per request), and the fast path reads its few fields with {@linkcode field} (#20).
   */
  get headers(): Headers {
    if (!this.#headers) {
      const headers = new Headers();
      for (const [k, v] of this.#fields) headers.append(k, v);
      this.#headers = headers;
    }
    return this.#headers;
  }

  /** One header's value as `headers.get(name)` gives it, without making the Headers object. */
  field(name: string): string | null {
    const lower = name.toLowerCase();
    const fields = this.#fields;
    let value: string | null = null;
    // Indexed, not for-of with destructuring: until optimized that allocates per field, and the
    // fast path asks for several fields of every request.
    for (let i = 0; i < fields.length; i++) {
      const field = fields[i]!;
      if (field[0] === lower) value = value === null ? field[1] : `${value}, ${field[1]}`;
    }
    return value;
  }

  get url(): string {
    if (this.#url === undefined) {
      const t = this.#target;
      if (/^https?:\/\//i.test(t)) this.#url = t;
      else {
        const base = this.#host ? `http://${this.#host}` : this.#conn.server.baseUrl;
        this.#url = base + (t.startsWith("/") ? t : `/${t}`);
      }
    }
    return this.#url;
  }

  /**
   * Aborts when the client goes away before its answer is sent (noticed by a read once the body
   * is in) or when the call cannot be answered.
   */
  get signal(): AbortSignal {
    if (!this.#abort) {
      this.#abort = new AbortController();
      if (this.bodyDone) this.#watch();
    }
    return this.#abort.signal;
  }

  /** Watches the connection for its end while the answer is prepared. */
  #watch(): void {
    const conn = this.#conn;
    if (this.#finished || conn.pending || conn.eof) {
      if (conn.eof) this.abort();
      return;
    }
    void conn.read().then((n) => {
      if (n === null && !this.#finished) this.abort();
    });
  }

  abort(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#abort?.abort(CLIENT_GONE);
  }

  /** The response was written. */
  finish(): void {
    this.#finished = true;
  }

  deadlineError(): ConnectError {
    return new ConnectError(
      `request: the body did not arrive within ${
        formatDuration(this.#conn.server.limits.requestTimeout)
      }`,
      Code.DeadlineExceeded,
    );
  }

  #done(): void {
    this.bodyDone = true;
    if (this.#conn.state === State.Handling) this.#conn.deadline = 0;
    if (this.#abort && !this.#finished) this.#watch();
  }

  /** The next piece of the body, or null at its end. */
  async nextChunk(): Promise<Uint8Array | null> {
    const conn = this.#conn;
    for (;;) {
      if (this.bodyDone) return null;
      if (!this.#chunked) {
        const avail = conn.end - conn.start;
        if (avail > 0) {
          const k = Math.min(avail, this.#remaining);
          const chunk = conn.buf.slice(conn.start, conn.start + k);
          conn.start += k;
          this.#remaining -= k;
          this.#received += k;
          if (this.#remaining === 0) this.#done();
          return chunk;
        }
      } else {
        const chunk = this.#chunkedStep();
        if (chunk === "more") { /* read below */ }
        else if (chunk === "bad") {
          throw new ConnectError("protocol error: malformed chunked body", Code.InvalidArgument);
        } else if (chunk !== null) return chunk;
        else if (this.bodyDone) return null;
        else continue;
      }
      const n = await conn.readForBody(this);
      if (n === null) {
        throw new ConnectError(
          this.#chunked
            ? "protocol error: the connection closed before the body's end"
            : `protocol error: promised ${
              this.#received + this.#remaining
            } bytes, received ${this.#received}`,
          Code.InvalidArgument,
        );
      }
    }
  }

  /** One step of chunked decoding over what is buffered: a chunk, null (state moved), "more". */
  #chunkedStep(): Uint8Array | null | "more" | "bad" {
    const conn = this.#conn;
    const buf = conn.buf;
    if (this.#chunkState === "data") {
      const avail = conn.end - conn.start;
      if (this.#remaining > 0) {
        if (avail === 0) return "more";
        const k = Math.min(avail, this.#remaining);
        const chunk = buf.slice(conn.start, conn.start + k);
        conn.start += k;
        this.#remaining -= k;
        this.#received += k;
        return chunk;
      }
      if (avail < 2) return "more";
      if (buf[conn.start] !== 13 || buf[conn.start + 1] !== 10) return "bad";
      conn.start += 2;
      this.#chunkState = "size";
      return null;
    }
    // A size line or a trailer line.
    const lf = buf.indexOf(10, conn.start);
    if (lf < 0 || lf >= conn.end) return conn.end - conn.start > 1024 ? "bad" : "more";
    const line = decoder.decode(buf.subarray(conn.start, lf)).replace(/\r$/, "");
    conn.start = lf + 1;
    if (this.#chunkState === "trailers") {
      if (line === "") this.#done();
      return null;
    }
    const m = /^([0-9a-fA-F]{1,12})(?:;.*)?$/.exec(line.trim());
    if (!m) return "bad";
    const size = parseInt(m[1]!, 16);
    if (size === 0) this.#chunkState = "trailers";
    else {
      this.#chunkState = "data";
      this.#remaining = size;
    }
    return null;
  }

  /**
   * The whole body under `limits`, as one buffer: refused before reading when it announces more
   * than the limit, refused as soon as it passes the limit, JSON depth checked on the bytes.
   */
  async readBody(limits: BodyLimits): Promise<Uint8Array> {
    const { readMaxBytes } = limits;
    const announced = this.#chunked ? undefined : this.#remaining + this.#received;
    if (announced !== undefined && announced > readMaxBytes) {
      throw new ConnectError(
        `message size ${announced} is larger than configured readMaxBytes ${readMaxBytes}`,
        Code.ResourceExhausted,
      );
    }
    const scanner = limits.maxJsonDepth === undefined
      ? undefined
      : new JsonDepthScanner(limits.maxJsonDepth);
    let first: Uint8Array | undefined;
    let chunks: Uint8Array[] | undefined;
    let count = 0;
    for (;;) {
      const chunk = await this.nextChunk();
      if (chunk === null) break;
      count += chunk.byteLength;
      if (count > readMaxBytes) {
        throw new ConnectError(
          `message size is larger than configured readMaxBytes ${readMaxBytes}`,
          Code.ResourceExhausted,
        );
      }
      scanner?.feed(chunk);
      if (first === undefined) first = chunk;
      else (chunks ??= [first]).push(chunk);
    }
    if (chunks === undefined) return first ?? new Uint8Array(0);
    const all = new Uint8Array(count);
    let offset = 0;
    for (const c of chunks) {
      all.set(c, offset);
      offset += c.byteLength;
    }
    return all;
  }

  /** The body's chunks (unchecked: the caller applies limits, src/rpc/body.ts). */
  get bodyChunks(): AsyncIterable<Uint8Array> | null {
    if (this.bodyDone && this.#received === 0) return null;
    return {
      [Symbol.asyncIterator]: () => ({
        next: async (): Promise<IteratorResult<Uint8Array>> => {
          const chunk = await this.nextChunk();
          return chunk === null ? { done: true, value: undefined } : { done: false, value: chunk };
        },
        return: (): Promise<IteratorResult<Uint8Array>> =>
          Promise.resolve({ done: true, value: undefined }),
      }),
    };
  }

  /** The body as a stream (null when the request has none). */
  get body(): ReadableStream<Uint8Array> | null {
    if (this.#bodyStream === undefined) {
      this.#bodyStream = this.bodyDone && this.#received === 0
        ? null
        : new ReadableStream<Uint8Array>({
          pull: async (c) => {
            const chunk = await this.nextChunk();
            if (chunk === null) c.close();
            else c.enqueue(chunk);
          },
        }, { highWaterMark: 0 });
    }
    return this.#bodyStream;
  }

  /**
   * After the handler: skips what is left of the body if all of it is already buffered; false
   * when the connection cannot be reused (the rest of the body has not arrived).
   */
  skipRest(): boolean {
    if (this.bodyDone) return true;
    if (this.#chunked) return false;
    const conn = this.#conn;
    if (conn.end - conn.start < this.#remaining) return false;
    conn.start += this.#remaining;
    this.#remaining = 0;
    this.bodyDone = true;
    return true;
  }

  /** The request as a fetch Request (for handlers that want one: the dashboard's files). */
  toFetchRequest(): Request {
    const body = this.method === "GET" || this.method === "HEAD" ? null : this.body;
    return new Request(this.url, {
      method: this.method,
      headers: this.headers,
      signal: this.signal,
      ...(body ? { body, duplex: "half" } : {}),
    } as RequestInit);
  }
}
