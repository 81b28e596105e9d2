/**
 * The GCE metadata server, as a VM sees it: instance attributes (e.g. a TPU VM's
 * `accelerator-type`) and the default service account's OAuth access token, cached until shortly
 * before it expires. Every request carries `Metadata-Flavor: Google`.
 *
 * The server is `http://metadata.google.internal` unless `IRIS_GCE_METADATA_URL` (a base URL) or
 * `GCE_METADATA_HOST` (host[:port], the variable Google's client libraries read) says otherwise;
 * tests point it at a stand-in on loopback.
 * @module
 */
import { type Duration, seconds } from "../time.ts";

/** The metadata server's base URL, from the environment (see the module doc). */
export function metadataBaseUrl(): string {
  const url = envOf("IRIS_GCE_METADATA_URL");
  if (url) return url.replace(/\/+$/, "");
  const host = envOf("GCE_METADATA_HOST");
  return host ? `http://${host}` : "http://metadata.google.internal";
}

/** A variable of the process environment, or undefined when unset or not readable. */
export function envOf(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/** Options for {@linkcode GceMetadata}. */
export interface GceMetadataOptions {
  /** @default metadataBaseUrl() */
  readonly baseUrl?: string;
  /** Limit of each request. @default 10 s */
  readonly timeout?: Duration;
}

/** Renew a cached token this long before it expires. */
const TOKEN_MARGIN = seconds(60);

/** A client of the metadata server. */
export class GceMetadata {
  readonly baseUrl: string;
  readonly #timeout: Duration;
  #token?: { value: string; renewAtMs: number };
  #pending?: Promise<string>;

  constructor(options: GceMetadataOptions = {}) {
    this.baseUrl = (options.baseUrl ?? metadataBaseUrl()).replace(/\/+$/, "");
    this.#timeout = options.timeout ?? seconds(10);
  }

  /** The text of `computeMetadata/v1/<path>`; undefined on 404 (no such key). */
  async get(path: string, signal?: AbortSignal): Promise<string | undefined> {
    const url = `${this.baseUrl}/computeMetadata/v1/${path}`;
    let res: Response;
    try {
      res = await fetch(url, {
        headers: { "Metadata-Flavor": "Google" },
        signal: AbortSignal.any([
          AbortSignal.timeout(this.#timeout),
          ...(signal ? [signal] : []),
        ]),
      });
    } catch (err) {
      throw new Error(
        `metadata server: GET ${url} failed: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    const body = await res.text();
    if (res.status === 404) return undefined;
    if (!res.ok) {
      throw new Error(`metadata server: GET ${url}: HTTP ${res.status}: ${body.slice(0, 200)}`);
    }
    return body;
  }

  /** The default service account's access token, reused until 60 s before it expires. */
  accessToken(signal?: AbortSignal): Promise<string> {
    const cached = this.#token;
    if (cached && Date.now() < cached.renewAtMs) return Promise.resolve(cached.value);
    this.#pending ??= this.#fetchToken(signal).finally(() => this.#pending = undefined);
    return this.#pending;
  }

  /** Forgets the cached token (the API refused it), so the next call fetches a new one. */
  invalidateToken(token: string): void {
    if (this.#token?.value === token) this.#token = undefined;
  }

  async #fetchToken(signal?: AbortSignal): Promise<string> {
    const path = "instance/service-accounts/default/token";
    const text = await this.get(path, signal);
    if (text === undefined) {
      throw new Error(`metadata server: ${this.baseUrl}/computeMetadata/v1/${path}: HTTP 404`);
    }
    let body: { access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`metadata server: ${path} returned no JSON: ${text.slice(0, 200)}`);
    }
    if (typeof body.access_token !== "string" || body.access_token === "") {
      throw new Error(`metadata server: ${path} returned no access_token`);
    }
    const expiresIn = typeof body.expires_in === "number" ? body.expires_in : 0;
    this.#token = {
      value: body.access_token,
      renewAtMs: Date.now() + Math.max(0, seconds(expiresIn) - TOKEN_MARGIN),
    };
    return body.access_token;
  }
}
