/**
 * Path rules for bundle entries: normalisation, and a tree of entries that rejects duplicates,
 * type conflicts, entries under symlinks, too many paths, and symlinks that leave the root.
 *
 * Symlink targets are checked twice: lexically when the entry is added (never climbing above the
 * link's root), and once the whole tree is known by walking the target through the tree's own
 * symlinks, as the kernel would. Both must stay inside.
 * @module
 */
import { ResourceExhaustedError } from "../errors.ts";
import { BundleFormatError } from "./errors.ts";

/** Longest entry path or symlink target, in UTF-8 bytes. */
export const MAX_PATH_BYTES = 4096;
/** Deepest nesting of an entry path or symlink target, in segments. */
export const MAX_PATH_DEPTH = 256;
/** Most symlinks followed, nested, while resolving one target (as the kernel's ELOOP limit). */
export const MAX_SYMLINK_DEPTH = 40;

const encoder = new TextEncoder();

/** The entry kinds a bundle may hold. */
export type EntryKind = "file" | "dir" | "symlink";

/**
 * Normalises an archive path to "a/b/c" ("" for the root itself), dropping "." and empty segments.
 * Throws BundleFormatError naming `raw` for absolute paths, "..", backslashes, NUL, drive letters.
 */
export function normalizeEntryPath(raw: string): string {
  const reason = unsafePathReason(raw, "path");
  if (reason) throw new BundleFormatError(raw, reason);
  const segments = raw.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.length > MAX_PATH_DEPTH) {
    throw new BundleFormatError(raw, `path is nested more than ${MAX_PATH_DEPTH} levels deep`);
  }
  for (const s of segments) {
    if (encoder.encode(s).length > 255) {
      throw new BundleFormatError(raw, "path has a segment longer than 255 bytes");
    }
  }
  return segments.join("/");
}

/** Why a path or symlink target is unsafe, or "" when it is acceptable. */
function unsafePathReason(p: string, what: "path" | "symlink target"): string {
  if (p === "") return `${what} is empty`;
  if (p.includes("\0")) return `${what} contains a NUL byte`;
  if (p.includes("\\")) return `${what} contains a backslash`;
  if (p.startsWith("/")) return `${what} is absolute`;
  if (/^[A-Za-z]:/.test(p)) return `${what} starts with a drive letter`;
  if (encoder.encode(p).length > MAX_PATH_BYTES) {
    return `${what} is longer than ${MAX_PATH_BYTES} bytes`;
  }
  if (what === "path" && p.split("/").includes("..")) return `${what} has a ".." segment`;
  return "";
}

interface Node {
  kind: EntryKind;
  /** False for directories implied by a deeper entry. */
  explicit: boolean;
  parent: Node | null;
  children: Map<string, Node> | null;
  /** Symlink target, as stored. */
  target: string;
  /** The raw entry path, for messages. */
  entry: string;
  resolved?: Resolution | "pending";
}

/** Where a target lands: a node plus segments below it that do not exist in the tree. */
type Resolution = { node: Node; virtual: number; depth: number } | { escape: "outside" | "loop" };

