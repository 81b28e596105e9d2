/**
 * The worker's bundle fetcher: downloads a bundle from the controller (GetBundle RPC) once,
 * verifies its hash and unpacks it into a local cache shared by the worker's tasks.
 * @module
 */
import { controllerClient } from "../rpc/client.ts";
import { BundleCache } from "./cache.ts";

/** A fetcher for `startWorker({ bundleFetcher })`: bundle id → unpacked directory. */
export function rpcBundleFetcher(
  controllerUrl: string,
  cacheDir: string,
): (bundleId: string, signal: AbortSignal) => Promise<string> {
  const cache = new BundleCache(cacheDir);
  const client = controllerClient(controllerUrl);
  return (bundleId, signal) =>
    cache.ensure(
      bundleId,
      async () =>
        (await client.getBundle({ bundleId }, {
          signal: AbortSignal.any([signal, AbortSignal.timeout(120_000)]),
        })).data,
    );
}
