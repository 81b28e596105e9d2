/**
 * Cluster log streaming: one follower process per discovered target (controller, workers)
 * writing `<outputDir>/<name>.log`, plus fileLogSink, the single-writer file used for it and for
 * in-process (local) logs. Which commands follow which logs is the platforms' business.
 * @module
 */
import { FailedPreconditionError } from "../errors.ts";
import { type Duration, sleep } from "../time.ts";
import { type Command, type CommandRunner, lastLines } from "../command/mod.ts";

/** Something whose log can be followed: a name (the file stem) and the follow command. */
export interface LogTarget {
  readonly name: string;
  /** A long-running command, e.g. `sshFollow(target, "tail -F …")`. */
  readonly command: Command;
}

/**
 * A log followed in-process rather than by a command (kubernetes: the API server's
 * `GET …/pods/NAME/log?follow=true`): `follow` calls `onLine` per line until the log ends or
 * `signal` aborts.
 */
export interface FollowedLogTarget {
  readonly name: string;
  readonly follow: (onLine: (line: string) => void, signal: AbortSignal) => Promise<void>;
}

/** A file with exactly one writer; lines are appended in order. */
export interface FileLogSink extends AsyncDisposable {
  readonly path: string;
  /** Queues one line (a newline is added when missing). Ignored after close. */
  write(line: string): void;
  /** Flushes queued lines and closes the file. Idempotent. */
  close(): Promise<void>;
}

const openSinks = new Set<string>();

/**
 * Opens `path` for appending as its only writer (a second sink on the same path throws until
 * the first is closed). Writes are batched and never block the caller.
 * @throws {FailedPreconditionError} the path already has an open sink
 */
export function fileLogSink(path: string): FileLogSink {
  if (openSinks.has(path)) {
    throw new FailedPreconditionError(`Cannot open log file ${path} as it already has a writer`);
  }
  const file = Deno.openSync(path, { append: true, create: true, write: true });
  openSinks.add(path);
  const encoder = new TextEncoder();
  let buffer: string[] = [];
  let scheduled = false;
  let pending: Promise<void> = Promise.resolve();
  let closing: Promise<void> | undefined;
  const flush = async () => {
    scheduled = false;
    const bytes = encoder.encode(buffer.join(""));
    buffer = [];
    for (let off = 0; off < bytes.length;) off += await file.write(bytes.subarray(off));
  };
  const close = () =>
    closing ??= (async () => {
      await pending;
      if (buffer.length) await flush().catch(() => {});
      file.close();
      openSinks.delete(path);
    })();
  return {
    path,
    write(line: string) {
      if (closing) return;
      buffer.push(line.endsWith("\n") ? line : `${line}\n`);
      if (scheduled) return;
      scheduled = true;
      pending = pending.then(flush).catch(() => {});
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Options of {@linkcode startLogStreaming}. */
export interface LogStreamOptions {
  readonly runner: CommandRunner;
  /** Discovery: the targets that exist now (called at start and every `discoveryInterval`). */
  readonly targets: (signal: AbortSignal) => Promise<readonly (LogTarget | FollowedLogTarget)[]>;
  /** Created when missing. */
  readonly outputDir: string;
  readonly discoveryInterval: Duration;
  /** Aborting stops streaming like `stop()` does. */
  readonly signal?: AbortSignal;
  /** Discovery or follower failures (streaming goes on). */
  readonly onError?: (err: unknown) => void;
  /** Called once for each newly discovered target name. */
  readonly onTarget?: (name: string) => void;
}

/** A running log stream. */
export interface LogStreamHandle extends AsyncDisposable {
  /** Stops discovery, kills every follower and waits for each to exit. Idempotent. */
  stop(): Promise<void>;
  /** Names of all targets discovered so far, in discovery order. */
  discovered(): string[];
}

/** `<name>` made safe as a file name. */
export function logFileName(name: string): string {
  return `${name.replace(/[^A-Za-z0-9._-]/g, "_")}.log`;
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  promise.catch(() => {});
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * Streams the logs of every target `targets()` reports into `<outputDir>/<name>.log`: one
 * follower process (runner.stream) and one file writer per target. New targets are picked up
 * every `discoveryInterval`; a follower that exits (e.g. a dropped ssh) is restarted on the next
 * discovery and appends to the same file.
 */
export function startLogStreaming(opts: LogStreamOptions): LogStreamHandle {
  Deno.mkdirSync(opts.outputDir, { recursive: true });
  const dir = opts.outputDir.replace(/\/+$/, "");
  const abort = new AbortController();
  const followers = new Map<string, Promise<void>>();
  const names: string[] = [];
  const onError = (err: unknown) => {
    try {
      opts.onError?.(err);
    } catch {
      // A failing error callback must not stop streaming.
    }
  };

  const follow = (target: LogTarget | FollowedLogTarget) => {
    const run = async () => {
      await using sink = fileLogSink(`${dir}/${logFileName(target.name)}`);
      if ("follow" in target) {
        await target.follow((line) => sink.write(line), abort.signal);
        if (!abort.signal.aborted) sink.write("[iris] log follower ended");
        return;
      }
      const { done } = opts.runner.stream(target.command, {
        signal: abort.signal,
        onLine: (line) => sink.write(line),
      });
      const result = await done;
      if (!abort.signal.aborted) {
        sink.write(
          `[iris] log follower exited with code ${result.code}: ${lastLines(result.stderr, 3)}`,
        );
      }
    };
    const promise = run().catch(onError).finally(() => followers.delete(target.name));
    followers.set(target.name, promise);
  };

  const discovery = (async () => {
    while (!abort.signal.aborted) {
      try {
        const targets = await untilAborted(opts.targets(abort.signal), abort.signal);
        for (const target of targets) {
          if (abort.signal.aborted) break;
          if (!names.includes(target.name)) {
            names.push(target.name);
            try {
              opts.onTarget?.(target.name);
            } catch {
              // A failing callback must not stop streaming.
            }
          }
          if (!followers.has(target.name)) follow(target);
        }
      } catch (err) {
        if (!abort.signal.aborted) onError(err);
      }
      await sleep(opts.discoveryInterval, abort.signal).catch(() => {});
    }
  })();

  let stopping: Promise<void> | undefined;
  const onOuterAbort = () => void stop();
  const stop = () =>
    stopping ??= (async () => {
      opts.signal?.removeEventListener("abort", onOuterAbort);
      abort.abort(new DOMException("log streaming stopped", "AbortError"));
      await discovery;
      while (followers.size > 0) await Promise.all([...followers.values()]);
    })();
  if (opts.signal?.aborted) void stop();
  else opts.signal?.addEventListener("abort", onOuterAbort, { once: true });

  return { stop, discovered: () => [...names], [Symbol.asyncDispose]: stop };
}

/** Stops a handle when there is one (local mode has none). */
export async function stopLogStreaming(handle: LogStreamHandle | null | undefined): Promise<void> {
  if (handle) await handle.stop();
}
