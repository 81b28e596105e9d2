/**
 * Test helpers that look at live processes through /proc (Linux): used to prove that no
 * process outlives a runner, follower or tunnel. Zombies count as gone.
 * @module
 */

interface ProcStat {
  readonly pid: number;
  readonly state: string;
  readonly pgid: number;
}

function readStat(pid: number): ProcStat | undefined {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { pid, state: fields[0] ?? "?", pgid: Number(fields[2]) };
  } catch {
    return undefined;
  }
}

function allPids(): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) if (/^\d+$/.test(e.name)) pids.push(Number(e.name));
  return pids;
}

/** True while `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  const s = readStat(pid);
  return s !== undefined && s.state !== "Z" && s.state !== "X";
}

/** Live (non-zombie) processes of process group `pgid`. */
export function liveInGroup(pgid: number): number[] {
  return allPids().filter((pid) => {
    const s = readStat(pid);
    return s !== undefined && s.pgid === pgid && s.state !== "Z" && s.state !== "X";
  });
}

/** Live processes whose command line contains `marker`. */
export function liveWithMarker(marker: string): number[] {
  return allPids().filter((pid) => {
    if (pid === Deno.pid || !isAlive(pid)) return false;
    try {
      return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").includes(marker);
    } catch {
      return false;
    }
  });
}

/** A marker unique to one test, to find its processes. */
export function uniqueMarker(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}
