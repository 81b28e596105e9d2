/**
 * A controller and one worker as real `iris` processes on loopback, for CLI tests; plus a runner
 * of the CLI that keeps stdout and stderr apart and can be sent signals.
 * @module
 */
import { IrisClient } from "../../mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { pumpLines, spawnIris } from "../_helpers/iris_process.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

/** A running controller + worker; disposing stops both and removes the worker's root. */
export interface TestCluster extends AsyncDisposable {
  readonly url: string;
  readonly client: IrisClient;
}

/** Starts `iris controller serve` and `iris worker serve` (4 cpu, 4 GiB). */
export async function startCluster(): Promise<TestCluster> {
  const root = await Deno.makeTempDir({ prefix: "iris-cli-" });
  const controller = spawnIris(["controller", "serve", "--port", "0"]);
  try {
    const url = (await controller.waitForLine(/Controller started at (\S+)/))[1]!;
    const worker = spawnIris([
      "worker",
      "serve",
      "--controller",
      url,
      "--root-dir",
      root,
      "--cpu",
      "4",
      "--memory",
      "4GiB",
    ]);
    const client = new IrisClient(url);
    try {
      await waitFor(async () => (await client.workers()).length === 1, {
        timeout: seconds(30),
        what: "the worker to register",
      });
    } catch (err) {
      await worker.stop();
      throw err;
    }
    return {
      url,
      client,
      [Symbol.asyncDispose]: async () => {
        await worker.stop();
        await controller.stop();
        await Deno.remove(root, { recursive: true }).catch(() => {});
      },
    };
  } catch (err) {
    await controller.stop();
    await Deno.remove(root, { recursive: true }).catch(() => {});
    throw err;
  }
}

/** A CLI process whose stdout and stderr lines are kept apart. */
export interface CliProcess extends AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  /** Waits for a stderr (default) or stdout line matching `re`. */
  waitFor(re: RegExp, stream?: "stdout" | "stderr"): Promise<RegExpMatchArray>;
  /** Exit code after all output is read. */
  readonly code: Promise<number>;
}

/** Starts `iris <args>` with separate stdout/stderr. */
export function cli(
  args: readonly string[],
  options: { env?: Record<string, string>; cwd?: string; stdin?: string; clearEnv?: boolean } = {},
): CliProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: options.stdin === undefined ? "null" : "piped",
    cwd: options.cwd,
    clearEnv: options.clearEnv,
    env: {
      RUST_BACKTRACE: "0",
      NO_COLOR: "1",
      ...(options.clearEnv
        ? { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: Deno.env.get("HOME") ?? "/" }
        : {}),
      ...options.env,
    },
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    w.write(new TextEncoder().encode(options.stdin)).then(() => w.close()).catch(() => {});
  }
  const stdout: string[] = [];
  const stderr: string[] = [];
  const pumps = Promise.all([pumpLines(child.stdout, stdout), pumpLines(child.stderr, stderr)]);
  let exited = false;
  const code = child.status.then(async (s) => (await pumps, exited = true, s.code));
  return {
    child,
    stdout,
    stderr,
    code,
    waitFor: (re, stream = "stderr") =>
      waitFor(() => {
        for (const l of stream === "stdout" ? stdout : stderr) {
          const m = l.match(re);
          if (m) return m;
        }
        if (exited) {
          throw new Error(
            `iris ${args.join(" ")} exited before printing ${re} on ${stream}:\n` +
              `stdout:\n${stdout.join("\n")}\nstderr:\n${stderr.join("\n")}`,
          );
        }
        return undefined;
      }, { timeout: seconds(30), what: `${re} from iris ${args.join(" ")}` }),
    [Symbol.asyncDispose]: async () => {
      if (!exited) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }
      await code;
    },
  };
}
