/**
 * Reading bundles: validation of every entry while streaming the gunzip, and atomic unpacking.
 *
 * The gzip'd bytes are fed to the decompressor in small slices and the tar is parsed as it comes
 * out, so an archive bomb is stopped as soon as a declared size or the running total passes a
 * limit, without ever holding the expansion in memory. Unpacking first validates the whole archive
 * without writing anything, then extracts (re-checking every entry) into a fresh staging directory
 * `<destDir>.tmp-<random>`, creates symlinks last, and renames the staging directory into place.
 * Any failure removes the staging dir.
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { IrisError, ResourceExhaustedError } from "../errors.ts";
import { BundleFormatError } from "./errors.ts";
import { type BundleLimits, MIB, RATIO_FLOOR_BYTES, resolveLimits } from "./limits.ts";
import { formatBytes } from "../format.ts";
import { EntryTree } from "./paths.ts";
import { TarReader } from "./tar_reader.ts";

/** What an archive holds. */
export interface BundleSummary {
  /** Regular files and symlinks (directories are not counted). */
  files: number;
  /** Total bytes of regular file content. */
  bytes: number;
}

/** Result of {@linkcode unpackBundle}. */
export interface UnpackResult extends BundleSummary {
  /** True when `destDir` already existed and nothing was unpacked (counts are then 0). */
  cached: boolean;
}

/** Size of the compressed slices fed to the decompressor: bounds each inflated chunk to ~4 MiB. */
const INPUT_SLICE = 4096;
/** Tar overhead allowed per entry on top of file content (header, pax records, padding). */
const OVERHEAD_PER_ENTRY = 12 * 1024;
/** Data allowed after the end-of-archive marker (tar record padding). */
const MAX_TRAILING_BYTES = 1 * MIB;

interface Visitor {
  dir(path: string): Promise<void>;
  file(path: string, executable: boolean, reader: TarReader): Promise<void>;
}

interface ReadResult extends BundleSummary {
  symlinks: { path: string; target: string }[];
}

/**
 * Validates a gzip'd tar bundle without writing anything: the same checks as
 * {@linkcode unpackBundle}. Throws BundleFormatError or ResourceExhaustedError naming the entry.
 */
export async function inspectBundle(
  data: Uint8Array,
  limits?: BundleLimits,
): Promise<BundleSummary> {
  const { files, bytes } = await readBundle(data, resolveLimits(limits), null);
  return { files, bytes };
}

/**
 * Unpacks a gzip'd tar bundle into `destDir`, atomically. If `destDir` already exists it is taken
 * as a cache hit and left alone. Rejects absolute paths, `..`, backslashes, NUL, duplicates,
 * hardlinks, devices, fifos, symlinks leaving the root, entries under symlinks, and archives over
 * `limits`; on any error nothing is left behind (neither `destDir` nor the staging directory).
 */
export async function unpackBundle(
  data: Uint8Array,
  destDir: string,
  limits?: BundleLimits,
): Promise<UnpackResult> {
  const resolved = resolveLimits(limits);
  checkCompressedSize(data, resolved);
  const dest = resolve(destDir);
  if (await exists(dest)) return { files: 0, bytes: 0, cached: true };
  // Pass 1 writes nothing, so a hostile archive costs no disk I/O at all.
  await readBundle(data, resolved, null);
  await Deno.mkdir(dirname(dest), { recursive: true });
  const staging = `${dest}.tmp-${randomHex(6)}`;
  await Deno.mkdir(staging, { mode: 0o755 });
  try {
    const result = await readBundle(
      data,
      resolved,
      stagingWriter(staging, await umaskStrips(staging)),
    );
    for (const link of result.symlinks) await Deno.symlink(link.target, join(staging, link.path));
    try {
      await Deno.rename(staging, dest);
    } catch (err) {
      // Another process unpacked the same bundle first: theirs is as good as ours.
      if (!(await exists(dest))) throw err;
      await removeQuietly(staging);
      return { files: 0, bytes: 0, cached: true };
    }
    return { files: result.files, bytes: result.bytes, cached: false };
  } catch (err) {
    await removeQuietly(staging);
    throw err;
  }
}

/**
 * True when the process umask strips bits of 0755 (so of 0644 too), seen on the staging directory
 * just made with mode 0755. Reading the mode back needs no `sys` permission, unlike Deno.umask(),
 * which sandboxed workers (local VMs) may not call.
 */
async function umaskStrips(dir: string): Promise<boolean> {
  if (Deno.build.os === "windows") return false;
  const mode = (await Deno.stat(dir)).mode;
  if (mode === null) return false;
  if ((mode & 0o777) === 0o755) return false;
  await Deno.chmod(dir, 0o755);
  return true;
}

