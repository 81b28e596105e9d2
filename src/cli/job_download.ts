/**
 * `iris job download JOB_ID [PATH]`: files of a job's output directory (IRIS_OUTPUT_DIR), fetched
 * through the controller from the workers that ran its tasks (ReadJobOutput; owner or admin).
 * @module
 */
import { dirname, join } from "node:path";
import type { IrisClient } from "../client/mod.ts";
import { bool, type CommandSpec, formatBytes, str, table, UsageError } from "./args.ts";
import { cliClient, CONTROLLER_OPTION, TOKEN_FILE_OPTION } from "./job.ts";

/** The download command. */
export const jobDownloadCommand: CommandSpec = {
  name: "job download",
  summary: "Download files a job wrote to its output directory (IRIS_OUTPUT_DIR).",
  usage: "job download JOB_ID [PATH] [-o DEST] [--list]",
  description: "PATH is relative to the output directory; a directory (or none: all of it) is\n" +
    "downloaded into DEST (default .), keeping relative paths; a file goes to DEST (default ./NAME).",
  positionals: { min: 1, max: 2, names: "JOB_ID [PATH]" },
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    output: { type: "string", short: "o", value: "DEST", description: "Where to write" },
    list: { type: "boolean", description: "Only list the files" },
  },
  examples: [
    "iris job download /alice/train checkpoints/step-1000.pt",
    "iris job download /alice/train -o ./train-outputs",
  ],
  async run(p, io) {
    const [jobId, path = ""] = p.positionals as [string, string?];
    const client = cliClient(p);
    const first = await readChunk(client, jobId, path, 0);
    const dest = str(p, "output");
    if (!first.isDir) {
      let target = dest ?? path.split("/").pop()!;
      if (dest && (await Deno.stat(dest).catch(() => null))?.isDirectory) {
        target = join(dest, path.split("/").pop()!);
      }
      if (bool(p, "list")) {
        io.out(`${path}\t${first.sizeBytes}\n`);
        return 0;
      }
      await downloadFile(client, jobId, path, target, first);
      io.err(`${path} -> ${target} (${formatBytes(first.sizeBytes)})\n`);
      return 0;
    }
    if (bool(p, "list")) {
      io.out(table(["PATH", "SIZE"], first.files.map((f) => [f.path, formatBytes(f.sizeBytes)])));
      return 0;
    }
    const root = dest ?? ".";
    const prefix = path.replace(/^\.?\/+/, "").replace(/\/+$/, "");
    for (const f of first.files) {
      const rel = prefix && f.path.startsWith(prefix + "/")
        ? f.path.slice(prefix.length + 1)
        : f.path;
      if (rel.split("/").includes("..") || rel.startsWith("/")) {
        throw new UsageError(`refusing output path ${JSON.stringify(f.path)}`);
      }
      const target = join(root, rel);
      await downloadFile(client, jobId, f.path, target);
      io.err(`${f.path} -> ${target} (${formatBytes(f.sizeBytes)})\n`);
    }
    if (first.files.length === 0) io.err(`no files under ${path || "the output directory"}\n`);
    return 0;
  },
};

async function readChunk(client: IrisClient, jobId: string, path: string, offset: number) {
  return await client.call((rpc) => rpc.readJobOutput({ jobId, path, offset, length: 0 }));
}

async function downloadFile(
  client: IrisClient,
  jobId: string,
  path: string,
  target: string,
  first?: { data: Uint8Array; sizeBytes: number },
): Promise<void> {
  await Deno.mkdir(dirname(target), { recursive: true });
  using f = await Deno.open(target, { write: true, create: true, truncate: true });
  let chunk = first ?? await readChunk(client, jobId, path, 0);
  let offset = 0;
  for (;;) {
    let written = 0;
    while (written < chunk.data.length) written += await f.write(chunk.data.subarray(written));
    offset += chunk.data.length;
    if (offset >= chunk.sizeBytes || chunk.data.length === 0) break;
    chunk = await readChunk(client, jobId, path, offset);
  }
}
