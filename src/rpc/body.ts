/**
 * Request bodies read defensively: as a stream (never `req.bytes()`, which in Deno 2.9.6 spins and
 * allocates on a body that announces a large Content-Length and then stalls), with the size limit
 * and the announced length enforced while reading, and JSON nesting measured on the bytes as they
 * arrive, before anything is parsed. Used by both the fast path and Connect's handlers
 * (src/rpc/server.ts), so both answer alike.
 * @module
 */
import { Code, ConnectError } from "@connectrpc/connect";

/** Deepest JSON nesting (objects and arrays) a request may have. @default */
export const DEFAULT_MAX_JSON_DEPTH = 64;

/**
 * Tracks the nesting depth of a JSON text fed in chunks, ignoring brackets inside strings. It does
 * not validate the JSON (the parser does that later); it only refuses, before parsing, a text that
 * nests deeper than `maxDepth`, which would otherwise block the event loop in JSON.parse.
 */
export class JsonDepthScanner {
  #depth = 0;
  #inString = false;
  #escaped = false;
  constructor(readonly maxDepth: number) {}

  /** Scans the next chunk. @throws ConnectError invalid_argument past `maxDepth`. */
  feed(chunk: Uint8Array): void {
    let depth = this.#depth;
    let inString = this.#inString;
    let escaped = this.#escaped;
    const max = this.maxDepth;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (c === 0x5c) escaped = true; // backslash
        else if (c === 0x22) inString = false; // quote
        continue;
      }
      if (c === 0x22) inString = true;
      else if (c === 0x7b || c === 0x5b) { // { [
        if (++depth > max) {
          throw new ConnectError(
            `request: JSON nests deeper than ${max} levels`,
            Code.InvalidArgument,
          );
        }
      } else if (c === 0x7d || c === 0x5d) depth--; // } ]
    }
    this.#depth = depth;
    this.#inString = inString;
    this.#escaped = escaped;
  }
}

/** Whether a content type carries JSON (Connect unary/streaming JSON, gRPC-web JSON). */
export function isJsonContentType(type: string | null): boolean {
  return type !== null && /^application\/(?:connect\+|grpc-web\+)?json\b/.test(type);
}

/** Limits applied while a body is read. */
export interface BodyLimits {
  /** Largest body accepted. */
  readMaxBytes: number;
  /** The Content-Length header's value, if any. */
  contentLength: string | null;
  /** Scan for JSON depth with this limit (undefined: not JSON, no scan). */
  maxJsonDepth?: number;
}

