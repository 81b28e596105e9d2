/**
 * The worker's bundle fetcher: downloads a bundle from the controller (GetBundle RPC) once,
 * verifies its hash and unpacks it into a local cache shared by the worker's tasks.
 * @module
 */
import { controllerClient } from "../rpc/mod.ts";
import { BundleCache } from "./cache.ts";
import { type BundleLimits, bundleLimitsFor } from "./limits.ts";

/** A fetcher for `startWorker({ bundleFetcher })`: bundle id → unpacked directory. */
export function rpcBundleFetcher(
  controllerUrl: string,
  cacheDir: string,
  options: { token?: string; limits?: BundleLimits } = {},
): (bundleId: string, signal: AbortSignal) => Promise<string> {
  const cache = new BundleCache(cacheDir, options.limits);
  const client = controllerClient(controllerUrl, { token: options.token });
  return (bundleId, signal) =>
    cache.ensure(bundleId, async () => {
      const res = await client.getBundle({ bundleId }, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(120_000)]),
      });
      // The controller tells its max_bundle_size: a bundle it accepted must unpack here.
      return {
        data: res.data,
        limits: res.maxBundleBytes > 0 ? bundleLimitsFor(res.maxBundleBytes) : undefined,
      };
    });
}
