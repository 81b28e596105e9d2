/**
 * `iris task exec TASK -- CMD…`: runs a command in a running task's directory, as its user, with
 * its env and limits, through the controller to the task's worker (ExecInTask, server-streaming),
 * printing its output as it comes and exiting with its exit code. Recorded in the transactions log.
 * @module
 */
import { controllerClient } from "../rpc/mod.ts";
import { parseDuration } from "../time.ts";
import { type CommandSpec, num, str, UsageError } from "./args.ts";
import { cliToken, CONTROLLER_OPTION, controllerUrl, TOKEN_FILE_OPTION } from "./job.ts";
import { INTERACTIVE_OPTIONS, interactiveFlags, runSession } from "./interactive.ts";

const taskExecCommand: CommandSpec = {
  name: "task exec",
  summary: "Run a command in a running task's directory, as its user, with its env and limits.",
  usage: "task exec TASK_ID [-i [-t|-T]] [--timeout 60s|none] -- CMD [ARGS…]",
  description: "TASK_ID is a task (/alice/train/0). The command runs on the task's worker in the " +
    "task's working directory, as the task's user, with the task's environment and rlimits, " +
    "and is killed (with everything it started) at the time limit, default 60s; 'none' needs " +
    "an admin. Its stdout and stderr are streamed; the exit code is the command's. Needs the " +
    "task's owner or an admin; the transactions log records who ran what. Without -i the " +
    "command gets no stdin. With -i, this terminal's stdin is sent to it; when stdin and " +
    "stdout are a terminal (or with -t) the command gets a terminal of this one's size " +
    "(script(1) on the worker), the local terminal goes raw (Ctrl-C and Ctrl-D go to the " +
    "command) and output comes on stdout only; -T keeps a plain pipe. An interactive shell " +
    "usually wants --timeout none (admin) or a long limit.",
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    ...INTERACTIVE_OPTIONS,
    timeout: {
      type: "string",
      value: "DURATION",
      description: "Time limit, or none",
      default: "60s",
    },
  },
  positionals: { min: 1, max: 1, names: "TASK_ID" },
  examples: [
    "iris task exec /alice/train/0 -- ls -la",
    "iris task exec /alice/train/0 -- sh -c 'env | sort'",
    "iris task exec -i --timeout 1h /alice/train/0 -- bash",
    "echo 'print(1+1)' | iris task exec -i /alice/train/0 -- python3",
  ],
  async run(p, io, signal) {
    if (p.rest.length === 0) throw new UsageError("missing the command after --");
    const raw = str(p, "timeout")!;
    let timeoutMs = -1;
    if (raw !== "none") {
      const d = parseDuration(raw);
      if (d === undefined || d <= 0 || d > 2 ** 31 - 1) {
        throw new UsageError(
          `--timeout must be a duration like 60s or none (got ${JSON.stringify(raw)})`,
        );
      }
      timeoutMs = Math.round(d);
    }
    const interactive = interactiveFlags(p);
    const client = controllerClient(controllerUrl(p), { token: cliToken(p) });
    if (interactive) {
      const end = await runSession({
        client,
        output: client.execInTask(
          {
            taskId: p.positionals[0]!,
            command: p.rest,
            timeoutMs,
            interactive: true,
            ...interactive,
          },
          { signal },
        ),
        tty: interactive.tty,
        signal,
      });
      if (!end.finished) {
        io.err("iris task exec: the stream ended without an exit code\n");
        return 1;
      }
      if (end.error) io.err(`\r\niris task exec: ${end.error}\n`);
      return end.error && end.exitCode === 0 ? 1 : end.exitCode;
    }
    const out = new TextDecoder();
    const err = new TextDecoder();
    for await (
      const m of client.execInTask(
        { taskId: p.positionals[0]!, command: p.rest, timeoutMs },
        { signal },
      )
    ) {
      if (m.stdout.length) io.out(out.decode(m.stdout, { stream: true }));
      if (m.stderr.length) io.err(err.decode(m.stderr, { stream: true }));
      if (m.finished) {
        io.out(out.decode());
        io.err(err.decode());
        if (m.error) io.err(`iris task exec: ${m.error}\n`);
        return m.error && m.exitCode === 0 ? 1 : m.exitCode;
      }
    }
    io.err("iris task exec: the stream ended without an exit code\n");
    return 1;
  },
};

const taskProfileCommand: CommandSpec = {
  name: "task profile",
  summary: "Write a CPU profile of a running task to a file.",
  usage: "task profile TASK_ID [--seconds N] [--out FILE]",
  description: "Samples the task's processes on its worker for N seconds: py-spy (a speedscope " +
    "JSON) for a Python process when py-spy is installed there, otherwise a /proc-sampled " +
    "summary per process (running, disk wait, what it sleeps in, CPU seconds). The note printed " +
    "says why py-spy or Deno's --cpu-prof was not used. Needs the task's owner or an admin.",
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    seconds: { type: "string", value: "N", description: "How long to sample, 1..60", default: "5" },
    out: {
      type: "string",
      value: "FILE",
      description: "Where to write (default: ./profile-<task>-<time>.txt or .speedscope.json)",
    },
  },
  positionals: { min: 1, max: 1, names: "TASK_ID" },
  examples: ["iris task profile /alice/train/0 --seconds 10"],
  async run(p, io, signal) {
    const secs = num(p, "seconds", { min: 1, max: 60, integer: true })!;
    const taskId = p.positionals[0]!;
    const client = controllerClient(controllerUrl(p), { token: cliToken(p) });
    const res = await client.profileTask({ taskId, seconds: secs }, { signal });
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const ext = res.format === "speedscope" ? "speedscope.json" : "txt";
    const out = str(p, "out") ??
      `profile-${taskId.replace(/^\//, "").replace(/[^\w.-]+/g, "_")}-${stamp}.${ext}`;
    await Deno.writeFile(out, res.profile);
    if (res.note) io.err(`note: ${res.note}\n`);
    io.out(`${out} (${res.method}, ${res.format})\n`);
    return 0;
  },
};

/** `iris task …`. */
export const taskCommands: readonly CommandSpec[] = [taskExecCommand, taskProfileCommand];