/** All entries of one archive or workspace, checked as they are added. */
export class EntryTree {
  readonly #root: Node = {
    kind: "dir",
    explicit: true,
    parent: null,
    children: new Map(),
    target: "",
    entry: "",
  };
  readonly #links: Node[] = [];
  readonly #maxEntries: number;
  #count = 0;

  /** `maxEntries` caps the paths materialised: entries plus directories they imply. */
  constructor(maxEntries: number) {
    this.#maxEntries = maxEntries;
  }

  /** Paths counted so far (explicit entries and implied directories). */
  get count(): number {
    return this.#count;
  }

  /**
   * Adds one entry; returns its normalised path ("" for an explicit root directory entry).
   * Throws BundleFormatError naming `raw` when it is unsafe or conflicts with earlier entries,
   * and ResourceExhaustedError past `maxEntries`.
   */
  add(raw: string, kind: EntryKind, linkTarget = ""): string {
    const path = normalizeEntryPath(raw);
    if (path === "") {
      if (kind !== "dir") {
        throw new BundleFormatError(raw, "names the bundle root but is not a directory");
      }
      return path;
    }
    if (kind === "symlink") checkLinkTarget(raw, path, linkTarget);
    const segments = path.split("/");
    let node = this.#root;
    for (let i = 0; i < segments.length - 1; i++) {
      const seg = segments[i] ?? "";
      let child = node.children?.get(seg);
      if (child === undefined) {
        child = {
          kind: "dir",
          explicit: false,
          parent: node,
          children: new Map(),
          target: "",
          entry: raw,
        };
        node.children?.set(seg, child);
        this.#bump(raw);
      } else if (child.kind !== "dir") {
        const parent = segments.slice(0, i + 1).join("/");
        throw new BundleFormatError(
          raw,
          `parent ${JSON.stringify(parent)} is a ${child.kind}, not a directory`,
        );
      }
      node = child;
    }
    const name = segments[segments.length - 1] ?? "";
    const existing = node.children?.get(name);
    if (existing !== undefined) {
      if (!(existing.kind === "dir" && !existing.explicit && kind === "dir")) {
        const what = existing.explicit
          ? `a ${existing.kind}`
          : "a directory implied by an earlier entry";
        throw new BundleFormatError(raw, `duplicate path (already stored as ${what})`);
      }
      existing.explicit = true;
      return path;
    }
    const child: Node = {
      kind,
      explicit: true,
      parent: node,
      children: kind === "dir" ? new Map() : null,
      target: linkTarget,
      entry: raw,
    };
    node.children?.set(name, child);
    this.#bump(raw);
    if (kind === "symlink") this.#links.push(child);
    return path;
  }

  /** Walks every symlink's target through the tree's symlinks; throws naming the first that escapes or loops. */
  checkSymlinks(): void {
    for (const link of this.#links) {
      const r = this.#resolveLink(link, 0);
      if ("escape" in r) {
        throw new BundleFormatError(
          link.entry,
          r.escape === "outside"
            ? `symlink target ${
              JSON.stringify(link.target)
            } resolves outside the bundle (through other symlinks)`
            : `symlink target ${
              JSON.stringify(link.target)
            } loops or nests more than ${MAX_SYMLINK_DEPTH} symlinks`,
        );
      }
    }
  }

  #bump(raw: string): void {
    this.#count++;
    if (this.#count > this.#maxEntries) {
      throw new ResourceExhaustedError(
        `bundle entry ${JSON.stringify(raw)}: more than ${this.#maxEntries} paths ` +
          "(files, directories and symlinks), over the limit",
      );
    }
  }

  /** `level` bounds recursion; a result past the bound is never memoised as a success. */
  #resolveLink(link: Node, level: number): Resolution {
    if (link.resolved === "pending") return { escape: "loop" };
    if (link.resolved) return link.resolved;
    if (level > MAX_SYMLINK_DEPTH) return { escape: "loop" };
    link.resolved = "pending";
    const r = this.#walk(link.parent ?? this.#root, link.target, level);
    link.resolved = r;
    return r;
  }

  #walk(start: Node, target: string, level: number): Resolution {
    let node = start;
    let virtual = 0;
    let depth = 0;
    for (const seg of target.split("/")) {
      if (seg === "" || seg === ".") continue;
      if (seg === "..") {
        if (virtual > 0) virtual--;
        else if (node.parent === null) return { escape: "outside" };
        else node = node.parent;
        continue;
      }
      const child = virtual > 0 ? undefined : node.children?.get(seg);
      if (child === undefined || child.kind === "file") {
        virtual++;
      } else if (child.kind === "dir") {
        node = child;
      } else {
        const r = this.#resolveLink(child, level + 1);
        if ("escape" in r) return r;
        if (r.depth + 1 > MAX_SYMLINK_DEPTH) return { escape: "loop" };
        depth = Math.max(depth, r.depth + 1);
        node = r.node;
        virtual = r.virtual;
      }
    }
    return { node, virtual, depth };
  }
}

/** Checks a symlink target is relative, clean of NUL/backslash, and lexically stays under the root. */
export function checkLinkTarget(raw: string, path: string, target: string): void {
  const reason = unsafePathReason(target, "symlink target");
  if (reason) throw new BundleFormatError(raw, reason);
  const segments = target.split("/");
  if (segments.length > MAX_PATH_DEPTH) {
    throw new BundleFormatError(
      raw,
      `symlink target is nested more than ${MAX_PATH_DEPTH} levels deep`,
    );
  }
  if (escapesRoot(path, target)) {
    throw new BundleFormatError(
      raw,
      `symlink target ${JSON.stringify(target)} points outside the bundle`,
    );
  }
}

/** True when `target`, read lexically from the directory of the link at `linkPath`, climbs above the root. */
export function escapesRoot(linkPath: string, target: string): boolean {
  let depth = linkPath.split("/").length - 1;
  for (const seg of target.split("/")) {
    if (seg === "" || seg === ".") continue;
    depth += seg === ".." ? -1 : 1;
    if (depth < 0) return true;
  }
  return false;
}
