/**
 * A streaming, defensive tar reader.
 *
 * It understands ustar, GNU and pax headers (`x`, `g`, `L`, `K`), verifies header checksums, caps
 * metadata sizes and the total bytes pulled, and pulls from a byte stream so that a huge archive
 * is never held in memory. It does not judge paths or entry types: that is the caller's job
 * (see unpack.ts).
 * @module
 */
import { ResourceExhaustedError } from "../errors.ts";
import { BundleFormatError } from "./errors.ts";
import { formatBytes } from "../format.ts";
import { BLOCK, headerChecksum, paddingFor } from "./tar.ts";

/** Largest pax / GNU long-name payload the reader accepts. */
export const MAX_META_BYTES = 64 * 1024;

const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const lossyDecoder = new TextDecoder("utf-8");

/** The kinds of entry the reader reports. Only file, dir and symlink are ever accepted by bundles. */
export type TarEntryKind =
  | "file"
  | "dir"
  | "symlink"
  | "hardlink"
  | "char-device"
  | "block-device"
  | "fifo"
  | "unsupported";

/** One entry as stored in the archive; paths are not yet validated or normalised. */
export interface TarEntry {
  path: string;
  kind: TarEntryKind;
  /** The raw typeflag character, for messages about unsupported types. */
  typeflag: string;
  mode: number;
  /** Declared size. Only regular files have a body that `readBody` streams. */
  size: number;
  linkTarget: string;
}

const KINDS: Record<string, TarEntryKind> = {
  "0": "file",
  "\0": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "char-device",
  "4": "block-device",
  "5": "dir",
  "6": "fifo",
};

/** Reads tar entries from a stream of (decompressed) bytes, pulling only what it needs. */
export class TarReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #maxStreamBytes: number;
  #chunk: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #streamBytes = 0;
  #bodyLeft = 0;
  #padLeft = 0;
  #current = "";

  /** `maxStreamBytes` caps every byte pulled from `stream`, metadata and trailing zeros included. */
  constructor(stream: ReadableStream<Uint8Array>, maxStreamBytes: number) {
    this.#reader = stream.getReader();
    this.#maxStreamBytes = maxStreamBytes;
  }

  /** Decompressed bytes pulled so far. */
  get streamBytes(): number {
    return this.#streamBytes;
  }

  /** The next entry, or null at the end-of-archive marker. Skips any unread body of the last one. */
  async next(): Promise<TarEntry | null> {
    await this.#stream(this.#bodyLeft + this.#padLeft);
    this.#bodyLeft = this.#padLeft = 0;
    const meta: { path?: string; linkpath?: string; size?: number } = {};
    let pendingMeta = false;
    for (;;) {
      const offset = this.#streamBytes - (this.#chunk.length - this.#pos);
      const block = await this.#read(BLOCK);
      if (block === null) throw this.#error("is truncated: no end-of-archive marker");
      if (block.every((x) => x === 0)) {
        if (pendingMeta) throw this.#error("ends with a pax/long-name header that has no entry");
        return null;
      }
      const where = lossyDecoder.decode(cstring(block.subarray(0, 100))) ||
        `header at offset ${offset}`;
      this.#current = where;
      if (parseOctal(block.subarray(148, 156), where) !== headerChecksum(block)) {
        throw new BundleFormatError(
          where,
          `header checksum mismatch at offset ${offset} (corrupt archive)`,
        );
      }
      const typeflag = String.fromCharCode(block[156] ?? 0);
      const size = parseOctal(block.subarray(124, 136), where);
      if (typeflag === "x" || typeflag === "g" || typeflag === "L" || typeflag === "K") {
        if (size > MAX_META_BYTES) {
          throw new BundleFormatError(
            where,
            `metadata header of ${formatBytes(size)} is over the ${
              formatBytes(MAX_META_BYTES)
            } limit`,
          );
        }
        const data = await this.#read(size);
        if (data === null) throw this.#error("is truncated inside a metadata header");
        await this.#stream(paddingFor(size));
        if (typeflag === "x") Object.assign(meta, parsePax(data, where));
        if (typeflag === "L") meta.path = decodeName(cstring(data), where);
        if (typeflag === "K") meta.linkpath = decodeName(cstring(data), where);
        pendingMeta ||= typeflag !== "g";
        continue;
      }
      const magic = lossyDecoder.decode(block.subarray(257, 265));
      const name = cstring(block.subarray(0, 100));
      const prefix = magic === "ustar\u000000"
        ? cstring(block.subarray(345, 500))
        : new Uint8Array(0);
      const path = meta.path ??
        decodeName(prefix.length ? concat(prefix, Uint8Array.of(0x2f), name) : name, where);
      this.#current = path;
      const kind = KINDS[typeflag] ?? "unsupported";
      const entry: TarEntry = {
        path,
        kind,
        typeflag,
        mode: parseOctal(block.subarray(100, 108), path),
        size: meta.size ?? size,
        linkTarget: meta.linkpath ?? decodeName(cstring(block.subarray(157, 257)), path),
      };
      if (kind === "file") {
        this.#bodyLeft = entry.size;
        this.#padLeft = paddingFor(entry.size);
      }
      return entry;
    }
  }

  /** Streams the body of the entry last returned by `next` into `sink` (a regular file's content). */
  async readBody(sink: (chunk: Uint8Array) => Promise<void> | void): Promise<void> {
    const n = this.#bodyLeft;
    this.#bodyLeft = 0;
    await this.#stream(n, sink);
  }

  /** After `next` returned null: drains the rest of the stream, which must be at most `maxTrailing` zeros. */
  async finish(maxTrailing: number): Promise<void> {
    this.#current = "";
    const end = this.#streamBytes - (this.#chunk.length - this.#pos);
    for (;;) {
      if (this.#streamBytes - end > maxTrailing) {
        throw new ResourceExhaustedError(
          `bundle has more than ${
            formatBytes(maxTrailing)
          } of data after the end-of-archive marker`,
        );
      }
      if (this.#pos < this.#chunk.length) {
        if (!this.#chunk.subarray(this.#pos).every((x) => x === 0)) {
          throw new BundleFormatError("", "has non-zero data after the end-of-archive marker");
        }
        this.#pos = this.#chunk.length;
      }
      if (!(await this.#pull())) return;
    }
  }

  /** Stops reading and releases the underlying stream. Never throws. */
  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }

  #error(message: string): BundleFormatError {
    return new BundleFormatError(this.#current, this.#current ? `archive ${message}` : message);
  }

  async #pull(): Promise<boolean> {
    let result: ReadableStreamReadResult<Uint8Array>;
    try {
      result = await this.#reader.read();
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      throw this.#error(`is not a valid gzip stream (${detail})`);
    }
    if (result.done) return false;
    this.#streamBytes += result.value.length;
    if (this.#streamBytes > this.#maxStreamBytes) {
      const at = this.#current ? ` at entry ${JSON.stringify(this.#current)}` : "";
      throw new ResourceExhaustedError(
        `bundle expands past ${
          formatBytes(this.#maxStreamBytes)
        } of tar data${at}, over the limit (archive bomb?)`,
      );
    }
    this.#chunk = result.value;
    this.#pos = 0;
    return true;
  }

  /** Exactly `n` bytes; null when the stream ends before the first of them. */
  async #read(n: number): Promise<Uint8Array | null> {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      if (this.#pos >= this.#chunk.length && !(await this.#pull())) {
        if (filled === 0) return null;
        throw this.#error("is truncated");
      }
      const take = Math.min(n - filled, this.#chunk.length - this.#pos);
      out.set(this.#chunk.subarray(this.#pos, this.#pos + take), filled);
      filled += take;
      this.#pos += take;
    }
    return out;
  }

  async #stream(n: number, sink?: (chunk: Uint8Array) => Promise<void> | void): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.#pos >= this.#chunk.length && !(await this.#pull())) {
        throw this.#error("is truncated");
      }
      const take = Math.min(left, this.#chunk.length - this.#pos);
      if (sink) await sink(this.#chunk.subarray(this.#pos, this.#pos + take));
      this.#pos += take;
      left -= take;
    }
  }
}

