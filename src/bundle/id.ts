/**
 * Bundle ids: content addresses of the form `sha256-<64 lowercase hex>` over the gzip'd archive bytes.
 * @module
 */
import { InvalidArgumentError } from "../errors.ts";

const BUNDLE_ID_RE = /^sha256-[0-9a-f]{64}$/;

/** The content address of bundle bytes: `"sha256-" + hex(sha256(data))`. */
export async function bundleIdOf(data: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>),
  );
  let hex = "";
  for (const byte of digest) hex += byte.toString(16).padStart(2, "0");
  return `sha256-${hex}`;
}

/** True when `id` is a well-formed bundle id. */
export function isBundleId(id: string): boolean {
  return BUNDLE_ID_RE.test(id);
}

/** Throws InvalidArgumentError("bundle_id", ...) unless `id` is `sha256-<64 lowercase hex>`. */
export function validateBundleId(id: string): void {
  if (typeof id !== "string" || !BUNDLE_ID_RE.test(id)) {
    const shown = typeof id === "string"
      ? JSON.stringify(id.length > 80 ? `${id.slice(0, 80)}…` : id)
      : String(id);
    throw new InvalidArgumentError(
      "bundle_id",
      `must be "sha256-" followed by 64 lowercase hex digits, got ${shown}`,
    );
  }
}
