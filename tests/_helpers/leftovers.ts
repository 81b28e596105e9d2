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
