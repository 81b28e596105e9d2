/**
 * The one ssh command builder: one-shot commands, log following and tunnels, for raw `ssh`
 * (manual hosts) and `gcloud compute [tpus tpu-vm] ssh` (GCP). Builders are pure; openTunnel is
 * the single helper that runs one (through a CommandRunner).
 * @module
 */
import { InvalidArgumentError, PlatformError, PlatformUnavailableError } from "../errors.ts";
import { type Duration, seconds, waitFor } from "../time.ts";
import {
  type Command,
  type CommandResult,
  type CommandRunner,
  lastLines,
  shellQuote,
} from "../command/mod.ts";

export { shellQuote };

/** A host reached with plain `ssh` (manual platform). */
export interface RawSshTarget {
  readonly kind: "ssh";
  readonly host: string;
  /** @default the local user */
  readonly user?: string;
  readonly keyFile?: string;
  /** @default 22 */
  readonly port?: number;
  /** @default 30s */
  readonly connectTimeout?: Duration;
  /**
   * The only host keys accepted (`UserKnownHostsFile=…`, `StrictHostKeyChecking=yes`): an
   * unknown or changed key fails the connection. When unset, ssh's own known_hosts files are
   * used and a host seen for the first time is trusted and remembered (`accept-new`); a changed
   * key still fails.
   */
  readonly knownHostsFile?: string;
}

/** A GCE VM reached with `gcloud compute ssh` (the GCP controller). */
export interface GceSshTarget {
  readonly kind: "gce";
  readonly name: string;
  readonly zone: string;
  readonly project: string;
}

/** One worker of a TPU slice reached with `gcloud compute tpus tpu-vm ssh --worker=i`. */
export interface TpuSshTarget {
  readonly kind: "tpu";
  readonly name: string;
  readonly zone: string;
  readonly project: string;
  /** Worker index, or "all" to run on every host of the slice. */
  readonly worker: number | "all";
}

/** Where an ssh command goes. */
export type SshTarget = RawSshTarget | GceSshTarget | TpuSshTarget;

/** Keep-alive: a dead connection is noticed within about 45 s. */
const KEEPALIVE = ["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3"] as const;

/** A one-line description of a target for messages ("ubuntu@10.0.0.5", "tpu my-slice/w1"). */
export function describeTarget(target: SshTarget): string {
  switch (target.kind) {
    case "ssh":
      return `${target.user ? `${target.user}@` : ""}${target.host}${
        target.port && target.port !== 22 ? `:${target.port}` : ""
      }`;
    case "gce":
      return `vm ${target.name} (${target.zone})`;
    case "tpu":
      return `tpu ${target.name}/w${target.worker} (${target.zone})`;
  }
}

/** The remote command that runs `script` with bash, quoted once for the remote shell. */
export function remoteBash(script: string): string {
  return `bash -c ${shellQuote(script)}`;
}

function rawSshArgv(target: RawSshTarget, extra: readonly string[]): string[] {
  const timeoutSeconds = Math.max(1, Math.ceil((target.connectTimeout ?? seconds(30)) / 1000));
  const argv = [
    "ssh",
    "-o",
    "BatchMode=yes",
    "-o",
    target.knownHostsFile ? "StrictHostKeyChecking=yes" : "StrictHostKeyChecking=accept-new",
    "-o",
    `ConnectTimeout=${timeoutSeconds}`,
    ...KEEPALIVE,
    "-p",
    String(target.port || 22),
  ];
  if (target.knownHostsFile) argv.push("-o", `UserKnownHostsFile=${target.knownHostsFile}`);
  if (target.keyFile) argv.push("-i", target.keyFile);
  argv.push(...extra, target.user ? `${target.user}@${target.host}` : target.host);
  return argv;
}

function gcloudSshPrefix(target: GceSshTarget | TpuSshTarget): string[] {
  const base = target.kind === "tpu"
    ? ["gcloud", "compute", "tpus", "tpu-vm", "ssh", target.name, `--worker=${target.worker}`]
    : ["gcloud", "compute", "ssh", target.name];
  return [...base, `--zone=${target.zone}`, `--project=${target.project}`, "--quiet"];
}

/**
 * Throws for a failed ssh command: timeouts and connection failures (ssh exits 255) are
 * PlatformUnavailableError, other exit codes PlatformError with the last stderr lines.
 */
