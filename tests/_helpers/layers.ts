/**
 * The layering check behind tests/layers_test.ts: reads the rules from the one place they are
 * written (the "Allowed imports" table of docs/architecture.md), reads the import graph of `src/`,
 * and lists every import that breaks a rule. Pure apart from {@linkcode readRules} and
 * {@linkcode readImportGraph}, so a unit test can feed it a bad graph.
 *
 * A "unit" is a folder of `src/` (`controller`, with its sub-folders) or a file directly in
 * `src/` (`time`, `errors`, …). Two rules:
 * - **direction**: unit A may import unit B only if the table lists B in A's row;
 * - **entry point**: an import into another folder names its `mod.ts`, or one of the extra
 *   entry points the table's row for that folder lists (e.g. `rpc`'s generated code for the
 *   browser bundle).
 * @module
 */

/** One import between files of `src/`, paths relative to `src/` ("controller/state.ts"). */
export interface ImportEdge {
  readonly from: string;
  readonly to: string;
  /** Only types are imported (`import type`, `export type`). */
  readonly typeOnly: boolean;
}

/** The rules, as written in docs/architecture.md. */
export interface LayerRules {
  /** Per unit: the units it may import. */
  readonly allowed: ReadonlyMap<string, ReadonlySet<string>>;
  /** Per folder unit: files other folders may import besides `mod.ts` (prefixes end in "/"). */
  readonly entryPoints: ReadonlyMap<string, readonly string[]>;
}

/** A broken rule, with the import that breaks it. */
export interface Violation {
  readonly rule: "direction" | "entry point" | "unknown unit";
  readonly edge: ImportEdge;
  readonly message: string;
}

/** The unit a `src/`-relative path belongs to: its first folder, or its file name. */
export function unitOf(path: string): string {
  const slash = path.indexOf("/");
  return slash < 0 ? path.replace(/\.ts$/, "") : path.slice(0, slash);
}

/** Whether `unit` is a folder (as opposed to a single file directly in `src/`). */
function isFolder(unit: string, path: string): boolean {
  return path.startsWith(`${unit}/`);
}

/** Every import of `graph` that breaks `rules`. */
export function checkLayers(graph: readonly ImportEdge[], rules: LayerRules): Violation[] {
  const out: Violation[] = [];
  for (const edge of graph) {
    const a = unitOf(edge.from);
    const b = unitOf(edge.to);
    if (a === b) continue;
    const allowed = rules.allowed.get(a);
    if (allowed === undefined || !rules.allowed.has(b)) {
      const missing = allowed === undefined ? a : b;
      out.push({
        rule: "unknown unit",
        edge,
        message: `${edge.from} imports ${edge.to}: "${missing}" has no row in the table`,
      });
      continue;
    }
    if (!allowed.has(b)) {
      out.push({
        rule: "direction",
        edge,
        message: `${edge.from} imports ${edge.to}: ${a} may not import ${b}` +
          ` (allowed: ${[...allowed].sort().join(", ") || "nothing"})`,
      });
      continue;
    }
    if (isFolder(b, edge.to)) {
      const inside = edge.to.slice(b.length + 1);
      const entries = rules.entryPoints.get(b) ?? [];
      const ok = inside === "mod.ts" ||
        entries.some((e) => e.endsWith("/") ? inside.startsWith(e) : inside === e);
      if (!ok) {
        out.push({
          rule: "entry point",
          edge,
          message: `${edge.from} imports ${edge.to}: import ${b}/mod.ts` +
            (entries.length ? ` (or ${entries.map((e) => `${b}/${e}`).join(", ")})` : ""),
        });
      }
    }
  }
  return out;
}

/**
 * Reads the rules from the markdown table that follows the heading `## Allowed imports`:
 * `| unit | may import | entry points |`, names in backticks, "—" for none.
 * @throws Error naming the line when the table is missing or a row is malformed, and naming the
 * pair when two units may import each other (imports go one way: a two-way pair is a cycle)
 */
export function parseRules(markdown: string): LayerRules {
  const lines = markdown.split("\n");
  const start = lines.findIndex((l) => /^##\s+Allowed imports\s*$/.test(l));
  if (start < 0) throw new Error('docs/architecture.md: no "## Allowed imports" section');
  const allowed = new Map<string, Set<string>>();
  const entryPoints = new Map<string, string[]>();
  let inTable = false;
  for (let i = start + 1; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line.startsWith("## ")) break;
    if (!line.startsWith("|")) {
      if (inTable) break;
      continue;
    }
    const cells = line.slice(1, line.endsWith("|") ? -1 : undefined).split("|").map((c) =>
      c.trim()
    );
    if (!inTable) { // the header row, then the separator
      inTable = true;
      i++;
      continue;
    }
    if (cells.length !== 3) {
      throw new Error(`docs/architecture.md:${i + 1}: a rule row has 3 cells, not ${cells.length}`);
    }
    const names = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    const [unitCell, mayCell, entryCell] = cells as [string, string, string];
    const unit = names(unitCell)[0];
    if (unit === undefined) {
      throw new Error(`docs/architecture.md:${i + 1}: the first cell names no unit`);
    }
    if (allowed.has(unit)) throw new Error(`docs/architecture.md:${i + 1}: "${unit}" twice`);
    allowed.set(unit, new Set(names(mayCell)));
    entryPoints.set(unit, names(entryCell));
  }
  if (allowed.size === 0) {
    throw new Error("docs/architecture.md: the Allowed imports table is empty");
  }
  for (const [unit, deps] of allowed) {
    for (const d of deps) {
      if (!allowed.has(d)) {
        throw new Error(`docs/architecture.md: "${unit}" may import "${d}", which has no row`);
      }
      if (d !== unit && allowed.get(d)!.has(unit)) {
        throw new Error(
          `docs/architecture.md: "${unit}" and "${d}" may import each other; allow one direction`,
        );
      }
    }
  }
  return { allowed, entryPoints };
}

/** {@linkcode parseRules} on docs/architecture.md. */
export async function readRules(root: URL): Promise<LayerRules> {
  return parseRules(await Deno.readTextFile(new URL("docs/architecture.md", root)));
}

const IMPORT_RE =
  /(?:^|[;\s])(?:import|export)\s+(type\s+)?(?:[\w*{}\s,$]+?\s+from\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

/** The relative imports of one source text (specifier, type-only), comments ignored. */
export function importsOf(text: string): { specifier: string; typeOnly: boolean }[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const out: { specifier: string; typeOnly: boolean }[] = [];
  for (const m of code.matchAll(IMPORT_RE)) {
    const specifier = m[2] ?? m[3]!;
    if (specifier.startsWith(".")) out.push({ specifier, typeOnly: m[1] !== undefined });
  }
  return out;
}

/** The imports between files of `src/` (generated code and dashboard bundles excluded). */
export async function readImportGraph(root: URL): Promise<ImportEdge[]> {
  const src = new URL("src/", root);
  const edges: ImportEdge[] = [];
  const walk = async (dir: URL, rel: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = rel + e.name;
      if (e.isDirectory) {
        if (path !== "rpc/gen") await walk(new URL(`${e.name}/`, dir), `${path}/`);
      } else if (e.name.endsWith(".ts") && !e.name.endsWith("_gen.ts")) {
        const text = await Deno.readTextFile(new URL(e.name, dir));
        for (const { specifier, typeOnly } of importsOf(text)) {
          const target = new URL(specifier, new URL(path, src)).href;
          if (!target.startsWith(src.href)) continue;
          edges.push({ from: path, to: target.slice(src.href.length), typeOnly });
        }
      }
    }
  };
  await walk(src, "");
  return edges;
}
