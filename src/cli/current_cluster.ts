/**
 * The current cluster: `iris cluster start` (local) writes its controller URL to
 * `$IRIS_HOME/current-cluster` (default `~/.iris/current-cluster`), and client commands use it
 * when neither --controller nor IRIS_CONTROLLER_URL is given; `cluster stop` removes it.
 * Kept free of heavy imports: every client command reads it.
 * @module
 */

/** Path of the current-cluster file. */
export function currentClusterPath(): string {
  const home = Deno.env.get("IRIS_HOME") || `${Deno.env.get("HOME") || "/root"}/.iris`;
  return `${home}/current-cluster`;
}

/** The URL in the current-cluster file, or undefined when there is none. */
export function readCurrentCluster(): string | undefined {
  try {
    return Deno.readTextFileSync(currentClusterPath()).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Writes `url` as the current cluster; disposing removes it if it still holds `url`. */
export async function writeCurrentCluster(url: string): Promise<AsyncDisposable> {
  const path = currentClusterPath();
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(path, url + "\n");
  return { [Symbol.asyncDispose]: () => clearCurrentCluster(url) };
}

/** Removes the current-cluster file if it holds `url` (any URL when `url` is undefined). */
export async function clearCurrentCluster(url?: string): Promise<void> {
  const path = currentClusterPath();
  const held = await Deno.readTextFile(path).then((t) => t.trim()).catch(() => undefined);
  if (held !== undefined && (url === undefined || held === url)) {
    await Deno.remove(path).catch(() => {});
  }
}
