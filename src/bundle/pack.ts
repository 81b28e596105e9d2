/**
 * Packing a workspace directory into a deterministic, content-addressed bundle.
 *
 * Entries are sorted by path; uid/gid/mtime are 0 and modes are normalised (files 0644, or 0755
 * when any execute bit is set; directories 0755; symlinks 0777), so the same tree always gives the
 * same tar bytes. The tar is fed to the gzip compressor in fixed 1 MiB slices so the compressed
 * bytes, and hence the bundle id, depend only on the tree (for a given Deno build).
 * @module
 */
import { isAbsolute, join, posix, relative, resolve, sep } from "node:path";
import { InvalidArgumentError, ResourceExhaustedError } from "../errors.ts";
import { BundleFormatError } from "./errors.ts";
import { bundleIdOf } from "./id.ts";
import { DEFAULT_IGNORE_TEXT, IgnoreRules, IgnoreStack } from "./ignore.ts";
import { DEFAULT_BUNDLE_LIMITS, DEFAULT_MAX_PACK_BYTES } from "./limits.ts";
import { formatBytes } from "../format.ts";
import { EntryTree, escapesRoot } from "./paths.ts";
import { encodeHeader, END_OF_ARCHIVE, paddingFor } from "./tar.ts";

/** Options for {@linkcode packDirectory}. */
export interface PackOptions {
  /** Ignore file, relative to the directory (or absolute); must exist when given. Default ".irisignore" (optional). */
  ignoreFile?: string;
  /** Most bytes of file content (uncompressed), and of the compressed bundle. Default 64 MiB. */
  maxBytes?: number;
  /** Most entries (files, directories, symlinks). Default 10,000, the unpack default. */
  maxFiles?: number;
}

/** A packed bundle, ready for `UploadBundle`. */
export interface PackResult {
  /** `sha256-<hex>` of `data`. */
  bundleId: string;
  /** The gzip'd tar archive. */
  data: Uint8Array;
  /** Regular files and symlinks packed (directories are not counted). */
  files: number;
  /** Size of `data` in bytes (what is uploaded and stored). */
  sizeBytes: number;
  /** Total bytes of file content before compression. */
  unpackedBytes: number;
}

interface WalkEntry {
  path: string;
  kind: "file" | "dir" | "symlink";
  abs: string;
  executable: boolean;
  size: number;
  linkTarget: string;
}

const SLICE = 1024 * 1024;

/**
 * Packs `dir` into a gzip'd ustar bundle, honouring `.gitignore` files and `.irisignore` (after the
 * Python defaults: `.venv`, `__pycache__/`, `*.pyc`, `.ipynb_checkpoints/`, `wandb/`) and always
 * leaving out `.git`, `node_modules` and `.iris`. Symlinks are stored as symlinks and must point inside `dir`.
 * Throws InvalidArgumentError("workspace", ...) naming the path for escaping symlinks or special
 * files, and ResourceExhaustedError naming size and limit when the tree is too large.
 */