export function checkSsh(result: CommandResult, target: SshTarget, action: string): CommandResult {
  const where = describeTarget(target);
  if (result.timedOut) {
    throw new PlatformUnavailableError(`Cannot ${action} on ${where} as ssh timed out`);
  }
  if (result.code === 255) {
    throw new PlatformUnavailableError(
      `Cannot ${action} on ${where} as ssh failed to connect: ${lastLines(result.stderr)}`,
    );
  }
  if (result.code !== 0) {
    throw new PlatformError(
      `Cannot ${action} on ${where}: exit code ${result.code}: ${lastLines(result.stderr)}`,
    );
  }
  return result;
}

/** Options of {@linkcode sshExec}. */
export interface SshExecOptions {
  /** Text piped to the remote command's stdin (e.g. a bundle to unpack). */
  readonly stdin?: string;
}

/**
 * A one-shot remote command: `script` runs under `bash -c` on the target.
 * manual: `ssh -o BatchMode=yes … user@host 'bash -c …'`; gcp: `gcloud … ssh NAME --command=…`.
 */
export function sshExec(target: SshTarget, script: string, options: SshExecOptions = {}): Command {
  const remote = remoteBash(script);
  const argv = target.kind === "ssh"
    ? [...rawSshArgv(target, []), remote]
    : [...gcloudSshPrefix(target), `--command=${remote}`, "--", "-o", "BatchMode=yes"];
  return options.stdin === undefined ? { argv } : { argv, stdin: options.stdin };
}

/** Remote command that saves stdin to a temp file, then runs it with bash (stdin fully read first). */
const RUN_STDIN_SCRIPT = `s=$(mktemp) && cat > "$s" && bash "$s"; rc=$?; rm -f "$s"; exit $rc`;

/** A secret saved on the host before a script runs (see {@linkcode sshScript}). */
export interface RemoteSecretFile {
  /** Where it goes: raw shell text, expanded by the remote shell (`"${IRIS_HOME:-…}/x"`). */
  readonly path: string;
  /** One line (no newline, not empty), e.g. the worker token. */
  readonly content: string;
}

/**
 * Remote shell (POSIX sh) that reads one line of stdin into a file created with umask 077 (so
 * mode 0600, its directory 0700 if new) through a temp name, with builtins only (`read`,
 * `printf`): the secret never appears in an argv, a script file or a log. `read` takes exactly
 * one line from the pipe, so the script that follows on stdin is left for `cat`.
 */
function saveSecretLine(path: string): string {
  return `(umask 077 && mkdir -p "$(dirname ${path})" && IFS= read -r iris_secret && ` +
    `printf '%s\\n' "$iris_secret" > ${path}.tmp && mv -f ${path}.tmp ${path})`;
}

/** Options of {@linkcode sshScript}. */
export interface SshScriptOptions {
  /** Saved on the host (0600) before the script runs; sent as the first line of stdin. */
  readonly secretFile?: RemoteSecretFile;
}

/**
 * A one-shot remote script sent through stdin rather than argv: for long generated scripts
 * (bootstrap, teardown), which then never meet argv quoting or length limits, and whose
 * commands cannot swallow the rest of the script by reading stdin. With `secretFile`, the
 * secret goes first on stdin (`Command.secretStdin`, redacted in transcripts) and is written to
 * its file before the script runs.
 */
export function sshScript(
  target: SshTarget,
  script: string,
  options: SshScriptOptions = {},
): Command {
  const secret = options.secretFile;
  if (secret && (secret.content === "" || /[\r\n\0]/.test(secret.content))) {
    throw new InvalidArgumentError(
      "secretFile.content",
      "Cannot send a secret that is empty or spans lines",
    );
  }
  const remote = secret
    ? `${saveSecretLine(secret.path)} && { ${RUN_STDIN_SCRIPT}; }`
    : RUN_STDIN_SCRIPT;
  const argv = target.kind === "ssh"
    ? [...rawSshArgv(target, []), remote]
    : [...gcloudSshPrefix(target), `--command=${remote}`, "--", "-o", "BatchMode=yes"];
  return secret
    ? { argv, secretStdin: secret.content + "\n", stdin: script }
    : { argv, stdin: script };
}

/**
 * A long-running remote command whose output is followed (e.g. `tail -F` of a log), for
 * {@linkcode CommandRunner.stream}. Keep-alives end it when the connection dies; the remote
 * follower gets SIGHUP from its pty once the local ssh is killed.
 */
export function sshFollow(target: SshTarget, script: string): Command {
  const remote = remoteBash(script);
  // -tt: a remote pty, so sshd hangs the follower up when the connection closes; without it a
  // `tail -F` of a quiet log would outlive the local ssh on the host.
  const argv = target.kind === "ssh" ? [...rawSshArgv(target, ["-tt"]), remote] : [
    ...gcloudSshPrefix(target),
    `--command=${remote}`,
    "--",
    "-tt",
    "-o",
    "BatchMode=yes",
    ...KEEPALIVE,
  ];
  return { argv };
}

