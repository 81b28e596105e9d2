/**
 * Deno Worker entry for the host-metrics sandbox test: reads the host through HostMeter and
 * reports what else of the system it could see.
 * @module
 */
import { HostMeter } from "../../src/worker/host_metrics.ts";
import { ms } from "../../src/time.ts";

const port = globalThis as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent) => void) | null;
};

function denied(f: () => unknown): boolean {
  try {
    f();
    return false;
  } catch {
    return true;
  }
}

port.onmessage = () => {
  port.postMessage({
    sample: new HostMeter(undefined, ms(0)).read(),
    hostnameDenied: denied(() => Deno.hostname()),
    etcHostnameDenied: denied(() => Deno.readTextFileSync("/etc/hostname")),
    procStatDenied: denied(() => Deno.readTextFileSync("/proc/stat")),
    interfacesDenied: denied(() => Deno.networkInterfaces()),
  });
};