export async function packDirectory(dir: string, options: PackOptions = {}): Promise<PackResult> {
  const root = resolve(dir);
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_PACK_BYTES;
  const maxFiles = options.maxFiles ?? DEFAULT_BUNDLE_LIMITS.maxFiles;
  const rootInfo = await Deno.stat(root);
  if (!rootInfo.isDirectory) {
    throw new InvalidArgumentError("workspace", `${root} is not a directory`);
  }
  const ignorePath = resolve(root, options.ignoreFile ?? ".irisignore");
  const ignoreText = await readOptional(ignorePath);
  if (ignoreText === null && options.ignoreFile !== undefined) {
    throw new InvalidArgumentError("ignore_file", `${ignorePath} does not exist`);
  }
  const rules = new IgnoreStack(
    IgnoreRules.parse(DEFAULT_IGNORE_TEXT),
    IgnoreRules.parse(ignoreText ?? ""),
  );
  const roots = [root, await Deno.realPath(root)];
  const entries: WalkEntry[] = [];
  await walk({ root, roots, maxFiles, entries }, "", rules);
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  checkTree(entries, maxFiles);
  checkSize(entries, maxBytes);

  const cs = new CompressionStream("gzip");
  const compressed = new Response(cs.readable).arrayBuffer();
  const writer = cs.writable.getWriter();
  const out = new SliceWriter(writer);
  let files = 0;
  let unpackedBytes = 0;
  try {
    for (const e of entries) {
      if (e.kind === "file") {
        const content = await Deno.readFile(e.abs);
        await out.write(
          encodeHeader({
            path: e.path,
            type: "file",
            mode: e.executable ? 0o755 : 0o644,
            size: content.length,
          }),
        );
        await out.write(content);
        await out.write(new Uint8Array(paddingFor(content.length)));
        unpackedBytes += content.length;
      } else if (e.kind === "dir") {
        await out.write(encodeHeader({ path: e.path, type: "dir", mode: 0o755, size: 0 }));
      } else {
        await out.write(
          encodeHeader({
            path: e.path,
            type: "symlink",
            mode: 0o777,
            size: 0,
            linkTarget: e.linkTarget,
          }),
        );
      }
      if (e.kind !== "dir") files++;
    }
    await out.write(END_OF_ARCHIVE);
    await out.close();
  } catch (err) {
    await writer.abort(err).catch(() => {});
    await compressed.catch(() => {});
    throw err;
  }
  const data = new Uint8Array(await compressed);
  if (unpackedBytes > maxBytes) {
    throw tooLarge(`grew to ${formatBytes(unpackedBytes)} while packing`, maxBytes);
  }
  if (data.length > maxBytes) {
    throw new ResourceExhaustedError(
      `workspace bundle is ${formatBytes(data.length)} compressed, over the ${
        formatBytes(maxBytes)
      } limit`,
    );
  }
  return { bundleId: await bundleIdOf(data), data, files, sizeBytes: data.length, unpackedBytes };
}

interface WalkContext {
  root: string;
  roots: string[];
  maxFiles: number;
  entries: WalkEntry[];
}

async function walk(ctx: WalkContext, rel: string, inherited: IgnoreStack): Promise<void> {
  const dirAbs = rel ? join(ctx.root, ...rel.split("/")) : ctx.root;
  const names: string[] = [];
  for await (const e of Deno.readDir(dirAbs)) names.push(e.name);
  names.sort();
  // A directory's .gitignore applies below it, relative to it (as in git).
  const gitignore = names.includes(".gitignore")
    ? await readOptional(join(dirAbs, ".gitignore"))
    : null;
  const rules = gitignore === null
    ? inherited
    : inherited.withGitignore(rel, IgnoreRules.parse(gitignore));
  for (const name of names) {
    const path = rel ? `${rel}/${name}` : name;
    const abs = join(dirAbs, name);
    const info = await Deno.lstat(abs);
    if (rules.ignores(path, info.isDirectory)) continue;
    if (ctx.entries.length >= ctx.maxFiles) {
      throw new ResourceExhaustedError(
        `workspace ${ctx.root} has more than ${ctx.maxFiles} files, directories and symlinks, over the limit ` +
          `(at ${JSON.stringify(path)}); list what the job does not need in .irisignore`,
      );
    }
    const base = { path, abs, executable: false, size: 0, linkTarget: "" };
    if (info.isSymlink) {
      ctx.entries.push({
        ...base,
        kind: "symlink",
        linkTarget: await symlinkTarget(ctx, path, abs),
      });
    } else if (info.isDirectory) {
      ctx.entries.push({ ...base, kind: "dir" });
      await walk(ctx, path, rules);
    } else if (info.isFile) {
      ctx.entries.push({
        ...base,
        kind: "file",
        size: info.size,
        executable: ((info.mode ?? 0) & 0o111) !== 0,
      });
    } else {
      throw new InvalidArgumentError(
        "workspace",
        `${
          JSON.stringify(path)
        } is a socket, fifo or device, which bundles cannot hold; list it in .irisignore`,
      );
    }
  }
}