/** The announced length, or undefined when absent or not a non-negative safe integer. */
function lengthHint(header: string | null): number | undefined {
  if (header === null) return undefined;
  const n = Number(header);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/**
 * The checks on a body, shared by {@linkcode boundedChunks} and {@linkcode readBody}: a body
 * announcing more than `readMaxBytes` fails before anything is read, one that sends more (or, at
 * its end, fewer) bytes than it announced fails with Connect's own messages, one without a length
 * fails as soon as it passes the limit, and JSON nested too deep fails on the chunk that goes too
 * deep.
 */
class BodyMeter {
  readonly #max: number;
  readonly #hint: number | undefined;
  readonly #scanner: JsonDepthScanner | undefined;
  /** Bytes seen so far. */
  count = 0;

  /** @throws ConnectError resource_exhausted when the announced length is over the limit. */
  constructor(limits: BodyLimits) {
    this.#max = limits.readMaxBytes;
    this.#hint = lengthHint(limits.contentLength);
    if (this.#hint !== undefined && this.#hint > this.#max) {
      throw new ConnectError(
        `message size ${this.#hint} is larger than configured readMaxBytes ${this.#max}`,
        Code.ResourceExhausted,
      );
    }
    this.#scanner = limits.maxJsonDepth === undefined
      ? undefined
      : new JsonDepthScanner(limits.maxJsonDepth);
  }

  /** Counts and scans the next chunk. */
  add(chunk: Uint8Array): void {
    this.count += chunk.byteLength;
    if (this.#hint !== undefined && this.count > this.#hint) this.#broken();
    if (this.count > this.#max) {
      throw new ConnectError(
        `message size is larger than configured readMaxBytes ${this.#max}`,
        Code.ResourceExhausted,
      );
    }
    this.#scanner?.feed(chunk);
  }

  /** At the body's end: fails if fewer bytes came than were announced. */
  end(): void {
    if (this.#hint !== undefined && this.count < this.#hint) this.#broken();
  }

  #broken(): never {
    throw new ConnectError(
      `protocol error: promised ${this.#hint} bytes, received ${this.count}`,
      Code.InvalidArgument,
    );
  }
}

/** A body as a stream (a fetch Request) or as chunks (the node:http bridge). */
export type BodySource = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

/**
 * One reader over either kind of source: `read` the next chunk, `cancel` to stop early (a stream's
 * cancel is not waited for, an iterator's `return` is).
 */
function readerOf(body: BodySource): {
  read(): Promise<IteratorResult<Uint8Array, unknown>>;
  cancel(): Promise<void>;
  release(): void;
} {
  if (body instanceof ReadableStream) {
    const reader = body.getReader();
    return {
      read: () => reader.read() as Promise<IteratorResult<Uint8Array, unknown>>,
      cancel: () => {
        reader.cancel().catch(() => {});
        return Promise.resolve();
      },
      release: () => reader.releaseLock(),
    };
  }
  const it = body[Symbol.asyncIterator]();
  return {
    read: () => it.next(),
    cancel: async () => {
      await it.return?.();
    },
    release: () => {},
  };
}

/**
 * The chunks of `body` under {@linkcode BodyMeter}'s checks, one by one (what Connect's handler
 * reads). Stopping early cancels the source.
 */
export async function* boundedChunks(
  body: BodySource | null,
  limits: BodyLimits,
): AsyncGenerator<Uint8Array> {
  const meter = new BodyMeter(limits);
  if (body === null) return;
  const reader = readerOf(body);
  let done = false;
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      meter.add(r.value);
      yield r.value;
    }
    done = true;
  } finally {
    if (!done) await reader.cancel();
    reader.release();
  }
  meter.end();
}

/**
 * The whole body under {@linkcode BodyMeter}'s checks, in one buffer (the fast path's read; no
 * generators, so no per-chunk promise chain). Past `timeout` ms the source is cancelled and the
 * read fails with deadline_exceeded, the message naming the limit as `describeTimeout` says; 0
 * means no deadline.
 */
export async function readBody(
  body: BodySource | null,
  limits: BodyLimits,
  timeout = 0,
  describeTimeout: () => string = () => `${timeout} ms`,
): Promise<Uint8Array> {
  const meter = new BodyMeter(limits);
  if (body === null) return new Uint8Array(0);
  const reader = readerOf(body);
  let expired = false;
  const timer = timeout > 0
    ? setTimeout(() => {
      expired = true;
      reader.cancel().catch(() => {});
    }, timeout)
    : undefined;
  let first: Uint8Array | undefined;
  let chunks: Uint8Array[] | undefined;
  let done = false;
  try {
    for (;;) {
      const r = await reader.read().catch((err) => {
        if (expired) return { done: true as const, value: undefined };
        throw err;
      });
      if (expired) {
        throw new ConnectError(
          `request: the body did not arrive within ${describeTimeout()}`,
          Code.DeadlineExceeded,
        );
      }
      if (r.done) break;
      const chunk = r.value;
      meter.add(chunk);
      if (first === undefined) first = chunk;
      else (chunks ??= [first]).push(chunk);
    }
    done = true;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    if (!done && !expired) reader.cancel().catch(() => {});
    reader.release();
  }
  meter.end();
  if (chunks === undefined) return first ?? new Uint8Array(0);
  const all = new Uint8Array(meter.count);
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.byteLength;
  }
  return all;
}
