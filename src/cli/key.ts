/**
 * API keys and users: `iris key create|list|revoke`, `iris login`, `iris whoami`, and the
 * admin's `iris user create|list|delete`. A key is printed once, by `key create`; `login` stores
 * one for a controller (credentials.ts) after checking it with GetCurrentUser.
 * @module
 */
import { IrisClient } from "../client/mod.ts";
import { type CommandSpec, str, table, UsageError } from "./args.ts";
import { cliClient, CONTROLLER_OPTION, controllerUrl, TOKEN_FILE_OPTION } from "./job.ts";
import { readTokenFile } from "../auth/mod.ts";
import { parseDurationMs } from "../config/mod.ts";
import { seconds } from "../time.ts";
import { formatTimestamp as when } from "../format.ts";
import { storeToken } from "./credentials.ts";

const common = { controller: CONTROLLER_OPTION, "token-file": TOKEN_FILE_OPTION };

const keyCreate: CommandSpec = {
  name: "key create",
  summary: "Create an API key (printed once; only its hash is stored).",
  usage: "key create [--name NAME] [--expires DURATION] [--user USER]",
  options: {
    ...common,
    name: { type: "string", value: "NAME", description: "A label, e.g. laptop" },
    expires: {
      type: "string",
      value: "DURATION",
      description: "Lifetime, e.g. 30d (default: none)",
    },
    user: { type: "string", value: "USER", description: "Whose key (admins only; default: you)" },
  },
  examples: ["iris key create --name laptop --expires 90d"],
  async run(p, io) {
    const raw = str(p, "expires");
    const ttl = raw === undefined ? 0 : parseDurationMs(raw);
    if (ttl === undefined || ttl < 0 || (raw !== undefined && ttl === 0)) {
      throw new UsageError(
        `--expires must be a duration like 30d or 12h (got ${JSON.stringify(raw)})`,
      );
    }
    const res = await cliClient(p).call((rpc) =>
      rpc.createApiKey({ user: str(p, "user") ?? "", name: str(p, "name") ?? "", ttlMs: ttl })
    );
    io.out(`${res.token}\n`);
    io.err(
      `Created key ${res.key?.keyId} for ${res.key?.user}${
        res.key?.expiresAtMs ? `, expires ${when(res.key.expiresAtMs)}` : ""
      }. It is shown only now: store it (e.g. iris login --token-file FILE).\n`,
    );
    return 0;
  },
};

const keyList: CommandSpec = {
  name: "key list",
  summary: "List your API keys (admins: --user USER or --user '*').",
  usage: "key list [--user USER]",
  options: { ...common, user: { type: "string", value: "USER", description: "Whose keys" } },
  async run(p, io) {
    const res = await cliClient(p).call((rpc) => rpc.listApiKeys({ user: str(p, "user") ?? "" }));
    io.out(table(
      ["KEY", "USER", "NAME", "CREATED", "EXPIRES", "LAST USED"],
      res.keys.map((k) => [
        k.keyId,
        k.user,
        k.name || "-",
        when(k.createdAtMs),
        when(k.expiresAtMs),
        when(k.lastUsedMs),
      ]),
    ));
    return 0;
  },
};

const keyRevoke: CommandSpec = {
  name: "key revoke",
  summary: "Revoke an API key; the next request with it is refused.",
  usage: "key revoke KEY_ID",
  positionals: { min: 1, max: 1, names: "KEY_ID" },
  options: common,
  async run(p, io) {
    await cliClient(p).call((rpc) => rpc.revokeApiKey({ keyId: p.positionals[0]! }));
    io.out(`Revoked ${p.positionals[0]}\n`);
    return 0;
  },
};

async function readStdinToken(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of Deno.stdin.readable) chunks.push(chunk);
  const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c]))).trim();
  if (text === "" || /\s/.test(text)) throw new UsageError("stdin must hold one key (no spaces)");
  return text;
}

const login: CommandSpec = {
  name: "login",
  summary: "Check an API key and store it for this controller (0600, in your config dir).",
  usage: "login [--controller URL] [--token-file FILE] < key",
  description:
    "The key is read from --token-file or stdin, never from the command line. Later commands " +
    "against the same controller use it when neither --token-file nor IRIS_TOKEN is given.",
  options: common,
  examples: ["iris key create --name laptop | iris login --controller http://10.0.0.2:10000"],
  async run(p, io) {
    const file = str(p, "token-file");
    let token: string;
    if (file !== undefined) {
      try {
        token = readTokenFile("--token-file", file);
      } catch (err) {
        throw new UsageError(err instanceof Error ? err.message : String(err));
      }
    } else token = await readStdinToken();
    const url = controllerUrl(p);
    const me = await new IrisClient(url, { retryFor: seconds(3), token }).call((rpc) =>
      rpc.getCurrentUser({})
    );
    const path = storeToken(url, token);
    io.out(
      `Logged in to ${url} as ${me.user || "(auth off)"} (${me.role}); key stored in ${path}\n`,
    );
    return 0;
  },
};

const whoami: CommandSpec = {
  name: "whoami",
  summary: "Show who the controller takes you for.",
  usage: "whoami",
  options: common,
  async run(p, io) {
    const me = await cliClient(p).call((rpc) => rpc.getCurrentUser({}));
    if (me.authMode === "none") {
      io.out("auth is off on this controller: everyone may do everything\n");
    } else io.out(`${me.user} (${me.role})${me.keyId ? ` with key ${me.keyId}` : ""}\n`);
    return 0;
  },
};

const userCreate: CommandSpec = {
  name: "user create",
  summary: "Create a user, or change their role (admins only).",
  usage: "user create USER [--admin]",
  positionals: { min: 1, max: 1, names: "USER" },
  options: { ...common, admin: { type: "boolean", description: "Give the admin role" } },
  examples: ["iris user create carol", "iris key create --user carol"],
  async run(p, io) {
    const res = await cliClient(p).call((rpc) =>
      rpc.createUser({ user: p.positionals[0]!, role: p.values.admin ? "admin" : "user" })
    );
    io.out(`User ${res.user?.user} (${res.user?.role})\n`);
    return 0;
  },
};

const userList: CommandSpec = {
  name: "user list",
  summary: "List users (from the config's tokens and created ones) and their key counts.",
  usage: "user list",
  options: common,
  async run(p, io) {
    const res = await cliClient(p).call((rpc) => rpc.listUsers({}));
    io.out(table(
      ["USER", "ROLE", "SOURCE", "KEYS", "CREATED"],
      res.users.map((u) => [u.user, u.role, u.source, String(u.keyCount), when(u.createdAtMs)]),
    ));
    return 0;
  },
};

const userDelete: CommandSpec = {
  name: "user delete",
  summary: "Delete a user and revoke their keys (admins only).",
  usage: "user delete USER",
  positionals: { min: 1, max: 1, names: "USER" },
  options: common,
  async run(p, io) {
    const res = await cliClient(p).call((rpc) => rpc.deleteUser({ user: p.positionals[0]! }));
    io.out(`Deleted ${p.positionals[0]} (${res.revokedKeys} key(s) revoked)\n`);
    return 0;
  },
};

/** `iris key …`, `iris login`, `iris whoami`, `iris user create|list|delete`. */
export const keyCommands: readonly CommandSpec[] = [
  keyCreate,
  keyList,
  keyRevoke,
  login,
  whoami,
  userCreate,
  userList,
  userDelete,
];
