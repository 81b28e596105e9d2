/**
 * A lean Connect client transport for unary calls over plain HTTP/1.1 (Deno.connect), for the
 * clients where both ends are Iris (CLI, workers, controller → worker): binary protobuf, kept-alive
 * connections shared by every client of the process, one write and (usually) one read per call,
 * no fetch Request/Response, per-method serializers made once. Server-streaming calls, https URLs
 * and anything it does not handle go to a fallback transport (connect-web over fetch).
 *
 * At most 64 connections per server are open at once (more calls wait for one); an idle one is
 * kept 2 s for the next call, by a timer that does not keep the program alive, so heartbeats and
 * polls reuse connections. A call that finds its kept-alive connection closed by the server before
 * any answer byte is sent again once on a new connection.
 * @module
 */
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import {
  appendHeaders,
  Code,
  ConnectError,
  type ContextValues,
  createContextValues,
  type Interceptor,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  createClientMethodSerializers,
  createMethodUrl,
  runUnaryCall,
} from "@connectrpc/connect/protocol";
import {
  contentTypeUnaryProto,
  errorFromJson,
  requestHeader,
  trailerDemux,
  validateResponse,
} from "@connectrpc/connect/protocol-connect";

/** Options of {@linkcode createHttp1Transport}. */
export interface Http1TransportOptions {
  /** "http://host:port" */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <token>` (without an interceptor, so calls stay lean). */
  token?: string;
  interceptors?: Interceptor[];
  /** Carries streaming calls. */
  fallback: Transport;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A kept-alive HTTP/1.1 connection to one server. */
class ClientConn {
  buf = new Uint8Array(16 * 1024);
  start = 0;
  end = 0;
  closed = false;
  /** Calls it has answered (0: new). */
  used = 0;
  /** When it was last given back to the pool (epoch ms). */
  idleSince = 0;
  constructor(readonly conn: Deno.TcpConn, readonly onClose: () => void) {}

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.conn.close();
    } catch { /* closed */ }
    this.onClose();
  }

  /** Reads more bytes; false at the end of the stream. */
  async fill(): Promise<boolean> {
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
    const n = await this.conn.read(this.buf.subarray(this.end));
    if (n === null) return false;
    this.end += n;
    return true;
  }
}

/** How long an idle connection is kept for the next call (well under servers' idle timeout). */
const IDLE_KEEP_MS = 2000;
/**
 * Connections open at once to one server, idle or busy; more calls wait for one to come back.
 * Well under a server's per-address cap (256 by default), so a burst from one process (a
 * dispatch to many attempts, a poll storm) queues here rather than being refused there, and
 * never opens more sockets than the server's listen backlog takes at once.
 */
export const MAX_CONNECTIONS_PER_SERVER = 64;

/** Connections to one host:port. */
class Pool {
  readonly idle: ClientConn[] = [];
  /** Connections open (idle, busy, or being connected). */
  open = 0;
  /** Calls waiting for a connection, first come first served. */
  readonly #waiting: ((c: ClientConn | undefined) => void)[] = [];
  #sweep: ReturnType<typeof setTimeout> | undefined;
  constructor(
    readonly hostname: string,
    readonly port: number,
    readonly maxConnections = MAX_CONNECTIONS_PER_SERVER,
  ) {}

  /** Calls waiting for a connection (for tests and diagnostics). */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** A connection for one call; waits while `maxConnections` are busy (until `signal` aborts). */
  async take(signal?: AbortSignal): Promise<ClientConn> {
    for (;;) {
      const c = this.idle.pop();
      if (c) return c;
      if (this.open < this.maxConnections) break;
      // At the cap: a connection given back comes to the first waiter (undefined: a slot freed).
      const handed = await this.#wait(signal);
      if (handed) return handed;
      if (this.open < this.maxConnections) break;
    }
    this.open++;
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname: this.hostname, port: this.port });
    } catch (err) {
      this.#release();
      throw err;
    }
    try {
      conn.setNoDelay(true);
    } catch { /* closed */ }
    return new ClientConn(conn, () => this.#release());
  }

  give(c: ClientConn): void {
    if (c.closed) return;
    const next = this.#waiting.shift();
    if (next) return next(c);
    c.idleSince = Date.now();
    this.idle.push(c);
    this.#schedule();
  }

  #wait(signal: AbortSignal | undefined): Promise<ClientConn | undefined> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const waiter = (c: ClientConn | undefined) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(c);
      };
      const onAbort = () => {
        const i = this.#waiting.indexOf(waiter);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  /** A connection closed: its slot goes to the first waiter. */
  #release(): void {
    this.open--;
    this.#waiting.shift()?.(undefined);
  }

  /** Closes connections idle for IDLE_KEEP_MS; its timer does not keep the program alive. */
  #schedule(): void {
    if (this.#sweep !== undefined) return;
    this.#sweep = setTimeout(() => {
      this.#sweep = undefined;
      const now = Date.now();
      const keep = this.idle.filter((c) => now - c.idleSince < IDLE_KEEP_MS);
      const stale = this.idle.filter((c) => !keep.includes(c));
      this.idle.splice(0, this.idle.length, ...keep);
      for (const c of stale) c.close();
      if (keep.length) this.#schedule();
    }, IDLE_KEEP_MS);
    Deno.unrefTimer(this.#sweep as unknown as number);
  }
}

const POOLS = new Map<string, Pool>();

/** Connections to `baseUrl`'s server: open, idle, and calls waiting for one. */
export function connectionStats(baseUrl: string): { open: number; idle: number; waiting: number } {
  const pool = POOLS.get(new URL(baseUrl).host);
  return { open: pool?.open ?? 0, idle: pool?.idle.length ?? 0, waiting: pool?.waiting ?? 0 };
}

function poolFor(url: URL): Pool {
  const key = url.host;
  let pool = POOLS.get(key);
  if (!pool) {
    const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    pool = new Pool(hostname, Number(url.port || 80));
    POOLS.set(key, pool);
  }
  return pool;
}

/** What one exchange returned. */
interface RawAnswer {
  status: number;
  /** Made of the received fields only when read ({@linkcode LazyHeaders}). */
  readonly headers: Headers;
  /** The content-type field (null when absent). */
  contentType: string | null;
  /** Whether a field is a Connect trailer (`trailer-…`). */
  hasTrailer: boolean;
  body: Uint8Array;
}

/**
 * Headers filled from received fields on first use: the header of a successful unary answer is
 * rarely read, and a Headers object costs a validation per field (a tenth of a submitter's CPU per
 * call, #20). Deno's Request and Response constructors read a Headers' own list, not its methods:
 * give them `new Headers(lazy)`.
 */
class LazyHeaders extends Headers {
  #fields: readonly (readonly [string, string])[] | undefined;

  constructor(fields: readonly (readonly [string, string])[]) {
    super();
    this.#fields = fields.length ? fields : undefined;
  }

  #fill(): void {
    const fields = this.#fields;
    if (!fields) return;
    this.#fields = undefined;
    for (const [k, v] of fields) super.append(k, v);
  }

  override append(name: string, value: string): void {
    this.#fill();
    super.append(name, value);
  }

  override delete(name: string): void {
    this.#fill();
    super.delete(name);
  }

  override get(name: string): string | null {
    this.#fill();
    return super.get(name);
  }

  override getSetCookie(): string[] {
    this.#fill();
    return super.getSetCookie();
  }

  override has(name: string): boolean {
    this.#fill();
    return super.has(name);
  }

  override set(name: string, value: string): void {
    this.#fill();
    super.set(name, value);
  }

  override forEach(
    callback: (value: string, key: string, parent: this) => void,
    thisArg?: unknown,
  ): void {
    this.#fill();
    super.forEach(callback, thisArg);
  }

  override entries(): ReturnType<Headers["entries"]> {
    this.#fill();
    return super.entries();
  }

  override keys(): ReturnType<Headers["keys"]> {
    this.#fill();
    return super.keys();
  }

  override values(): ReturnType<Headers["values"]> {
    this.#fill();
    return super.values();
  }

  override [Symbol.iterator](): ReturnType<Headers["entries"]> {
    this.#fill();
    return super[Symbol.iterator]();
  }
}

/** The connection failed (like fetch's TypeError, which Iris's clients treat as transient). */
function networkError(url: string, err: unknown): ConnectError {
  const cause = new TypeError(
    `error sending request for url (${url}): ${err instanceof Error ? err.message : String(err)}`,
  );
  return new ConnectError(cause.message, Code.Unknown, undefined, undefined, cause);
}

/** Sends `request` on a pooled connection and reads the answer. */
async function exchange(
  pool: Pool,
  url: string,
  request: Uint8Array,
  signal: AbortSignal | undefined,
): Promise<RawAnswer> {
  for (let attempt = 0;; attempt++) {
    let c: ClientConn;
    try {
      c = await pool.take(signal);
    } catch (err) {
      if (signal?.aborted) throw ConnectError.from(signal.reason, Code.Canceled);
      throw networkError(url, err);
    }
    const reused = c.used > 0;
    let onAbort: (() => void) | undefined;
    if (signal) {
      if (signal.aborted) {
        pool.give(c);
        throw ConnectError.from(signal.reason, Code.Canceled);
      }
      onAbort = () => c.close();
      signal.addEventListener("abort", onAbort, { once: true });
    }
    let received = false;
    try {
      let off = 0;
      while (off < request.length) {
        off += await c.conn.write(off === 0 ? request : request.subarray(off));
      }
      const answer = await readAnswer(c, () => received = true);
      c.used++;
      if (answer.keepAlive) pool.give(c);
      else c.close();
      return answer;
    } catch (err) {
      c.close();
      if (signal?.aborted) throw ConnectError.from(signal.reason, Code.Canceled);
      if (err instanceof ConnectError) throw err;
      // A kept-alive connection the server had closed: nothing was answered, send it again.
      if (reused && !received && attempt === 0) continue;
      throw networkError(url, err);
    } finally {
      if (onAbort) signal!.removeEventListener("abort", onAbort);
    }
  }
}

/** Reads one response from `c`; `onByte` is called once the first byte is in. */
async function readAnswer(
  c: ClientConn,
  onByte: () => void,
): Promise<RawAnswer & { keepAlive: boolean }> {
  let headEnd = -1;
  let scanned = 0;
  for (;;) {
    const i = indexOfHeadEnd(c.buf, c.start + Math.max(0, scanned - 3), c.end);
    if (i >= 0) {
      headEnd = i;
      break;
    }
    scanned = c.end - c.start;
    if (scanned > 256 * 1024) throw new Error("response head too large");
    if (!(await c.fill())) throw new Error("the server closed the connection");
    onByte();
  }
  const lines = decoder.decode(c.buf.subarray(c.start, headEnd)).split("\r\n");
  c.start = headEnd + 4;
  const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0]!);
  if (!m) throw new Error(`malformed response: ${JSON.stringify(lines[0]!.slice(0, 80))}`);
  const status = Number(m[2]);
  const fields: [string, string][] = [];
  let contentType: string | null = null;
  let hasTrailer = false;
  let length = -1;
  let chunked = false;
  let keepAlive = m[1] === "1";
  for (let k = 1; k < lines.length; k++) {
    const line = lines[k]!;
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-length") length = Number(value);
    else if (name === "transfer-encoding") chunked = value.toLowerCase().includes("chunked");
    else if (name === "connection") {
      const v = value.toLowerCase();
      if (v.includes("close")) keepAlive = false;
      else if (v.includes("keep-alive")) keepAlive = true;
    } else if (name === "content-type") contentType = value;
    else if (name.startsWith("trailer-")) hasTrailer = true;
    fields.push([name, value]);
  }
  let body: Uint8Array;
  if (chunked) body = await readChunked(c);
  else if (length >= 0) {
    while (c.end - c.start < length) {
      if (!(await c.fill())) throw new Error("the server closed the connection mid-answer");
    }
    body = c.buf.slice(c.start, c.start + length);
    c.start += length;
  } else {
    // Until the connection closes.
    const parts: Uint8Array[] = [c.buf.slice(c.start, c.end)];
    c.start = c.end;
    while (await c.fill()) {
      parts.push(c.buf.slice(c.start, c.end));
      c.start = c.end;
    }
    body = concat(parts);
    keepAlive = false;
  }
  return { status, headers: new LazyHeaders(fields), contentType, hasTrailer, body, keepAlive };
}

async function readChunked(c: ClientConn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (;;) {
    let lf: number;
    while ((lf = c.buf.indexOf(10, c.start)) < 0 || lf >= c.end) {
      if (!(await c.fill())) throw new Error("the server closed the connection mid-answer");
    }
    const line = decoder.decode(c.buf.subarray(c.start, lf)).trim();
    c.start = lf + 1;
    const size = parseInt(line, 16);
    if (!Number.isFinite(size)) throw new Error("malformed chunked answer");
    if (size === 0) {
      // Trailers until an empty line.
      for (;;) {
        while ((lf = c.buf.indexOf(10, c.start)) < 0 || lf >= c.end) {
          if (!(await c.fill())) throw new Error("the server closed the connection mid-answer");
        }
        const t = decoder.decode(c.buf.subarray(c.start, lf)).trim();
        c.start = lf + 1;
        if (t === "") return concat(parts);
      }
    }
    while (c.end - c.start < size + 2) {
      if (!(await c.fill())) throw new Error("the server closed the connection mid-answer");
    }
    parts.push(c.buf.slice(c.start, c.start + size));
    c.start += size + 2;
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.byteLength;
  }
  return all;
}

function indexOfHeadEnd(buf: Uint8Array, from: number, to: number): number {
  // A plain loop: TypedArray.indexOf would scan past `to`, to the end of the buffer.
  for (let i = from; i + 3 < to; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

/** Per method: serializers and the request head's fixed part. */
interface MethodPlan {
  serialize: (m: never) => Uint8Array;
  parse: (b: Uint8Array) => unknown;
  url: string;
  /** Request line and fixed headers, up to (not including) content-length. */
  head: string;
}

/**
 * A Connect transport to `baseUrl` (http only) whose unary calls go over Iris's own HTTP/1.1
 * client; streaming calls go to `fallback`.
 */
export function createHttp1Transport(options: Http1TransportOptions): Transport {
  const base = new URL(options.baseUrl);
  const pool = poolFor(base);
  const interceptors = options.interceptors ?? [];
  const plans = new Map<string, MethodPlan>();
  const auth = options.token ? `authorization: Bearer ${options.token}\r\n` : "";
  const hostHeader = `host: ${base.host}\r\n`;
  const basePath = base.pathname.replace(/\/$/, "");

  const planFor = (method: DescMethodUnary): MethodPlan => {
    const key = `${method.parent.typeName}/${method.name}`;
    let plan = plans.get(key);
    if (!plan) {
      const { serialize, parse } = createClientMethodSerializers(method, true);
      plan = {
        serialize: serialize as MethodPlan["serialize"],
        parse,
        url: createMethodUrl(options.baseUrl, method),
        head: `POST ${basePath}/${key} HTTP/1.1\r\n${hostHeader}` +
          `content-type: application/proto\r\nconnect-protocol-version: 1\r\n${auth}`,
      };
      plans.set(key, plan);
    }
    return plan;
  };

  /** Sends a serialized request; extra headers (from interceptors or call options) included. */
  const send = async (
    plan: MethodPlan,
    method: DescMethodUnary,
    body: Uint8Array,
    extra: Headers | undefined,
    signal: AbortSignal | undefined,
    timeoutMs?: number,
  ): Promise<{ header: Headers; trailer: Headers; message: unknown }> => {
    let head = plan.head;
    if (timeoutMs !== undefined) head += `connect-timeout-ms: ${timeoutMs}\r\n`;
    extra?.forEach((v, k) => {
      if (
        k === "content-type" || k === "connect-protocol-version" || k === "content-length" ||
        k === "host" || (auth && k === "authorization")
      ) return;
      head += `${k}: ${v}\r\n`;
    });
    head += `content-length: ${body.byteLength}\r\n\r\n`;
    const request = new Uint8Array(head.length + body.byteLength);
    const { read, written } = encoder.encodeInto(head, request);
    let bytes = request;
    if (read !== head.length || written !== head.length) {
      const h = encoder.encode(head);
      bytes = new Uint8Array(h.length + body.byteLength);
      bytes.set(h);
      bytes.set(body, h.length);
    } else request.set(body, written);
    const answer = await exchange(pool, plan.url, bytes, signal);
    // The common answer (what validateResponse and trailerDemux would pass through unchanged):
    // its Headers objects are made only if someone reads them.
    if (
      answer.status === 200 && answer.contentType === contentTypeUnaryProto && !answer.hasTrailer
    ) {
      return { header: answer.headers, trailer: new Headers(), message: plan.parse(answer.body) };
    }
    const { isUnaryError, unaryError } = validateResponse(
      method.methodKind,
      true,
      answer.status,
      answer.headers,
    );
    if (isUnaryError) {
      let json: unknown = null;
      try {
        json = JSON.parse(decoder.decode(answer.body));
      } catch { /* not JSON: errorFromJson reports it */ }
      throw errorFromJson(
        json as never,
        appendHeaders(...trailerDemux(answer.headers)),
        unaryError,
      );
    }
    const [header, trailer] = trailerDemux(answer.headers);
    return { header, trailer, message: plan.parse(answer.body) };
  };

  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      message: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const plan = planFor(method as unknown as DescMethodUnary);
      timeoutMs = timeoutMs === undefined || timeoutMs <= 0 ? undefined : timeoutMs;
      if (interceptors.length === 0 && header === undefined) {
        // The common call: no interceptor or extra header. A deadline is sent to the server and
        // kept here by one timer and one AbortController, aborted only when it passes: Connect's
        // own path links two per call and aborts one after every answer, a DOMException with
        // its stack each time (a heartbeat's largest cost in the worker's profile, #20).
        const input = create(method.input, message);
        let deadline: CallDeadline | undefined;
        try {
          if (timeoutMs !== undefined) deadline = new CallDeadline(timeoutMs, signal);
          const r = await send(
            plan,
            method as unknown as DescMethodUnary,
            plan.serialize(input as never),
            undefined,
            deadline?.signal ?? signal,
            timeoutMs,
          );
          return {
            stream: false,
            service: method.parent,
            method,
            header: r.header,
            trailer: r.trailer,
            message: r.message as UnaryResponse<I, O>["message"],
          };
        } catch (err) {
          throw ConnectError.from(err);
        } finally {
          deadline?.end();
        }
      }
      return await runUnaryCall<I, O>({
        interceptors,
        signal,
        timeoutMs,
        req: {
          stream: false,
          service: method.parent,
          method,
          requestMethod: "POST",
          url: plan.url,
          header: requestHeader(method.methodKind, true, timeoutMs, header, false),
          contextValues: contextValues ?? createContextValues(),
          message,
        },
        next: async (req: UnaryRequest<I, O>): Promise<UnaryResponse<I, O>> => {
          const r = await send(
            plan,
            method as unknown as DescMethodUnary,
            plan.serialize(req.message as never),
            req.header,
            req.signal,
          );
          return {
            stream: false,
            service: method.parent,
            method,
            header: r.header,
            trailer: r.trailer,
            message: r.message as UnaryResponse<I, O>["message"],
          };
        },
      });
    },
    stream(method, signal, timeoutMs, header, input, contextValues) {
      return options.fallback.stream(method, signal, timeoutMs, header, input, contextValues);
    },
  };
}

/**
 * One call's deadline (Connect's timeout; not time.ts's Deadline, whose signal cannot be cleared
 * when the call ends first): its signal aborts with DeadlineExceeded once `timeoutMs` passed, or with the caller's reason when the caller's `signal` aborts first. `end` when the
 * call is over.
 */
class CallDeadline {
  readonly #controller = new AbortController();
  readonly #timer: ReturnType<typeof setTimeout>;
  readonly #caller?: AbortSignal;
  readonly #onCallerAbort?: () => void;

  constructor(timeoutMs: number, caller: AbortSignal | undefined) {
    const controller = this.#controller;
    this.#timer = setTimeout(
      () => controller.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)),
      timeoutMs,
    );
    if (caller) {
      if (caller.aborted) controller.abort(caller.reason);
      else {
        this.#caller = caller;
        this.#onCallerAbort = () => controller.abort(caller.reason);
        caller.addEventListener("abort", this.#onCallerAbort, { once: true });
      }
    }
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  end(): void {
    clearTimeout(this.#timer);
    if (this.#onCallerAbort) this.#caller!.removeEventListener("abort", this.#onCallerAbort);
  }
}
