/**
 * Every file in examples/ is loaded and started the way its platform starts it, and its
 * controller answers GetControllerStatus. New files are covered automatically; a file this test
 * does not know how to start fails it.
 * - `*.yaml` local: `iris controller serve --config FILE` (loopback, a free port).
 * - `*.yaml` gcp / manual: the controller lifecycle of the config runs against a stand-in (a
 *   scripted `gcloud` that records the controller VM's startup script, or a scripted `ssh` that
 *   records the script sent to the controller host); the recorded script then runs on this
 *   machine as the host would run it: bash, `PATH=/usr/bin:/bin` plus, for gcp, an image with
 *   `deno` and a `gcloud` stand-in on PATH; `$IRIS_HOME` a temp dir holding a link to this
 *   checkout (and standing for the host's /var/lib/iris); the config's port moved to a free one
 *   and its placeholder `deno_path` pointed at this test's Deno. Then the daemon's own teardown
 *   script stops it.
 * - `*.yaml` kubernetes: the config's controller lifecycle runs against the API server stand-in
 *   (tests/fakes/kube_api.ts); when it creates the controller Deployment, a kubelet stand-in runs
 *   the Deployment's container here as the Pod would: its command and args with `deno` this
 *   test's Deno, the image's /app this checkout, the ConfigMap mounted as a file, a free port,
 *   and a kubeconfig for the stand-in (the in-cluster account); once the controller answers it
 *   marks the Deployment available, which `start()` waits for. The test then reaches it the way
 *   an operator does, through the API server's service proxy (connectController).
 * - `*.ts`: `deno run -A FILE`, which prints the URL of the cluster it runs.
 * - a directory: a workspace; some README command must ship it (`-w examples/DIR`), which
 *   tests/e2e/readme_test.ts runs.
 * @module
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { configMode } from "../../src/config/mod.ts";
import { createControllerLifecycle } from "../../src/cluster/lifecycle.ts";
import { controllerClient } from "../../src/rpc/client.ts";
import { teardownScript } from "../../src/platform/bootstrap.ts";
import { DenoCommandRunner } from "../../src/command/command.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { ScriptedRunner } from "../fakes/scripted_runner.ts";
import { KubeApiStandIn } from "../fakes/kube_api.ts";
import { KubeClient, parseKubeconfig } from "../../src/kube/kube_client.ts";
import { CONFIG_MOUNT, IMAGE_IRIS_DIR } from "../../src/platform/kubernetes.ts";
import { connectController } from "../../src/cluster/manager.ts";
import { spawnIris } from "../_helpers/iris_process.ts";
import { pumpLines } from "../_helpers/iris_process.ts";
import { README, readmeBlocks, shCommands } from "./_readme.ts";

const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const EXAMPLES = `${REPO}/examples`;

const entries = [...Deno.readDirSync(EXAMPLES)].sort((a, b) => a.name.localeCompare(b.name));

/** A port nobody listens on right now. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Waits until the controller at `url` answers GetControllerStatus and returns the answer; fails
 * at once when `dead()` says its process is gone, with `why()` (its log) in the message.
 */
async function controllerAnswers(
  url: string,
  why: () => Promise<string> | string,
  dead: () => Promise<boolean> | boolean = () => false,
) {
  const rpc = controllerClient(url);
  try {
    return await waitFor(async () => {
      if (await dead()) throw new Error(`the controller for ${url} exited`);
      try {
        return await rpc.getControllerStatus({}, { signal: AbortSignal.timeout(2000) });
      } catch {
        return undefined;
      }
    }, { timeout: seconds(90), what: `GetControllerStatus at ${url}` });
  } catch (err) {
    throw new Error(`${err}\n${await why()}`);
  }
}

/** Starts a local example with `iris controller serve --config FILE`. */
async function startLocal(file: string): Promise<void> {
  await using iris = spawnIris(["controller", "serve", "--config", file, "--host", "127.0.0.1"], {
    env: { IRIS_HOME: await Deno.makeTempDir({ prefix: "iris-example-home-" }) },
  });
  const [, url] = await iris.waitForLine(/Controller started at (http:\S+)/, seconds(90));
  const status = await controllerAnswers(url!, () => iris.lines.join("\n"));
  assert(status.healthy, JSON.stringify(status));
}

/**
 * The script the config's controller lifecycle sends to its host: `start()` runs against a
 * scripted gcloud/ssh that records the script and then fails, ending start() there.
 */
async function controllerHostScript(file: string, configText: string): Promise<string> {
  const config = await loadConfig(file);
  const runner = new ScriptedRunner()
    .on(["gcloud", "compute", "instances", "list"], { stdout: "[]" })
    .on(["gcloud", "compute", "instances", "create"], { code: 1, stderr: "stand-in: stop here" })
    .on(["ssh"], { code: 255, stderr: "stand-in: stop here" });
  const lifecycle = createControllerLifecycle(config, {
    runner,
    configText,
  });
  await lifecycle.start().then(
    () => {
      throw new Error("start() succeeded against a stand-in that fails");
    },
    (err) => assertMatch(String(err), /stand-in: stop here/),
  );
  const sent = runner.calls.map((c) => c.cmd.stdin ?? "").filter((s) =>
    s.includes("controller serve")
  );
  assertEquals(sent.length, 1, runner.transcript());
  return sent[0]!;
}