function cstring(b: Uint8Array): Uint8Array {
  const end = b.indexOf(0);
  return end < 0 ? b : b.subarray(0, end);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function decodeName(b: Uint8Array, where: string): string {
  try {
    return strictDecoder.decode(b);
  } catch {
    throw new BundleFormatError(where, "name is not valid UTF-8");
  }
}

function parseOctal(field: Uint8Array, where: string): number {
  if ((field[0] ?? 0) & 0x80) {
    throw new BundleFormatError(where, "uses an unsupported base-256 number");
  }
  const text = lossyDecoder.decode(cstring(field)).trim();
  if (!/^[0-7]*$/.test(text)) {
    throw new BundleFormatError(where, `has a malformed numeric field ${JSON.stringify(text)}`);
  }
  return text === "" ? 0 : parseInt(text, 8);
}

function parsePax(
  data: Uint8Array,
  where: string,
): { path?: string; linkpath?: string; size?: number } {
  const out: { path?: string; linkpath?: string; size?: number } = {};
  let off = 0;
  while (off < data.length) {
    const space = data.indexOf(0x20, off);
    const len = space < 0 ? NaN : Number(lossyDecoder.decode(data.subarray(off, space)));
    if (
      !Number.isSafeInteger(len) || len <= space - off + 1 || off + len > data.length ||
      data[off + len - 1] !== 0x0a
    ) {
      throw new BundleFormatError(where, "has a malformed pax record");
    }
    const record = decodeName(data.subarray(space + 1, off + len - 1), where);
    off += len;
    const eq = record.indexOf("=");
    if (eq < 0) throw new BundleFormatError(where, "has a malformed pax record");
    const [key, value] = [record.slice(0, eq), record.slice(eq + 1)];
    if (key === "path") out.path = value;
    else if (key === "linkpath") out.linkpath = value;
    else if (key === "size") {
      if (!/^\d{1,15}$/.test(value)) {
        throw new BundleFormatError(where, `has a malformed pax size ${JSON.stringify(value)}`);
      }
      out.size = Number(value);
    }
  }
  return out;
}
