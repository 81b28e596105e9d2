/**
 * `iris auth hash-token` and `iris auth new-token`: make tokens and the SHA-256 hashes the config's
 * `auth.tokens` stores. Tokens are read from a file or stdin, never from the command line, so they
 * do not end up in shell history or `ps`.
 * @module
 */
import { hashToken, newToken, readTokenFile } from "../auth/mod.ts";
import { bool, type CommandSpec, str, UsageError } from "./args.ts";

async function readStdin(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of Deno.stdin.readable) chunks.push(chunk);
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

const hashTokenCommand: CommandSpec = {
  name: "auth hash-token",
  summary: "Print the sha256 of a token (read from --token-file or stdin) for auth.tokens.",
  usage: "auth hash-token [--token-file FILE] < token",
  options: {
    "token-file": { type: "string", value: "FILE", description: "File holding the token" },
  },
  examples: [
    "iris auth hash-token --token-file ~/.iris/token",
    "echo -n $TOKEN | iris auth hash-token",
  ],
  async run(p, io) {
    const file = str(p, "token-file");
    let token: string;
    if (file !== undefined) {
      try {
        token = readTokenFile("--token-file", file);
      } catch (err) {
        throw new UsageError(err instanceof Error ? err.message : String(err));
      }
    } else {
      token = (await readStdin()).trim();
      if (token === "" || /\s/.test(token)) {
        throw new UsageError("stdin must hold one token (no spaces)");
      }
    }
    io.out(`${hashToken(token)}\n`);
    return 0;
  },
};

const newTokenCommand: CommandSpec = {
  name: "auth new-token",
  summary: "Write a fresh random token to a file (mode 0600) and print its sha256.",
  usage: "auth new-token --out FILE [--force]",
  options: {
    out: { type: "string", value: "FILE", description: "Where to write the token" },
    force: { type: "boolean", description: "Overwrite FILE if it exists" },
  },
  examples: ["iris auth new-token --out ~/.iris/token"],
  async run(p, io) {
    const out = str(p, "out");
    if (!out) throw new UsageError("--out FILE is required");
    const token = newToken();
    try {
      await Deno.writeTextFile(out, token + "\n", { mode: 0o600, createNew: !bool(p, "force") });
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) {
        throw new UsageError(`${out} exists (use --force to overwrite)`);
      }
      throw err;
    }
    io.out(`${hashToken(token)}\n`);
    return 0;
  },
};

/** Token helper commands. */
export const authCommands: readonly CommandSpec[] = [hashTokenCommand, newTokenCommand];