/** A `gcloud` for the controller VM: no TPU slices yet; anything else fails loudly. */
const VM_GCLOUD = `#!/bin/sh
case "$*" in
  "compute tpus tpu-vm list"*) echo '[]' ;;
  *) echo "gcloud stand-in: unexpected call: $*" >&2; exit 1 ;;
esac
`;

/** Runs the recorded startup script of a gcp or manual example on this machine as its host. */
async function startRemote(file: string): Promise<void> {
  const config = await loadConfig(file);
  const mode = configMode(config);
  const controller = config.controller!.kind;
  const port = (controller.case === "gcp" || controller.case === "manual") &&
      controller.value.port || 10000;
  const host = await Deno.makeTempDir({ prefix: "iris-example-host-" });
  const home = `${host}/iris-home`;
  // The host's /var/lib/iris (gcp's IRIS_HOME, the example's state_dir) is the temp home here.
  const configText = (await Deno.readTextFile(file)).replaceAll("/var/lib/iris", home);
  let script = await controllerHostScript(file, configText);
  await Deno.mkdir(`${host}/bin`, { recursive: true });
  await Deno.mkdir(home);
  await Deno.symlink(REPO, `${home}/iris`);
  const path = ["/usr/bin", "/bin"];
  if (mode === "gcp") {
    // The VM image: deno and gcloud on PATH.
    await Deno.symlink(Deno.execPath(), `${host}/bin/deno`);
    await Deno.writeTextFile(`${host}/bin/gcloud`, VM_GCLOUD, { mode: 0o755 });
    path.unshift(`${host}/bin`);
  }
  // The host as the example names it: its home, its port, its Deno.
  script = script.replace(/^IRIS_HOME=.*$/m, `IRIS_HOME='${home}'`)
    .replaceAll(new RegExp(`(--port '?)${port}\\b`, "g"), `$1__PORT__`)
    .replaceAll(new RegExp(`:${port}\\b`, "g"), ":__PORT__");
  const denoPath = config.defaults?.runtime?.denoPath;
  if (denoPath) script = script.replaceAll(denoPath, Deno.execPath());
  const free = freePort();
  script = script.replaceAll("__PORT__", String(free));
  const runner = new DenoCommandRunner();
  const bare = (text: string) =>
    runner.run({
      argv: ["env", "-i", `PATH=${path.join(":")}`, `HOME=${host}`, "bash", "-c", text],
    }, { timeout: seconds(60) });
  const log = () => Deno.readTextFile(`${home}/controller.log`).catch(() => "(no log)");
  try {
    const started = await bare(script);
    assertEquals(started.code, 0, `${started.stdout}${started.stderr}\n${await log()}`);
    const dead = async () => {
      const pid = (await Deno.readTextFile(`${home}/controller.pid`).catch(() => "")).trim();
      return pid === "" || !(await Deno.stat(`/proc/${pid}`).then(() => true, () => false));
    };
    const status = await controllerAnswers(`http://127.0.0.1:${free}`, log, dead);
    assert(status.healthy, JSON.stringify(status));
  } finally {
    const down = await bare(teardownScript("controller", { home }));
    await Deno.remove(host, { recursive: true }).catch(() => {});
    assertEquals(down.code, 0, down.stderr);
  }
}

interface Container {
  command: string[];
  args: string[];
  env?: { name: string; value?: string }[];
}

/**
 * Starts a kubernetes example: its lifecycle against the API stand-in, the controller
 * Deployment's container run here by a kubelet stand-in.
 */
