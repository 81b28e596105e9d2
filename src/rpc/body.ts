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
 * The chunks of `body`, checked as they arrive: a body announcing more than `readMaxBytes` fails
 * before anything is read, one that sends more (or, at its end, fewer) bytes than it announced
 * fails with Connect's own messages, one without a length fails as soon as it passes the limit, and
 * JSON nested too deep fails on the chunk that goes too deep. Stopping early cancels the stream.
 */
export async function* boundedChunks(
  body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | null,
  limits: BodyLimits,
): AsyncGenerator<Uint8Array> {
  const { readMaxBytes } = limits;
  const hint = lengthHint(limits.contentLength);
  if (hint !== undefined && hint > readMaxBytes) {
    throw new ConnectError(
      `message size ${hint} is larger than configured readMaxBytes ${readMaxBytes}`,
      Code.ResourceExhausted,
    );
  }
  if (body === null) return;
  const scanner = limits.maxJsonDepth === undefined
    ? undefined
    : new JsonDepthScanner(limits.maxJsonDepth);
  const source = body instanceof ReadableStream ? streamChunks(body) : body;
  const it = source[Symbol.asyncIterator]();
  let count = 0;
  let done = false;
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      const chunk = r.value;
      count += chunk.byteLength;
      if (hint !== undefined && count > hint) {
        throw new ConnectError(
          `protocol error: promised ${hint} bytes, received ${count}`,
          Code.InvalidArgument,
        );
      }
      if (count > readMaxBytes) {
        throw new ConnectError(
          `message size is larger than configured readMaxBytes ${readMaxBytes}`,
          Code.ResourceExhausted,
        );
      }
      scanner?.feed(chunk);
      yield chunk;
    }
    done = true;
  } finally {
    if (!done) await it.return?.();
  }
  if (hint !== undefined && count < hint) {
    throw new ConnectError(
      `protocol error: promised ${hint} bytes, received ${count}`,
      Code.InvalidArgument,
    );
  }
}

/** A stream's chunks; stopping early cancels the stream. */
async function* streamChunks(body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  let done = false;
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      yield r.value;
    }
    done = true;
  } finally {
    if (!done) reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** The whole body under {@linkcode boundedChunks}'s checks, in one buffer. */
export async function readBoundedBody(
  body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | null,
  limits: BodyLimits,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of boundedChunks(body, limits)) {
    chunks.push(chunk);
    total += chunk.byteLength;
  }
  if (chunks.length === 1) return chunks[0]!;
  const all = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.byteLength;
  }
  return all;
}

/**
 * {@linkcode readBoundedBody} for a stream, without generators (the fast path's common case):
 * the same checks and messages, and a deadline: past `timeout` ms the stream is cancelled and the
 * read fails with deadline_exceeded. 0 means no deadline.
 */
export async function readStreamBounded(
  body: ReadableStream<Uint8Array> | null,
  limits: BodyLimits,
  timeout = 0,
  describeTimeout: () => string = () => `${timeout} ms`,
): Promise<Uint8Array> {
  const { readMaxBytes } = limits;
  const hint = lengthHint(limits.contentLength);
  if (hint !== undefined && hint > readMaxBytes) {
    throw new ConnectError(
      `message size ${hint} is larger than configured readMaxBytes ${readMaxBytes}`,
      Code.ResourceExhausted,
    );
  }
  if (body === null) return new Uint8Array(0);
  const scanner = limits.maxJsonDepth === undefined
    ? undefined
    : new JsonDepthScanner(limits.maxJsonDepth);
  const reader = body.getReader();
  let expired = false;
  const timer = timeout > 0
    ? setTimeout(() => {
      expired = true;
      reader.cancel().catch(() => {});
    }, timeout)
    : undefined;
  let first: Uint8Array | undefined;
  let chunks: Uint8Array[] | undefined;
  let count = 0;
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
      count += chunk.byteLength;
      if (hint !== undefined && count > hint) {
        throw new ConnectError(
          `protocol error: promised ${hint} bytes, received ${count}`,
          Code.InvalidArgument,
        );
      }
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
    done = true;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    if (!done && !expired) reader.cancel().catch(() => {});
    reader.releaseLock();
  }
  if (hint !== undefined && count < hint) {
    throw new ConnectError(
      `protocol error: promised ${hint} bytes, received ${count}`,
      Code.InvalidArgument,
    );
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
