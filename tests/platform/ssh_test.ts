/**
 * The ssh command builder: exact argv for raw ssh and gcloud ssh (exec, follow, tunnel), remote
 * quoting proven by running the remote command through a real shell, checkSsh and openTunnel.
 * @module
 */
import assert from "node:assert/strict";
import { PlatformError, PlatformUnavailableError } from "../../src/errors.ts";
import { DenoCommandRunner } from "../../src/command/command.ts";
import {
  checkSsh,
  openTunnel,
  type RawSshTarget,
  remoteBash,
  sshExec,
  sshFollow,
  sshScript,
  sshTunnel,
  type TpuSshTarget,
} from "../../src/platform/ssh.ts";
import { ms, seconds } from "../../src/time.ts";
import { ScriptedRunner } from "../fakes/scripted_runner.ts";

const raw: RawSshTarget = {
  kind: "ssh",
  host: "10.0.0.5",
  user: "iris",
  keyFile: "/keys/id",
  port: 2222,
};
const tpu: TpuSshTarget = {
  kind: "tpu",
  name: "iris-tpu-1",
  zone: "us-central2-b",
  project: "proj",
  worker: 1,
};
const SSH_OPTS = [
  "-o",
  "BatchMode=yes",
  "-o",
  "StrictHostKeyChecking=accept-new",
  "-o",
  "ConnectTimeout=30",
  "-o",
  "ServerAliveInterval=15",
  "-o",
  "ServerAliveCountMax=3",
];

Deno.test("sshExec() builds raw ssh with batch mode, port, key and a bash -c remote command", () => {
  assert.deepEqual(sshExec(raw, "echo hi").argv, [
    "ssh",
    ...SSH_OPTS,
    "-p",
    "2222",
    "-i",
    "/keys/id",
    "iris@10.0.0.5",
    "bash -c 'echo hi'",
  ]);
  const minimal = sshExec({ kind: "ssh", host: "h", connectTimeout: ms(2500) }, "true");
  assert.deepEqual(minimal.argv.slice(-4), ["-p", "22", "h", "bash -c true"]);
  assert.ok(minimal.argv.includes("ConnectTimeout=3"));
});

Deno.test("knownHostsFile: only that file's keys are accepted (StrictHostKeyChecking=yes)", () => {
  const argv = sshExec({ ...raw, knownHostsFile: "/lab/known_hosts" }, "true").argv;
  assert.ok(argv.includes("StrictHostKeyChecking=yes"), argv.join(" "));
  assert.ok(!argv.includes("StrictHostKeyChecking=accept-new"), argv.join(" "));
  assert.ok(argv.includes("UserKnownHostsFile=/lab/known_hosts"), argv.join(" "));
  for (const cmd of [sshFollow(raw, "true"), sshTunnel(raw, 1, 2), sshScript(raw, "true")]) {
    assert.ok(cmd.argv.includes("StrictHostKeyChecking=accept-new"), "unset: trust on first use");
    assert.ok(!cmd.argv.some((w) => w.startsWith("UserKnownHostsFile=")));
  }
});

Deno.test("sshExec() builds gcloud tpu-vm ssh with --worker and --command", () => {
  assert.deepEqual(sshExec(tpu, "uptime").argv, [
    "gcloud",
    "compute",
    "tpus",
    "tpu-vm",
    "ssh",
    "iris-tpu-1",
    "--worker=1",
    "--zone=us-central2-b",
    "--project=proj",
    "--quiet",
    "--command=bash -c uptime",
    "--",
    "-o",
    "BatchMode=yes",
  ]);
  const gce = sshExec({ kind: "gce", name: "ctl", zone: "z", project: "p" }, "true", {
    stdin: "data",
  });
  assert.deepEqual(gce.argv.slice(0, 4), ["gcloud", "compute", "ssh", "ctl"]);
  assert.equal(gce.stdin, "data");
});

Deno.test("sshFollow() adds keep-alives for gcloud and keeps the remote command", () => {
  const cmd = sshFollow(tpu, "tail -F /var/log/x");
  assert.ok(cmd.argv.includes("--command=bash -c 'tail -F /var/log/x'"));
  assert.deepEqual(cmd.argv.slice(-4), [
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=3",
  ]);
});

Deno.test("sshTunnel() forwards local:localhost:remote with -N for raw ssh and gcloud", () => {
  assert.deepEqual(sshTunnel(raw, 18080, 10000).argv, [
    "ssh",
    ...SSH_OPTS,
    "-p",
    "2222",
    "-i",
    "/keys/id",
    "-L",
    "18080:localhost:10000",
    "-N",
    "-o",
    "ExitOnForwardFailure=yes",
    "iris@10.0.0.5",
  ]);
  const g = sshTunnel({ kind: "gce", name: "ctl", zone: "z", project: "p" }, 1, 2).argv;
  assert.deepEqual(g.slice(g.indexOf("--"), g.indexOf("--") + 4), [
    "--",
    "-L",
    "1:localhost:2",
    "-N",
  ]);
});