async function startKubernetes(file: string): Promise<void> {
  const config = await loadConfig(file);
  const dir = await Deno.makeTempDir({ prefix: "iris-example-k8s-" });
  await using api = new KubeApiStandIn();
  await Deno.writeTextFile(`${dir}/kubeconfig`, api.kubeconfig());
  const creds = await parseKubeconfig(`${dir}/kubeconfig`, api.kubeconfig());
  const port = freePort();
  const lines: string[] = [];
  let child: Deno.ChildProcess | undefined;
  let done: Promise<unknown> | undefined;
  let kubelet: Promise<void> | undefined;
  api.onCreate = (kind, obj) => {
    if (kind !== "Deployment") return;
    kubelet = (async () => {
      const ns = obj.metadata!.namespace!;
      const spec = obj.spec as { template: { spec: { containers: Container[] } } };
      const c = spec.template.spec.containers[0]!;
      const cm = api.get(`/api/v1/namespaces/${ns}/configmaps/iris-cluster-config`)!;
      const data = cm.data as Record<string, string>;
      await Deno.mkdir(`${dir}/etc`);
      for (const [name, text] of Object.entries(data)) {
        await Deno.writeTextFile(`${dir}/etc/${name}`, text);
      }
      const argv = [...c.command, ...c.args].map((a) =>
        a.replace(`${CONFIG_MOUNT}/`, `${dir}/etc/`).replace(`${IMAGE_IRIS_DIR}/`, `${REPO}/`)
      );
      assertEquals(argv[0], "deno");
      const portAt = argv.indexOf("--port");
      argv[portAt + 1] = String(port);
      argv[argv.indexOf("--host") + 1] = "127.0.0.1";
      const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? ""]));
      child = new Deno.Command(Deno.execPath(), {
        args: argv.slice(1),
        cwd: dir,
        env: { ...env, IRIS_HOME: dir, KUBECONFIG: `${dir}/kubeconfig`, NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      done = Promise.all([
        child.status,
        pumpLines(child.stdout, lines),
        pumpLines(child.stderr, lines),
      ]);
      await controllerAnswers(`http://127.0.0.1:${port}`, () => lines.join("\n"));
      api.setStatus(`/apis/apps/v1/namespaces/${ns}/deployments/${obj.metadata!.name}`, {
        replicas: 1,
        readyReplicas: 1,
        availableReplicas: 1,
      });
    })();
  };
  const lifecycle = createControllerLifecycle(config, {
    configText: await Deno.readTextFile(file),
    kubeConnect: () => Promise.resolve(new KubeClient(creds)),
  });
  try {
    const url = await lifecycle.start();
    await kubelet;
    const k = config.platform!.kubernetes!;
    assertMatch(
      url,
      new RegExp(`^http://[a-z0-9-]+\\.${k.namespace}\\.svc\\.cluster\\.local:\\d+$`),
    );
    // From this machine (the operator's), through the API server's service proxy.
    api.setServiceBackend(k.namespace, "iris-controller-svc", `http://127.0.0.1:${port}`);
    {
      await using conn = await connectController(lifecycle, url);
      const status = await controllerAnswers(conn.url, () => lines.join("\n"));
      assert(status.healthy, JSON.stringify(status));
    }
    // The controller's own platform reached the API server (its autoscaler adopts worker Pods).
    await waitFor(
      () => api.transcript().includes(`GET /api/v1/namespaces/${k.namespace}/pods?labelSelector=`),
      { timeout: seconds(30), what: "the controller's first list of worker Pods" },
    ).catch((err) => {
      throw new Error(`${err}\n${api.transcript()}\n${lines.join("\n")}`);
    });
    await lifecycle.stop();
    assertEquals(api.paths(`/apis/apps/v1/namespaces/${k.namespace}/deployments`), []);
  } finally {
    await kubelet?.catch(() => {});
    try {
      child?.kill("SIGTERM");
    } catch { /* gone */ }
    await done;
    await lifecycle[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Runs a TypeScript example; it prints the URL of the cluster it runs until SIGINT. */
async function startModule(file: string): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", file],
    cwd: REPO,
    env: { NO_COLOR: "1", IRIS_HOME: await Deno.makeTempDir({ prefix: "iris-example-home-" }) },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const done = Promise.all([
    child.status,
    pumpLines(child.stdout, lines),
    pumpLines(child.stderr, lines),
  ]);
  try {
    const url = await waitFor(() => lines.join("\n").match(/(http:\/\/[\w.:\[\]]+)/)?.[1], {
      timeout: seconds(90),
      what: `${file} to print its URL`,
    }).catch((err) => {
      throw new Error(`${err}\n${lines.join("\n")}`);
    });
    const status = await controllerAnswers(url, () => lines.join("\n"));
    assert(status.healthy, JSON.stringify(status));
  } finally {
    try {
      child.kill("SIGINT");
    } catch { /* gone */ }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 20_000);
    const [status] = await done;
    clearTimeout(timer);
    assertEquals(status.code, 0, lines.join("\n"));
  }
}

for (const { name, isDirectory } of entries) {
  if (isDirectory) {
    Deno.test(`examples/${name}/ is a workspace a README command runs`, async () => {
      const blocks = readmeBlocks(await Deno.readTextFile(README));
      const used = blocks.filter((b) => b.mark === "run" && b.lang === "sh").flatMap(shCommands)
        .filter((c) => c.text.includes(`-w examples/${name} `));
      assert(
        used.length > 0,
        `examples/${name}/: no README command ships it (-w examples/${name}); tests/e2e/readme_test.ts runs those`,
      );
    });
    continue;
  }
  Deno.test(`examples/${name} loads and its controller starts and answers`, async () => {
    const file = `${EXAMPLES}/${name}`;
    if (name.endsWith(".yaml")) {
      const mode = configMode(await loadConfig(file));
      if (mode === "local") return await startLocal(file);
      if (mode === "kubernetes") return await startKubernetes(file);
      return await startRemote(file);
    }
    if (name.endsWith(".ts")) return await startModule(file);
    throw new Error(
      `examples/${name}: no way to start it; teach tests/e2e/examples_test.ts (every shipped example is started by a test)`,
    );
  });
}