/** The target to store for the symlink at `path`: relative, and inside the workspace. */
async function symlinkTarget(ctx: WalkContext, path: string, abs: string): Promise<string> {
  const raw = await Deno.readLink(abs);
  let target = raw;
  if (isAbsolute(raw)) {
    const inside = ctx.roots.map((r) => relative(r, raw)).find((r) =>
      !r.startsWith("..") && !isAbsolute(r)
    );
    if (inside === undefined) throw outsideLink(path, raw);
    const rel = posix.relative(posix.dirname(`/${path}`), `/${inside.split(sep).join("/")}`);
    target = rel === "" ? "." : rel;
  }
  if (escapesRoot(path, target)) throw outsideLink(path, raw);
  return target;
}

function outsideLink(path: string, target: string): InvalidArgumentError {
  return new InvalidArgumentError(
    "workspace",
    `symlink ${JSON.stringify(path)} -> ${JSON.stringify(target)} points outside the workspace; ` +
      "bundles keep symlinks as links and never follow them, so they must stay inside",
  );
}

/** Runs the unpacker's path rules over the tree so that a bundle we pack is one workers accept. */
function checkTree(entries: WalkEntry[], maxFiles: number): void {
  const tree = new EntryTree(maxFiles);
  try {
    for (const e of entries) tree.add(e.path, e.kind, e.linkTarget);
    tree.checkSymlinks();
  } catch (err) {
    throw asWorkspaceError(err);
  }
}

function asWorkspaceError(err: unknown): unknown {
  if (!(err instanceof BundleFormatError)) return err;
  return new InvalidArgumentError("workspace", `${JSON.stringify(err.entry)}: ${err.reason}`, {
    cause: err,
  });
}

function checkSize(entries: WalkEntry[], maxBytes: number): void {
  const total = entries.reduce((n, e) => n + e.size, 0);
  if (total <= maxBytes) return;
  // Top-level entries with their whole subtree, then the biggest single files.
  const topLevel = new Map<string, number>();
  for (const e of entries) {
    const slash = e.path.indexOf("/");
    const top = slash < 0
      ? (e.kind === "dir" ? `${e.path}/` : e.path)
      : `${e.path.slice(0, slash)}/`;
    topLevel.set(top, (topLevel.get(top) ?? 0) + e.size);
  }
  const fmt = ([path, size]: [string, number]) => `${path} (${formatBytes(size)})`;
  const tops = [...topLevel].sort((a, b) => b[1] - a[1]).slice(0, 5).map(fmt).join(", ");
  const files = entries.filter((e) => e.kind === "file").sort((a, b) => b.size - a.size).slice(0, 5)
    .map((e) => fmt([e.path, e.size])).join(", ");
  throw tooLarge(
    `is ${formatBytes(total)}; largest entries: ${tops}; largest files: ${files}`,
    maxBytes,
  );
}

function tooLarge(what: string, maxBytes: number): ResourceExhaustedError {
  return new ResourceExhaustedError(
    `workspace ${what}, over the ${formatBytes(maxBytes)} bundle limit; list what the job does ` +
      "not need (data, checkpoints, environments) in .irisignore or .gitignore, or ask the " +
      "cluster operator to raise controller.max_bundle_size",
  );
}

async function readOptional(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** Re-slices a byte stream into fixed-size writes so compression depends only on the bytes. */
class SliceWriter {
  readonly #writer: WritableStreamDefaultWriter<BufferSource>;
  #buf = new Uint8Array(SLICE);
  #len = 0;

  constructor(writer: WritableStreamDefaultWriter<BufferSource>) {
    this.#writer = writer;
  }

  async write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) {
      const take = Math.min(SLICE - this.#len, bytes.length - off);
      this.#buf.set(bytes.subarray(off, off + take), this.#len);
      this.#len += take;
      off += take;
      if (this.#len === SLICE) {
        await this.#writer.write(this.#buf);
        this.#buf = new Uint8Array(SLICE);
        this.#len = 0;
      }
    }
  }

  async close(): Promise<void> {
    if (this.#len > 0) await this.#writer.write(this.#buf.subarray(0, this.#len));
    await this.#writer.close();
  }
}
