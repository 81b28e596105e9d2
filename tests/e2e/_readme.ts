/**
 * The code blocks of README.md, as tests/e2e/readme_test.ts runs them. A block is a fenced
 * ```sh or ```ts block; the nearest non-blank line before its fence may mark it:
 * - `<!-- illustrative ... -->`: shown, not run;
 * - `<!-- ci ... -->`: run as written by `.ci/run` (the test checks that .ci/run holds each line);
 * - `<!-- tested-by: FILE -->`: `deno task NAME` lines another test runs (the test checks that
 *   FILE passes every argument of the task's `deno run -A cli.ts …` to iris).
 * Commands of an `sh` block are its lines without comments, `\` continuations joined; a command
 * whose trailing comment mentions `Ctrl-C` keeps running (its own terminal, in the README's words).
 * @module
 */

/** One fenced block. */
export interface ReadmeBlock {
  readonly lang: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly body: string;
  readonly mark: "run" | "illustrative" | "ci" | "tested-by";
  /** The FILE of `<!-- tested-by: FILE -->`. */
  readonly testedBy?: string;
}

/** One command of an `sh` block. */
export interface ReadmeCommand {
  /** The command as written (trailing comment removed). */
  readonly text: string;
  /** Runs until Ctrl-C (its comment says so). */
  readonly background: boolean;
  readonly line: number;
}

export const README = new URL("../../README.md", import.meta.url).pathname;

/** Every ```sh and ```ts block of `markdown`. */
export function readmeBlocks(markdown: string): ReadmeBlock[] {
  const lines = markdown.split("\n");
  const blocks: ReadmeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w+)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const end = lines.findIndex((l, j) => j > i && /^```\s*$/.test(l));
    if (end < 0) throw new Error(`README.md:${i + 1}: unclosed code fence`);
    let k = i - 1;
    while (k >= 0 && lines[k]!.trim() === "") k--;
    const before = k >= 0 ? lines[k]!.trim() : "";
    const testedBy = /^<!--\s*tested-by:\s*(\S+)\s*-->/.exec(before)?.[1];
    const mark = /^<!--\s*illustrative\b/.test(before)
      ? "illustrative"
      : /^<!--\s*ci\b/.test(before)
      ? "ci"
      : testedBy
      ? "tested-by"
      : "run";
    const lang = open[1]!;
    if (lang === "sh" || lang === "ts") {
      const body = lines.slice(i + 1, end).join("\n");
      blocks.push({ lang, line: i + 1, body, mark, testedBy });
    }
    i = end;
  }
  return blocks;
}

/** Drops a trailing `# comment` outside quotes; returns [command, comment]. */
function splitComment(line: string): [string, string] {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
    } else if (c === "#" && (i === 0 || /\s/.test(line[i - 1]!))) {
      return [line.slice(0, i).trimEnd(), line.slice(i + 1).trim()];
    }
  }
  return [line.trimEnd(), ""];
}

/** The commands of an `sh` block (first line of the block is `line + 1`). */
export function shCommands(block: ReadmeBlock): ReadmeCommand[] {
  const out: ReadmeCommand[] = [];
  let pending = "";
  let start = 0;
  block.body.split("\n").forEach((raw, i) => {
    const [text, comment] = splitComment(raw);
    if (pending === "") start = block.line + 1 + i;
    if (text.trim() === "" && pending === "") return;
    if (text.endsWith("\\")) {
      pending += text.slice(0, -1) + " ";
      return;
    }
    const full = (pending + text).trim();
    pending = "";
    out.push({ text: full, background: /Ctrl-C/.test(comment), line: start });
  });
  return out;
}
