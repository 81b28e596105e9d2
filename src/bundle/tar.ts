/**
 * The tar format basics and a minimal ustar writer.
 *
 * The writer emits only what bundles need (regular files, directories, symlinks) with fixed
 * metadata, adding a pax `x` header when a path or link target does not fit the ustar fields.
 * The reader lives in tar_reader.ts.
 * @module
 */

/** Tar block size. */
export const BLOCK = 512;
/** Two zero blocks: the end-of-archive marker. */
export const END_OF_ARCHIVE: Uint8Array = new Uint8Array(2 * BLOCK);
const MAX_OCTAL_SIZE = 8 ** 11 - 1;

const encoder = new TextEncoder();

/** What the writer can store. */
export interface TarWriteEntry {
  /** Relative POSIX path without a trailing slash. */
  path: string;
  type: "file" | "dir" | "symlink";
  /** Permission bits (e.g. 0o644). */
  mode: number;
  /** Content length; 0 for directories and symlinks. */
  size: number;
  /** Symlink target. */
  linkTarget?: string;
}

/** Zero bytes needed after `size` bytes of content to reach a block boundary. */
export function paddingFor(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** Encodes the header block(s) for one entry: a pax header first when names are too long. */
export function encodeHeader(entry: TarWriteEntry): Uint8Array {
  if (entry.size > MAX_OCTAL_SIZE) throw new RangeError(`tar entry ${entry.path} is too large`);
  const fullName = encoder.encode(entry.type === "dir" ? `${entry.path}/` : entry.path);
  const link = encoder.encode(entry.linkTarget ?? "");
  const split = splitUstarName(fullName);
  const pax: string[] = [];
  if (!split) pax.push(paxRecord("path", entry.type === "dir" ? `${entry.path}/` : entry.path));
  if (link.length > 100) pax.push(paxRecord("linkpath", entry.linkTarget ?? ""));
  const typeflag = entry.type === "file" ? "0" : entry.type === "dir" ? "5" : "2";
  const main = headerBlock({
    name: split ? split.name : fullName.subarray(0, 100),
    prefix: split ? split.prefix : new Uint8Array(0),
    mode: entry.mode,
    size: entry.size,
    typeflag,
    linkname: link.subarray(0, 100),
  });
  if (pax.length === 0) return main;
  const body = encoder.encode(pax.join(""));
  const paxHeader = headerBlock({
    name: encoder.encode("././@PaxHeader"),
    prefix: new Uint8Array(0),
    mode: 0o644,
    size: body.length,
    typeflag: "x",
    linkname: new Uint8Array(0),
  });
  const out = new Uint8Array(BLOCK + body.length + paddingFor(body.length) + BLOCK);
  out.set(paxHeader, 0);
  out.set(body, BLOCK);
  out.set(main, out.length - BLOCK);
  return out;
}

function splitUstarName(name: Uint8Array): { name: Uint8Array; prefix: Uint8Array } | null {
  if (name.length <= 100) return { name, prefix: new Uint8Array(0) };
  // Split at the first "/" that leaves a name of at most 100 bytes (ignoring a trailing "/").
  for (let i = 0; i < name.length - 1; i++) {
    if (name[i] !== 0x2f || i > 155) continue;
    if (name.length - i - 1 <= 100) {
      return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
    }
  }
  return null;
}

function paxRecord(key: string, value: string): string {
  const payload = ` ${key}=${value}\n`;
  const payloadLen = encoder.encode(payload).length;
  // The length prefix counts its own digits.
  let digits = 1;
  while (String(payloadLen + digits).length > digits) digits++;
  return `${payloadLen + digits}${payload}`;
}

interface HeaderFields {
  name: Uint8Array;
  prefix: Uint8Array;
  mode: number;
  size: number;
  typeflag: string;
  linkname: Uint8Array;
}

function headerBlock(f: HeaderFields): Uint8Array {
  const b = new Uint8Array(BLOCK);
  b.set(f.name, 0);
  writeOctal(b, 100, 8, f.mode);
  writeOctal(b, 108, 8, 0); // uid
  writeOctal(b, 116, 8, 0); // gid
  writeOctal(b, 124, 12, f.size);
  writeOctal(b, 136, 12, 0); // mtime
  b[156] = f.typeflag.charCodeAt(0);
  b.set(f.linkname, 157);
  b.set(encoder.encode("ustar\u000000"), 257);
  writeOctal(b, 329, 8, 0); // devmajor
  writeOctal(b, 337, 8, 0); // devminor
  b.set(f.prefix, 345);
  const sum = headerChecksum(b);
  b.set(encoder.encode(`${sum.toString(8).padStart(6, "0")}\u0000 `), 148);
  return b;
}

function writeOctal(b: Uint8Array, offset: number, length: number, value: number): void {
  b.set(encoder.encode(value.toString(8).padStart(length - 1, "0")), offset);
}

/** Sum of header bytes with the checksum field counted as spaces. */
export function headerChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i] ?? 0;
  return sum;
}
