/** Checks for things a cluster must not leave behind: listeners on its addresses, temp dirs. */

/** True when something accepts TCP connections at `url`'s host:port. */
export async function isListening(url: string): Promise<boolean> {
  const u = new URL(url);
  try {
    const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Names in the temp dir (or `dir`) starting with `prefix`. */
export function tempEntries(prefix: string, dir = Deno.env.get("TMPDIR") || "/tmp"): Set<string> {
  const out = new Set<string>();
  for (const e of Deno.readDirSync(dir)) if (e.name.startsWith(prefix)) out.add(`${dir}/${e.name}`);
  return out;
}

/**
 * Live processes whose working directory is `dir` or below it (also once `dir` is deleted).
 * Tasks run in attempt dirs under their cluster's work dir, so this names exactly one cluster's
 * task processes, unlike matching command lines, which tests running in parallel may share.
 */
export async function processesIn(dir: string): Promise<string[]> {
  const root = await Deno.realPath(dir).catch(() => dir);
  const out: string[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    let cwd: string;
    let args: string;
    try {
      cwd = (await Deno.readLink(`/proc/${e.name}/cwd`)).replace(/ \(deleted\)$/, "");
      args = (await Deno.readTextFile(`/proc/${e.name}/cmdline`)).replaceAll("\0", " ").trim();
    } catch {
      continue; // exited, a zombie (no cwd), or not ours to look at
    }
    if (cwd === root || cwd.startsWith(`${root}/`)) out.push(`${e.name} ${args} (in ${cwd})`);
  }
  return out;
}