Deno.test("the remote command survives the remote shell: quotes, variables and newlines", async () => {
  const script = `x='it'"'"'s'; echo "$x"\necho '$HOME stays literal' "$((1 + 2))"`;
  const remote = sshExec(raw, script).argv.at(-1)!;
  assert.equal(remote, remoteBash(script));
  // sshd hands the joined command to the login shell: `$SHELL -c <command>`.
  const r = await new DenoCommandRunner().run({ argv: ["sh", "-c", remote] }, {
    timeout: seconds(10),
  });
  assert.equal(r.stdout, "it's\n$HOME stays literal 3\n");
  const viaGcloud = sshExec(tpu, script).argv.find((a) => a.startsWith("--command="))!.slice(
    "--command=".length,
  );
  assert.equal(viaGcloud, remote);
});

Deno.test("checkSsh() maps timeouts and exit 255 to PlatformUnavailableError", () => {
  const base = {
    stdout: "",
    stderr: "ssh: connect to host h port 22: Connection refused\n",
    timedOut: false,
  };
  assert.throws(() => checkSsh({ ...base, code: 255 }, raw, "bootstrap"), PlatformUnavailableError);
  assert.throws(
    () => checkSsh({ ...base, code: 143, timedOut: true }, raw, "bootstrap"),
    PlatformUnavailableError,
  );
  assert.throws(() => checkSsh({ ...base, code: 1 }, raw, "bootstrap"), (e) => {
    return e instanceof PlatformError && !(e instanceof PlatformUnavailableError) &&
      /bootstrap on iris@10.0.0.5:2222: exit code 1/.test(e.message);
  });
});

Deno.test("openTunnel() fails fast with ssh's stderr when the tunnel exits", async () => {
  const runner = new ScriptedRunner().on(["ssh"], {
    code: 255,
    stderr: "bind: Address already in use\n",
  });
  await assert.rejects(
    openTunnel({
      runner,
      command: sshTunnel(raw, 18080, 10000),
      localPort: 18080,
      isReady: () => Promise.resolve(false),
    }),
    (e) => e instanceof PlatformError && /Address already in use/.test(e.message),
  );
  assert.equal(runner.activeStreams, 0);
});

Deno.test("openTunnel() gives up after its timeout and kills the tunnel", async () => {
  const runner = new ScriptedRunner().on(["ssh"], { hang: true });
  await assert.rejects(
    openTunnel({
      runner,
      command: sshTunnel(raw, 18080, 10000),
      localPort: 18080,
      isReady: () => Promise.resolve(false),
      timeout: ms(100),
    }),
    PlatformError,
  );
  assert.equal(runner.activeStreams, 0);
});

Deno.test("sshScript() sends the script on stdin and runs it only once fully read", async () => {
  const script = 'set -e\nread -r line || true\necho "read: ${line:-nothing}"\necho done\n';
  const cmd = sshScript(raw, script);
  assert.equal(cmd.stdin, script);
  assert.deepEqual(cmd.argv.slice(-2), [
    "iris@10.0.0.5",
    `s=$(mktemp) && cat > "$s" && bash "$s"; rc=$?; rm -f "$s"; exit $rc`,
  ]);
  // What sshd does with it: the login shell runs the remote command with the script on stdin.
  const r = await new DenoCommandRunner().run({
    argv: ["sh", "-c", cmd.argv.at(-1)!],
    stdin: script,
  }, {
    timeout: seconds(10),
  });
  assert.equal(r.stdout, "read: nothing\ndone\n");
  const gcloud = sshScript(tpu, "true").argv;
  assert.ok(gcloud.some((a) => a.startsWith("--command=s=$(mktemp)")));
});

Deno.test("sshScript() with a secret file: saved 0600 from stdin before the script runs, never in argv", async () => {
  const home = await Deno.makeTempDir({ prefix: "iris_secret_" });
  try {
    const secret = "s3cret-token-value";
    const script =
      `echo "ran: $(cat "$IRIS_HOME/sub/worker.token")"\nread -r rest || true\necho "left: \${rest:-nothing}"\n`;
    const cmd = sshScript(raw, script, {
      secretFile: { path: `"$IRIS_HOME/sub/worker.token"`, content: secret },
    });
    assert.equal(cmd.secretStdin, `${secret}\n`);
    assert.equal(cmd.stdin, script);
    assert.ok(!cmd.argv.join(" ").includes(secret), "the secret is not in the argv");
    // The login shell (sh, like dash) runs the remote command with secret + script on stdin.
    const r = await new DenoCommandRunner().run({
      argv: ["sh", "-c", cmd.argv.at(-1)!],
      secretStdin: cmd.secretStdin,
      stdin: cmd.stdin,
      env: { IRIS_HOME: home },
    }, { timeout: seconds(10) });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `ran: ${secret}\nleft: nothing\n`);
    const info = await Deno.stat(`${home}/sub/worker.token`);
    assert.equal(info.mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(`${home}/sub`)).mode! & 0o077, 0, "a new directory is private");
    assert.deepEqual(
      (await Array.fromAsync(Deno.readDir(`${home}/sub`))).map((e) => e.name),
      ["worker.token"],
      "no temp file left",
    );
  } finally {
    await Deno.remove(home, { recursive: true });
  }
  assert.throws(
    () => sshScript(raw, "true", { secretFile: { path: "/x", content: "a\nb" } }),
    /secretFile\.content/,
  );
});
