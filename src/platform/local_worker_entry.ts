/**
 * Entry point of a local-platform VM: runs inside a Deno Worker with scoped permissions and
 * starts the same worker code as `iris worker serve`. Talks to the platform by messages:
 * start → started|error, stop → stopped, probe-read → probe-result (permission diagnostics).
 * @module
 */
import { PortAllocator, startWorker, type WorkerHandle } from "../worker/mod.ts";
import type { LocalVmStartMessage, LocalVmToPlatform } from "./local_messages.ts";
import { ms } from "../time.ts";
import { workerDashboard } from "../dashboard/mod.ts";
import { rpcBundleFetcher } from "../bundle/mod.ts";

declare const self: {
  postMessage(message: LocalVmToPlatform): void;
  onmessage: ((ev: MessageEvent) => void) | null;
};

let handle: WorkerHandle | undefined;

function post(message: LocalVmToPlatform): void {
  self.postMessage(message);
}

async function start(msg: LocalVmStartMessage): Promise<void> {
  const set = msg.settings ?? {};
  try {
    handle = await startWorker({
      controllerUrl: msg.controllerUrl,
      workerToken: msg.workerToken,
      protectedPaths: msg.protectedPaths,
      workerId: msg.workerId,
      host: "127.0.0.1",
      port: 0,
      fallback: workerDashboard,
      rootDir: msg.rootDir,
      resources: msg.resources,
      attributes: msg.attributes,
      scaleGroup: msg.scaleGroup,
      sliceId: msg.sliceId,
      portAllocator: PortAllocator.fromShared(msg.ports),
      ...(set.outputRetentionMs ? { outputRetention: ms(set.outputRetentionMs) } : {}),
      ...(set.outputsPrefix ? { outputsPrefix: set.outputsPrefix } : {}),
      python: {
        ...(set.pythonInstaller ? { installer: set.pythonInstaller } : {}),
        ...(set.pythonCacheBytes ? { maxBytes: set.pythonCacheBytes } : {}),
        ...(set.pythonCacheMaxAgeMs ? { maxAge: ms(set.pythonCacheMaxAgeMs) } : {}),
      },
      heartbeatInterval: ms(msg.heartbeatIntervalMs),
      log: (line) => post({ type: "log", line }),
      bundleFetcher: rpcBundleFetcher(msg.controllerUrl, `${msg.rootDir}/bundles`, {
        token: msg.workerToken,
      }),
    });
    post({ type: "started", url: handle.url, workerId: handle.workerId });
  } catch (err) {
    post({ type: "error", message: err instanceof Error ? err.message : String(err) });
  }
}

self.onmessage = async (ev: MessageEvent) => {
  const msg = ev.data as { type: string } & Record<string, unknown>;
  if (msg.type === "start") {
    await start(msg as unknown as LocalVmStartMessage);
  } else if (msg.type === "stop") {
    try {
      await handle?.stop();
    } finally {
      post({ type: "stopped" });
    }
  } else if (msg.type === "probe-read") {
    try {
      await Deno.readTextFile(String(msg.path));
      post({ type: "probe-result", ok: true, error: "" });
    } catch (err) {
      post({
        type: "probe-result",
        ok: false,
        error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
      });
    }
  }
};
