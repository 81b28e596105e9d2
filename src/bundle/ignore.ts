/**
 * `.irisignore`: gitignore-like rules deciding which workspace paths stay out of a bundle.
 *
 * Supported: blank lines and `#` comments, `!` negation (last matching rule wins), a trailing `/`
 * for directories only, a leading or inner `/` anchoring the pattern to the workspace root,
 * `*`, `?`, `[a-z]` / `[!a-z]` classes, `**` (`**\/x`, `x/**`, `a/**\/b`) and `\` escapes.
 * Patterns without a `/` match the entry's name at any depth. As in git, a file inside an
 * ignored directory cannot be re-included: the directory is never walked.
 * `.git`, `node_modules` and `.iris` are always ignored, at any depth, whatever the rules say.
 *
 * A workspace's rules are layered ({@linkcode IgnoreStack}): the Python defaults
 * ({@linkcode DEFAULT_IGNORE_TEXT}), then every `.gitignore` (each relative to its directory,
 * outer before inner), then `.irisignore`; the last matching rule of all wins, so `.irisignore`
 * can re-include (`!wandb/`) what the others leave out.
 * @module
 */

/** Names ignored at every depth regardless of `.irisignore`. */
export const ALWAYS_IGNORED: readonly string[] = Object.freeze([".git", "node_modules", ".iris"]);

/** Rules applied before any ignore file: Python environments, caches and run logs. */
export const DEFAULT_IGNORE_TEXT = [
  ".venv",
  "__pycache__/",
  "*.pyc",
  ".ipynb_checkpoints/",
  "wandb/",
].join("\n");

interface Rule {
  negate: boolean;
  dirOnly: boolean;
  anchored: boolean;
  re: RegExp;
}

/** A parsed `.irisignore`. */
export class IgnoreRules {
  readonly #rules: Rule[];

  private constructor(rules: Rule[]) {
    this.#rules = rules;
  }

  /** Parses the text of an ignore file (an empty string gives just the always-ignored names). */
  static parse(text: string): IgnoreRules {
    const rules: Rule[] = [];
    for (const line of text.split(/\r?\n/)) {
      const rule = compileRule(line);
      if (rule) rules.push(rule);
    }
    return new IgnoreRules(rules);
  }

  /** Number of rules parsed (comments and blanks excluded). */
  get size(): number {
    return this.#rules.length;
  }

  /** True when the workspace-relative POSIX `path` ("a/b.txt") should be left out. */
  ignores(path: string, isDir: boolean): boolean {
    const base = path.slice(path.lastIndexOf("/") + 1);
    if (ALWAYS_IGNORED.includes(base)) return true;
    return this.match(path, isDir) ?? false;
  }

  /** The verdict of the last rule matching `path` (relative to these rules' directory), if any. */
  match(path: string, isDir: boolean): boolean | undefined {
    const base = path.slice(path.lastIndexOf("/") + 1);
    let ignored: boolean | undefined;
    for (const rule of this.#rules) {
      if (rule.dirOnly && !isDir) continue;
      if (rule.re.test(rule.anchored ? path : base)) ignored = !rule.negate;
    }
    return ignored;
  }
}

/** One rule set and the directory ("" = the workspace root) its paths are relative to. */
interface Layer {
  dir: string;
  rules: IgnoreRules;
}

/**
 * A workspace's layered rules: defaults, then `.gitignore` files (outer before inner), then
 * `.irisignore`. The last matching rule of all wins.
 */
export class IgnoreStack {
  readonly #defaults: IgnoreRules;
  readonly #git: readonly Layer[];
  readonly #final: IgnoreRules;

  constructor(defaults: IgnoreRules, final: IgnoreRules, git: readonly Layer[] = []) {
    this.#defaults = defaults;
    this.#final = final;
    this.#git = git;
  }

  /** This stack with the `.gitignore` of directory `dir` ("" for the root) added. */
  withGitignore(dir: string, rules: IgnoreRules): IgnoreStack {
    return new IgnoreStack(this.#defaults, this.#final, [...this.#git, { dir, rules }]);
  }

  /** True when the workspace-relative `path` should be left out. */
  ignores(path: string, isDir: boolean): boolean {
    const base = path.slice(path.lastIndexOf("/") + 1);
    if (ALWAYS_IGNORED.includes(base)) return true;
    const layers = [{ dir: "", rules: this.#defaults }, ...this.#git, {
      dir: "",
      rules: this.#final,
    }];
    let ignored = false;
    for (const { dir, rules } of layers) {
      if (dir !== "" && !path.startsWith(dir + "/")) continue;
      const verdict = rules.match(dir === "" ? path : path.slice(dir.length + 1), isDir);
      if (verdict !== undefined) ignored = verdict;
    }
    return ignored;
  }
}

function compileRule(line: string): Rule | null {
  let p = line.endsWith("\\ ") ? line : line.trimEnd();
  if (p === "" || p.startsWith("#")) return null;
  let negate = false;
  if (p.startsWith("!")) {
    negate = true;
    p = p.slice(1);
  } else if (p.startsWith("\\!") || p.startsWith("\\#")) {
    p = p.slice(1);
  }
  let dirOnly = false;
  if (p.endsWith("/")) {
    dirOnly = true;
    p = p.replace(/\/+$/, "");
  }
  if (p === "") return null;
  const anchored = p.includes("/");
  p = p.replace(/^\/+/, "");
  if (p === "") return null;
  return { negate, dirOnly, anchored, re: new RegExp(`^${globToRegExp(p)}$`, "s") };
}

/** Translates one glob (without leading/trailing slashes) to a RegExp source. */
function globToRegExp(p: string): string {
  let out = "";
  let i = 0;
  while (i < p.length) {
    const c = p[i] ?? "";
    if (c === "*") {
      let j = i;
      while (p[j] === "*") j++;
      const stars = j - i;
      const atStart = i === 0 || p[i - 1] === "/";
      const atEnd = j === p.length || p[j] === "/";
      if (stars >= 2 && atStart && atEnd) {
        if (j === p.length) {
          out += ".*";
          i = j;
        } else {
          out += "(?:.*/)?";
          i = j + 1;
        }
      } else {
        out += "[^/]*";
        i = j;
      }
    } else if (c === "?") {
      out += "[^/]";
      i++;
    } else if (c === "[") {
      const cls = parseClass(p, i);
      if (cls === null) {
        out += "\\[";
        i++;
      } else {
        out += cls.source;
        i = cls.end;
      }
    } else if (c === "\\" && i + 1 < p.length) {
      out += escapeRegExp(p[i + 1] ?? "");
      i += 2;
    } else {
      out += escapeRegExp(c);
      i++;
    }
  }
  return out;
}

function parseClass(p: string, start: number): { source: string; end: number } | null {
  let j = start + 1;
  const negated = p[j] === "!" || p[j] === "^";
  if (negated) j++;
  const bodyStart = j;
  if (p[j] === "]") j++;
  while (j < p.length && p[j] !== "]") j++;
  if (j >= p.length) return null;
  const body = p.slice(bodyStart, j).replace(/[\\\]^[]/g, "\\$&");
  return { source: negated ? `[^${body}/]` : `(?!/)[${body}]`, end: j + 1 };
}

function escapeRegExp(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