function stagingWriter(root: string, chmod: boolean): Visitor {
  // Modes are set at creation; chmod afterwards only if the umask strips 0755/0644 bits.
  const made = new Set<string>([root]);
  const mkdirp = async (dir: string) => {
    if (made.has(dir)) return;
    await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
    if (chmod) await Deno.chmod(dir, 0o755);
    made.add(dir);
  };
  return {
    async dir(path) {
      await mkdirp(join(root, path));
    },
    async file(path, executable, reader) {
      const full = join(root, path);
      const mode = executable ? 0o755 : 0o644;
      await mkdirp(dirname(full));
      const file = await Deno.open(full, { write: true, createNew: true, mode });
      try {
        await reader.readBody(async (chunk) => {
          for (let off = 0; off < chunk.length;) off += await file.write(chunk.subarray(off));
        });
      } finally {
        file.close();
      }
      if (chmod) await Deno.chmod(full, mode);
    },
  };
}

function checkCompressedSize(data: Uint8Array, limits: Required<BundleLimits>): void {
  if (data.length > limits.maxCompressedBytes) {
    throw new ResourceExhaustedError(
      `bundle is ${formatBytes(data.length)} compressed, over the ${
        formatBytes(limits.maxCompressedBytes)
      } limit`,
    );
  }
}

async function readBundle(
  data: Uint8Array,
  limits: Required<BundleLimits>,
  visitor: Visitor | null,
): Promise<ReadResult> {
  checkCompressedSize(data, limits);
  if (data.length < 2 || data[0] !== 0x1f || data[1] !== 0x8b) {
    throw new BundleFormatError("", "is not gzip data (expected a gzip'd tar archive)");
  }
  // The tighter of the absolute limits and the compression-ratio limit bounds the inflated stream.
  const maxStream = Math.min(
    limits.maxUnpackedBytes + limits.maxFiles * OVERHEAD_PER_ENTRY + MAX_TRAILING_BYTES,
    Math.max(RATIO_FLOOR_BYTES, data.length * limits.maxCompressionRatio),
  );
  const reader = new TarReader(
    sliced(data).pipeThrough(new DecompressionStream("gzip")),
    maxStream,
  );
  const tree = new EntryTree(limits.maxFiles);
  const result: ReadResult = { files: 0, bytes: 0, symlinks: [] };
  try {
    for (let entry = await reader.next(); entry !== null; entry = await reader.next()) {
      const raw = entry.path;
      switch (entry.kind) {
        case "file":
        case "dir":
        case "symlink":
          break;
        case "hardlink":
          throw new BundleFormatError(raw, "hard links are not allowed");
        case "char-device":
        case "block-device":
        case "fifo":
          throw new BundleFormatError(raw, `${entry.kind} entries are not allowed`);
        default:
          throw new BundleFormatError(
            raw,
            `tar entry type ${JSON.stringify(entry.typeflag)} is not supported`,
          );
      }
      if (entry.kind !== "file" && entry.size !== 0) {
        throw new BundleFormatError(raw, `${entry.kind} entry has a non-zero size (${entry.size})`);
      }
      const path = tree.add(raw, entry.kind, entry.linkTarget);
      if (entry.kind === "dir") {
        if (path !== "" && visitor) await writing(raw, visitor.dir(path));
      } else if (entry.kind === "symlink") {
        result.files++;
        result.symlinks.push({ path, target: entry.linkTarget });
      } else {
        if (result.bytes + entry.size > limits.maxUnpackedBytes) {
          throw new ResourceExhaustedError(
            `bundle entry ${JSON.stringify(raw)}: ${
              formatBytes(entry.size)
            } would bring the unpacked size to ` +
              `${formatBytes(result.bytes + entry.size)}, over the ${
                formatBytes(limits.maxUnpackedBytes)
              } limit`,
          );
        }
        result.files++;
        result.bytes += entry.size;
        if (visitor) await writing(raw, visitor.file(path, (entry.mode & 0o111) !== 0, reader));
      }
    }
    tree.checkSymlinks();
    await reader.finish(MAX_TRAILING_BYTES);
    return result;
  } finally {
    await reader.cancel();
  }
}

/** Adds the entry to file-system errors raised while writing it (Iris errors pass through). */
async function writing(raw: string, op: Promise<void>): Promise<void> {
  try {
    await op;
  } catch (err) {
    if (err instanceof IrisError || !(err instanceof Error)) throw err;
    throw new Error(`unpacking bundle entry ${JSON.stringify(raw)}: ${err.message}`, {
      cause: err,
    });
  }
}

/** A pull stream over `data` in small slices, so each inflate step has bounded output. */
function sliced(data: Uint8Array): ReadableStream<Uint8Array<ArrayBuffer>> {
  let off = 0;
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    pull(controller) {
      if (off >= data.length) {
        controller.close();
        return;
      }
      controller.enqueue(data.slice(off, off + INPUT_SLICE));
      off += INPUT_SLICE;
    },
  }, { highWaterMark: 0 });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

async function removeQuietly(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch(() => {});
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}
