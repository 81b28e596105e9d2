/**
 * Bundles in Google Cloud Storage (`bundle_prefix: gs://bucket/path`), through the GCS JSON API
 * with the VM's service-account token from the metadata server. Objects are
 * `<path>/<bundleId>.tar.gz`; uploads are single-request media uploads.
 *
 * The API is `https://storage.googleapis.com` unless `IRIS_GCS_ENDPOINT` (or the `endpoint`
 * option) names another base URL; tests point it at a stand-in on loopback.
 * @module
 */
import { InvalidArgumentError, NotFoundError, ResourceExhaustedError } from "../errors.ts";
import { envOf, GceMetadata } from "../gcp/mod.ts";
import { type Duration, seconds } from "../time.ts";
import { bundleIdOf, validateBundleId } from "./id.ts";
import { type BundleLimits, resolveLimits } from "./limits.ts";
import { formatBytes } from "../format.ts";
import type { BundleStore, PutResult } from "./store.ts";
import { inspectBundle } from "./unpack.ts";

/** Options for {@linkcode GcsBundleStore}. */
export interface GcsBundleStoreOptions {
  /** Limits applied to uploaded archives. */
  readonly limits?: BundleLimits;
  /** Base URL of the JSON API. @default env IRIS_GCS_ENDPOINT, else https://storage.googleapis.com */
  readonly endpoint?: string;
  /** Where access tokens come from. @default a GceMetadata for this VM */
  readonly metadata?: GceMetadata;
  /** Limit of each request. @default 120 s */
  readonly timeout?: Duration;
}

/** A parsed `gs://bucket/path` prefix. */
export interface GcsLocation {
  readonly bucket: string;
  /** Object name prefix without leading or trailing "/" ("" for the bucket root). */
  readonly path: string;
}

/** Parses `gs://bucket[/path]`; InvalidArgumentError("bundle_prefix") when malformed. */
export function parseGcsPrefix(prefix: string): GcsLocation {
  const m = /^gs:\/\/([^/]+)(?:\/(.*))?$/.exec(prefix);
  const bucket = m?.[1] ?? "";
  if (!m || !/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(bucket)) {
    throw new InvalidArgumentError(
      "bundle_prefix",
      `${
        JSON.stringify(prefix)
      } is not a valid "gs://bucket/path" (bucket names use a-z, 0-9, ".", "-", "_")`,
    );
  }
  return { bucket, path: (m[2] ?? "").replace(/^\/+|\/+$/g, "") };
}

/** Bundles as objects of a GCS bucket. */
export class GcsBundleStore implements BundleStore {
  readonly location: GcsLocation;
  readonly endpoint: string;
  readonly #limits: Required<BundleLimits>;
  readonly #metadata: GceMetadata;
  readonly #timeout: Duration;

  constructor(prefix: string, options: GcsBundleStoreOptions = {}) {
    this.location = parseGcsPrefix(prefix);
    this.endpoint = (options.endpoint ?? envOf("IRIS_GCS_ENDPOINT") ??
      "https://storage.googleapis.com").replace(/\/+$/, "");
    this.#limits = resolveLimits(options.limits);
    this.#metadata = options.metadata ?? new GceMetadata();
    this.#timeout = options.timeout ?? seconds(120);
  }

  /** Checks the archive (nothing written) and uploads it under its id unless already there. */
  async put(data: Uint8Array): Promise<PutResult> {
    if (data.length > this.#limits.maxCompressedBytes) {
      throw new ResourceExhaustedError(
        `bundle is ${formatBytes(data.length)}, over the ${
          formatBytes(this.#limits.maxCompressedBytes)
        } limit`,
      );
    }
    const bundleId = await bundleIdOf(data);
    const result = { bundleId, sizeBytes: data.length };
    if (await this.has(bundleId)) return result;
    await inspectBundle(data, this.#limits);
    const name = this.#objectOf(bundleId);
    const url = `${this.endpoint}/upload/storage/v1/b/${encodeURIComponent(this.location.bucket)}` +
      `/o?uploadType=media&name=${encodeURIComponent(name)}`;
    const res = await this.#request("POST", url, name, {
      body: data as Uint8Array<ArrayBuffer>,
      headers: { "Content-Type": "application/gzip" },
    });
    await res.body?.cancel();
    if (!res.ok) throw await this.#failure("upload", name, res);
    return result;
  }

  /** The stored bytes; NotFoundError (naming the object) when absent. */
  async get(bundleId: string): Promise<Uint8Array> {
    validateBundleId(bundleId);
    const name = this.#objectOf(bundleId);
    const res = await this.#request("GET", `${this.#objectUrl(name)}?alt=media`, name);
    if (res.status === 404) {
      await res.body?.cancel();
      throw new NotFoundError(`bundle ${bundleId} not found (${this.#gsUrl(name)}: HTTP 404)`);
    }
    if (!res.ok) throw await this.#failure("download", name, res);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** True when the object exists (its metadata can be read). */
  async has(bundleId: string): Promise<boolean> {
    validateBundleId(bundleId);
    const name = this.#objectOf(bundleId);
    const res = await this.#request("GET", this.#objectUrl(name), name);
    await res.body?.cancel();
    if (res.status === 404) return false;
    if (!res.ok) throw await this.#failure("stat", name, res);
    return true;
  }

  #objectOf(bundleId: string): string {
    return this.location.path ? `${this.location.path}/${bundleId}.tar.gz` : `${bundleId}.tar.gz`;
  }

  #objectUrl(name: string): string {
    return `${this.endpoint}/storage/v1/b/${encodeURIComponent(this.location.bucket)}/o/${
      encodeURIComponent(name)
    }`;
  }

  #gsUrl(name: string): string {
    return `gs://${this.location.bucket}/${name}`;
  }

  /** One API call; a 401 (token revoked or expired early) is retried once with a fresh token. */
  async #request(
    method: string,
    url: string,
    name: string,
    init: { body?: Uint8Array<ArrayBuffer>; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const { res, token } = await this.#send(method, url, name, init);
    if (res.status !== 401) return res;
    await res.body?.cancel();
    this.#metadata.invalidateToken(token);
    return (await this.#send(method, url, name, init)).res;
  }

  async #send(
    method: string,
    url: string,
    name: string,
    init: { body?: Uint8Array<ArrayBuffer>; headers?: Record<string, string> },
  ): Promise<{ res: Response; token: string }> {
    let token: string;
    try {
      token = await this.#metadata.accessToken();
    } catch (err) {
      throw new Error(
        `${this.#gsUrl(name)}: no access token: ${err instanceof Error ? err.message : err}`,
        { cause: err },
      );
    }
    try {
      const res = await fetch(url, {
        method,
        body: init.body,
        headers: { ...init.headers, Authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(this.#timeout),
      });
      return { res, token };
    } catch (err) {
      throw new Error(
        `${this.#gsUrl(name)}: ${method} ${url} failed: ${
          err instanceof Error ? err.message : err
        }`,
        { cause: err },
      );
    }
  }

  async #failure(what: string, name: string, res: Response): Promise<Error> {
    const body = (await res.text().catch(() => "")).slice(0, 300);
    return new Error(
      `${this.#gsUrl(name)}: ${what} failed: HTTP ${res.status}${body ? `: ${body}` : ""}`,
    );
  }
}
