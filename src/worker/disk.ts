/**
 * How much disk a task directory uses, for the disk_bytes watcher (attempt.ts).
 * @module
 */

/**
 * Bytes allocated under `dir` (like `du -s`): 512-byte blocks of every file and directory,
 * or the size where the platform reports no blocks. Symlinks are not followed; entries that
 * vanish or cannot be read during the walk are skipped. Stops early (returning what it counted)
 * when `signal` aborts.
 */
export async function directoryUsage(dir: string, signal?: AbortSignal): Promise<number> {
  let total = 0;
  const stack = [dir];
  while (stack.length > 0 && !signal?.aborted) {
    const current = stack.pop()!;
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(current));
    } catch {
      continue;
    }
    for (const entry of entries) {
      const path = `${current}/${entry.name}`;
      try {
        const info = await Deno.lstat(path);
        total += info.blocks !== null ? info.blocks * 512 : info.size;
        if (info.isDirectory) stack.push(path);
      } catch {
        // Removed meanwhile.
      }
    }
  }
  return total;
}
