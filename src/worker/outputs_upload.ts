/**
 * Copies a job's output directory to the cluster's outputs prefix (`defaults.outputs.prefix`,
 * `iris worker serve --outputs-prefix`) when an attempt ends: `file:///dir` by a local copy (tests,
 * shared file systems), `gs://bucket/path` by `gcloud storage rsync` through the command seam.
 * docs/python.md#outputs-and-checkpoints.
 * @module
 */
import { join } from "node:path";
import { InvalidArgumentError } from "../errors.ts";
import { type CommandRunner, DenoCommandRunner, lastLines } from "../command/mod.ts";
import { type Duration, minutes } from "../time.ts";
import { formatDuration } from "../format.ts";

/** What a prefix may look like (the config and the flag check it the same way). */
export const OUTPUTS_PREFIX_PATTERN =
  /^(file:\/\/\/\S*[^\s/]|gs:\/\/[a-z0-9][a-z0-9._-]*(\/\S*)?)$/;

/**
 * Where a job's outputs go under `prefix`: `<prefix>/<job id, URL-encoded>` (no trailing slash).
 * @throws {InvalidArgumentError} naming `field` when the prefix is neither gs:// nor file:///
 */
export function outputsDestination(prefix: string, jobId: string, field = "prefix"): string {
  if (!OUTPUTS_PREFIX_PATTERN.test(prefix)) {
    throw new InvalidArgumentError(
      field,
      `must be "gs://bucket/path" or "file:///absolute/path" (got ${JSON.stringify(prefix)})`,
    );
  }
  return `${prefix.replace(/\/+$/, "")}/${encodeURIComponent(jobId)}`;
}

/** The gcloud argv that mirrors `dir` into `dest` (a gs:// URL): new and changed files, no deletes. */
export function gcloudRsyncArgv(dir: string, dest: string): string[] {
  return ["gcloud", "storage", "rsync", "--recursive", dir, dest];
}

/** Options of {@linkcode uploadOutputs}. */
export interface UploadOptions {
  /** Runs gcloud for gs:// prefixes. @default a DenoCommandRunner */
  readonly runner?: CommandRunner;
  /** Hard limit of one upload. @default 30 min */
  readonly timeout?: Duration;
  readonly signal?: AbortSignal;
}

/** What was copied. */
export interface UploadResult {
  readonly destination: string;
  /** Files copied (file:// only; gcloud does not say). */
  readonly files?: number;
}

/**
 * Copies `dir` (a job's IRIS_OUTPUT_DIR) to its destination under `prefix`; files already there
 * are overwritten, none are deleted. Symlinks are not followed (a task cannot export files
 * outside its directory).
 * @throws {Error} naming the destination when the copy fails or times out
 */
export async function uploadOutputs(
  dir: string,
  prefix: string,
  jobId: string,
  options: UploadOptions = {},
): Promise<UploadResult> {
  const destination = outputsDestination(prefix, jobId);
  const timeout = options.timeout ?? minutes(30);
  if (destination.startsWith("file://")) {
    const files = await copyDir(dir, new URL(destination).pathname);
    return { destination, files };
  }
  const runner = options.runner ?? new DenoCommandRunner();
  const r = await runner.run({ argv: gcloudRsyncArgv(dir, destination) }, {
    timeout,
    signal: options.signal,
  });
  if (r.timedOut) {
    throw new Error(`copying outputs to ${destination} timed out after ${formatDuration(timeout)}`);
  }
  if (r.code !== 0) {
    throw new Error(
      `copying outputs to ${destination} failed (gcloud storage rsync exit ${r.code}): ${
        lastLines(r.stderr || r.stdout, 3)
      }`,
    );
  }
  return { destination };
}

async function copyDir(from: string, to: string): Promise<number> {
  await Deno.mkdir(to, { recursive: true });
  let n = 0;
  for await (const e of Deno.readDir(from)) {
    const src = join(from, e.name);
    const dst = join(to, e.name);
    if (e.isDirectory) n += await copyDir(src, dst);
    else if (e.isFile) {
      await Deno.copyFile(src, `${dst}.iris-tmp`);
      await Deno.rename(`${dst}.iris-tmp`, dst);
      n++;
    }
  }
  return n;
}
