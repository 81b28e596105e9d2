/**
 * Kubernetes naming shared by the platform (NodePools, worker Pods) and the worker (task Pods):
 * valid object names and the device-plugin resource names.
 * @module
 */

/** GPUs and RDMA as the device plugins name them. */
export const GPU_RESOURCE = "nvidia.com/gpu";
export const RDMA_RESOURCE = "rdma/ib";

/** A valid object name (RFC 1123 label): lowercase, digits and -, ≤ 63 characters. */
export function kubeName(value: string): string {
  const name = value.toLowerCase().replace(/[^a-z0-9-]/g, "-").replace(/-+/g, "-");
  return name.slice(0, 63).replace(/^-+|-+$/g, "") || "x";
}

/**
 * `<base><suffix>` as an object name: a base that is too long or not already a valid name is
 * cut and marked with a hash of the whole base, so the suffix and uniqueness survive.
 */
export function boundedKubeName(base: string, suffix: string): string {
  const name = kubeName(base);
  if (name.length + suffix.length <= 63 && name === base) return `${name}${suffix}`;
  let h = 0;
  for (const c of base) h = (Math.imul(h, 31) + c.charCodeAt(0)) >>> 0;
  const tag = `-${h.toString(36)}`;
  const cut = name.slice(0, 63 - suffix.length - tag.length).replace(/-+$/, "");
  return `${cut}${tag}${suffix}`;
}
