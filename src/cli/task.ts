/**
 * `iris task exec TASK -- CMD…`: runs a command in a running task's directory, as its user, with
 * its env and limits, through the controller to the task's worker (ExecInTask, server-streaming),
 * printing its output as it comes and exiting with its exit code. Recorded in the transactions log.
 * @module
 */
import { controllerClient } from "../rpc/client.ts";
import { parseDuration } from "../time.ts";
import { type CommandSpec, str, UsageError } from "./args.ts";
import { cliToken, CONTROLLER_OPTION, controllerUrl, TOKEN_FILE_OPTION } from "./job.ts";

const taskExecCommand: CommandSpec = {
  name: "task exec",
  summary: "Run a command in a running task's directory, as its user, with its env and limits.",
  usage: "task exec TASK_ID [--timeout 60s|none] -- CMD [ARGS…]",
  description: "TASK_ID is a task (/alice/train/0). The command runs on the task's worker in the " +
    "task's working directory, as the task's user, with the task's environment and rlimits, " +
    "and is killed (with everything it started) at the time limit, default 60s; 'none' needs " +
    "an admin. Its stdout and stderr are streamed; the exit code is the command's. Needs the " +
    "task's owner or an admin; the transactions log records who ran what. No stdin (-i is not " +
    "supported yet).",
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
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
    const client = controllerClient(controllerUrl(p), { token: cliToken(p) });
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

/** `iris task …`. */
export const taskCommands: readonly CommandSpec[] = [taskExecCommand];
