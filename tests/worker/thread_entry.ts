/**
 * Deno Worker entry for the restricted-thread test: starts an Iris worker on "start", stops it
 * on "stop", and answers with "started" / "stopped" / "error" messages.
 * @module
 */
import { seconds } from "../../src/time.ts";
import { startWorker, type WorkerHandle } from "../../src/worker/mod.ts";

interface Port {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent) => void) | null;
}

const port = globalThis as unknown as Port;
let worker: WorkerHandle | undefined;

port.onmessage = async (event: MessageEvent) => {
  const msg = event.data as { type: "start"; controllerUrl: string; rootDir: string } | {
    type: "stop";
  };
  try {
    if (msg.type === "start") {
      worker = await startWorker({
        controllerUrl: msg.controllerUrl,
        rootDir: msg.rootDir,
        resources: { cpuMillicores: 1000, memoryBytes: 1024 ** 3 },
        killGrace: seconds(2),
      });
      port.postMessage({ type: "started", url: worker.url });
    } else {
      await worker?.stop();
      port.postMessage({ type: "stopped" });
    }
  } catch (err) {
    port.postMessage({
      type: "error",
      message: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
    });
  }
};
