/**
 * Running external commands: the `CommandRunner` seam (every call with a hard timeout), the real
 * `DenoCommandRunner`, `runAll` for bounded parallel work and the quoting/tail helpers. Below both
 * src/platform (gcloud, ssh) and src/worker (device probes, output uploads), so neither imports
 * the other for it.
 * @module
 */
export {
  type Command,
  type CommandResult,
  type CommandRunner,
  DenoCommandRunner,
  describeSecretStdin,
  formatCommand,
  KILL_GRACE,
  lastLines,
  type OutputStream,
  runAll,
  type RunAllOptions,
  type RunOptions,
  shellQuote,
  type StreamHandle,
  type StreamOptions,
  type TaskOutcome,
} from "./command.ts";
