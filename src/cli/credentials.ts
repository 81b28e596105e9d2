/**
 * Where `iris login` keeps API keys: `$XDG_CONFIG_HOME/iris/credentials.json` (else
 * `~/.config/iris/credentials.json`), mode 0600 in a 0700 directory, one key per controller URL.
 * Client commands use it when neither --token-file nor IRIS_TOKEN gives a token.
 * @module
 */

/** The credentials file, or undefined when no config dir can be found. */
export function credentialsPath(): string | undefined {
  try {
    const xdg = Deno.env.get("XDG_CONFIG_HOME");
    const home = Deno.env.get("HOME");
    const dir = xdg || (home ? `${home}/.config` : undefined);
    return dir ? `${dir}/iris/credentials.json` : undefined;
  } catch {
    return undefined;
  }
}

function readAll(path: string): Record<string, string> {
  try {
    const parsed = JSON.parse(Deno.readTextFileSync(path));
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

/** The stored key for `url`, if any. */
export function storedToken(url: string): string | undefined {
  const path = credentialsPath();
  if (!path) return undefined;
  const t = readAll(path)[url.replace(/\/+$/, "")];
  return typeof t === "string" && t !== "" ? t : undefined;
}

/** Stores `token` for `url` (file 0600, written atomically). @returns the file's path */
export function storeToken(url: string, token: string): string {
  const path = credentialsPath();
  if (!path) throw new Error("no config dir: set HOME or XDG_CONFIG_HOME");
  const dir = path.slice(0, path.lastIndexOf("/"));
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const all = { ...readAll(path), [url.replace(/\/+$/, "")]: token };
  const tmp = `${path}.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(all, null, 2) + "\n", { mode: 0o600 });
  Deno.chmodSync(tmp, 0o600);
  Deno.renameSync(tmp, path);
  return path;
}
