/**
 * Test helpers: what `ps` says remains of a process group or session.
 * @module
 */

/** Lines "pid pgid stat args" of every process (zombies included) whose process group is `pgid`. */
export async function groupProcesses(pgid: number): Promise<string[]> {
  const out = await new Deno.Command("ps", {
    args: ["-eo", "pid=,pgid=,stat=,args="],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").map((l) => l.trim()).filter((l) => {
    const fields = l.split(/\s+/);
    return fields.length >= 2 && Number(fields[1]) === pgid;
  });
}

/** Lines "pid sid stat args" of the live (not zombie) processes of session `sid`. */
export async function liveSessionProcesses(sid: number): Promise<string[]> {
  const out = await new Deno.Command("ps", {
    args: ["-eo", "pid=,sid=,stat=,args="],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").map((l) => l.trim()).filter((l) => {
    const fields = l.split(/\s+/);
    return fields.length >= 3 && Number(fields[1]) === sid && !fields[2]!.startsWith("Z");
  });
}

/** Lines "pid pgid stat args" of the live (not zombie) processes of process group `pgid`. */
export async function liveGroupProcesses(pgid: number): Promise<string[]> {
  return (await groupProcesses(pgid)).filter((l) => !l.split(/\s+/)[2]!.startsWith("Z"));
}