/**
 * Port forwarding `localhost:localPort` → `localhost:remotePort` on the target (`-L … -N`).
 * Fails fast when the local port is taken (ExitOnForwardFailure).
 */
export function sshTunnel(target: SshTarget, localPort: number, remotePort: number): Command {
  const forward = [
    "-L",
    `${localPort}:localhost:${remotePort}`,
    "-N",
    "-o",
    "ExitOnForwardFailure=yes",
  ];
  const argv = target.kind === "ssh"
    ? rawSshArgv(target, forward)
    : [...gcloudSshPrefix(target), "--", ...forward, "-o", "BatchMode=yes", ...KEEPALIVE];
  return { argv };
}

/**
 * Answers whether the service at `url` is up (e.g. a controller health RPC). Injected by the
 * caller so this layer does not import the controller or worker.
 */
export type HealthCheck = (url: string, signal: AbortSignal) => Promise<boolean>;

/** One health check bounded by `timeout` (default 5 s); errors and timeouts answer false. */
export async function checkOnce(
  url: string,
  check: HealthCheck,
  timeout: Duration = seconds(5),
): Promise<boolean> {
  const abort = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<boolean>((r) => timer = setTimeout(() => r(false), timeout));
  try {
    return await Promise.race([check(url, abort.signal).catch(() => false), expired]);
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

/** Options of {@linkcode waitHealthy}. */
export interface WaitHealthyOptions {
  readonly timeout: Duration;
  /** Limit of one check. @default 5s */
  readonly checkTimeout?: Duration;
  readonly signal?: AbortSignal;
  /** Fails the wait at once (e.g. the tunnel process exited). */
  readonly failIf?: () => Error | undefined;
}

/**
 * Polls `check(url)` (each call bounded by `checkTimeout`, failures count as "not yet") until
 * it answers true. @throws {PlatformError} naming the url when `timeout` passes.
 */
export async function waitHealthy(
  url: string,
  check: HealthCheck,
  opts: WaitHealthyOptions,
): Promise<void> {
  try {
    await waitFor(async () => {
      const failure = opts.failIf?.();
      if (failure) throw failure;
      return await checkOnce(url, check, opts.checkTimeout);
    }, { timeout: opts.timeout, what: `${url} to answer`, signal: opts.signal });
  } catch (err) {
    if (err instanceof PlatformError) throw err;
    throw new PlatformError(
      `Cannot reach ${url}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}

/** An open tunnel; `close()` kills the ssh process and waits for it. */
export interface Tunnel extends AsyncDisposable {
  /** `http://localhost:<localPort>` */
  readonly url: string;
  close(): Promise<void>;
}

/** Options of {@linkcode openTunnel}. */
export interface OpenTunnelOptions {
  readonly runner: CommandRunner;
  readonly command: Command;
  readonly localPort: number;
  /** True once the service answers through the tunnel (e.g. a controller health RPC). */
  readonly isReady: HealthCheck;
  /** @default 60s */
  readonly timeout?: Duration;
}

/**
 * Runs a tunnel command (from {@linkcode sshTunnel}) and resolves once `isReady` says the far
 * end answers. If the tunnel exits or never gets ready, the process is killed and awaited and
 * a PlatformError carries its last stderr lines.
 */
export async function openTunnel(opts: OpenTunnelOptions): Promise<Tunnel> {
  const url = `http://localhost:${opts.localPort}`;
  const abort = new AbortController();
  const stderr: string[] = [];
  const handle = opts.runner.stream(opts.command, {
    signal: abort.signal,
    onLine: (line, s) => {
      if (s === "stderr") stderr.push(line);
    },
  });
  let exit: CommandResult | undefined;
  const done = handle.done.then((r) => exit = r);
  const close = async () => {
    abort.abort(new DOMException("tunnel closed", "AbortError"));
    await done;
  };
  try {
    await waitHealthy(url, opts.isReady, {
      timeout: opts.timeout ?? seconds(60),
      failIf: () =>
        exit &&
        new PlatformError(
          `Cannot open tunnel ${url} as ssh exited with code ${exit.code}: ${
            lastLines(exit.stderr)
          }`,
        ),
    });
  } catch (err) {
    await close();
    const detail = lastLines(stderr.join("\n"));
    throw detail && !(err instanceof Error && err.message.includes(detail))
      ? new PlatformError(`${err instanceof Error ? err.message : String(err)}: ${detail}`, {
        cause: err,
      })
      : err;
  }
  return { url, close, [Symbol.asyncDispose]: close };
}
