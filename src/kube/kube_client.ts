/**
 * A small Kubernetes API client: the API server's REST API over fetch with kubeconfig
 * credentials (bearer token, client certificate, cluster CA), a hard timeout on every call,
 * watches (`?watch=true`, newline-delimited JSON events) and followed Pod logs. No kubectl.
 * Failures are classified from the API's `Status` object: 404 → ResourceNotFoundError,
 * 409 AlreadyExists → KubeAlreadyExistsError, a quota/capacity refusal → QuotaExhaustedError
 * (the autoscaler backs off), 401/403 → PermissionDeniedError, 429/5xx/network →
 * PlatformUnavailableError. Every message names the verb and the resource.
 * @module
 */
import { parse as parseYaml } from "yaml";
import {
  PermissionDeniedError,
  PlatformError,
  PlatformUnavailableError,
  QuotaExhaustedError,
  ResourceNotFoundError,
} from "../errors.ts";
import { type Duration, seconds } from "../time.ts";
import { forEachLine, textReader } from "../line_reader.ts";

/** Where the API server is and how to authenticate to it. */
export interface KubeCredentials {
  /** e.g. "https://10.0.0.1:6443" */
  readonly server: string;
  readonly token?: string;
  /** PEM of the cluster CA. */
  readonly caCert?: string;
  /** PEM client certificate and key. */
  readonly clientCert?: string;
  readonly clientKey?: string;
  /** The kubeconfig context's namespace, if any. */
  readonly namespace?: string;
}

/** The in-cluster service account directory (token, ca.crt, namespace). */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Options of {@linkcode loadKubeCredentials}. */
export interface LoadCredentialsOptions {
  /** A kubeconfig file; wins over everything else. */
  readonly kubeconfig?: string;
  /** A context of the kubeconfig. @default its current-context */
  readonly context?: string;
  /** @default Deno.env */
  readonly env?: (name: string) => string | undefined;
}

type YamlObject = Record<string, unknown>;

function obj(v: unknown): YamlObject {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? v as YamlObject : {};
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

function named(list: unknown, name: string, what: string, file: string): YamlObject {
  const found = (Array.isArray(list) ? list : []).map(obj).find((e) => e.name === name);
  if (!found) throw new PlatformError(`Cannot use kubeconfig ${file}: no ${what} named '${name}'`);
  return obj(found[what]);
}

function decode(b64: string): string {
  return new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
}

function expandHome(path: string, env: (name: string) => string | undefined): string {
  return path.startsWith("~/") ? `${env("HOME") ?? ""}${path.slice(1)}` : path;
}

/** Reads `path` relative to the kubeconfig's directory. */
async function readRelative(file: string, path: string): Promise<string> {
  const full = path.startsWith("/") ? path : `${file.replace(/[^/]*$/, "")}${path}`;
  return await Deno.readTextFile(full);
}

/** Credentials from one kubeconfig file. */
export async function parseKubeconfig(
  file: string,
  text: string,
  context?: string,
): Promise<KubeCredentials> {
  let doc: YamlObject;
  try {
    doc = obj(parseYaml(text));
  } catch (err) {
    throw new PlatformError(`Cannot parse kubeconfig ${file}: ${err}`, { cause: err });
  }
  const ctxName = context ?? str(doc["current-context"]);
  if (!ctxName) throw new PlatformError(`Cannot use kubeconfig ${file}: no current-context`);
  const ctx = named(doc.contexts, ctxName, "context", file);
  const cluster = named(doc.clusters, String(ctx.cluster ?? ""), "cluster", file);
  const user = ctx.user === undefined ? {} : named(doc.users, String(ctx.user), "user", file);
  const server = str(cluster.server);
  if (!server) throw new PlatformError(`Cannot use kubeconfig ${file}: cluster has no server`);
  const pem = async (data: unknown, path: unknown) =>
    str(data) ? decode(str(data)!) : str(path) ? await readRelative(file, str(path)!) : undefined;
  const tokenFile = str(user.tokenFile);
  return {
    server: server.replace(/\/$/, ""),
    token: str(user.token) ??
      (tokenFile ? (await readRelative(file, tokenFile)).trim() : undefined),
    caCert: await pem(cluster["certificate-authority-data"], cluster["certificate-authority"]),
    clientCert: await pem(user["client-certificate-data"], user["client-certificate"]),
    clientKey: await pem(user["client-key-data"], user["client-key"]),
    namespace: str(ctx.namespace),
  };
}

/**
 * The credentials to use: `kubeconfig` if given, else `$KUBECONFIG`, else the in-cluster service
 * account (when `KUBERNETES_SERVICE_HOST` is set), else `~/.kube/config`.
 */
export async function loadKubeCredentials(
  opts: LoadCredentialsOptions = {},
): Promise<KubeCredentials> {
  const env = opts.env ?? ((n: string) => Deno.env.get(n));
  const file = opts.kubeconfig ?? env("KUBECONFIG")?.split(":")[0];
  if (!file && env("KUBERNETES_SERVICE_HOST")) {
    const host = env("KUBERNETES_SERVICE_HOST")!;
    const port = env("KUBERNETES_SERVICE_PORT") ?? "443";
    const read = (f: string) => Deno.readTextFile(`${SERVICE_ACCOUNT_DIR}/${f}`);
    return {
      server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
      token: (await read("token")).trim(),
      caCert: await read("ca.crt"),
      namespace: (await read("namespace").catch(() => "")).trim() || undefined,
    };
  }
  const path = expandHome(file ?? "~/.kube/config", env);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new PlatformError(
      `Cannot read kubeconfig ${path}: ${err instanceof Error ? err.message : err}`,
      { cause: err },
    );
  }
  return await parseKubeconfig(path, text, opts.context);
}

/** A Kubernetes `Status` object (the body of every API error). */
export interface KubeStatus {
  readonly kind?: string;
  readonly status?: string;
  readonly message?: string;
  readonly reason?: string;
  readonly code?: number;
  readonly details?: { readonly name?: string; readonly kind?: string };
}

/** The object already exists (409 AlreadyExists): `ensure` treats it as done. */
export class KubeAlreadyExistsError extends PlatformError {}

const QUOTA = /exceeded quota|insufficient|quota exceeded|capacity/i;

/** The Iris error for an API answer `code` with `status`, naming `action`. */
export function kubeError(
  action: string,
  code: number,
  status: KubeStatus,
): PlatformError | PermissionDeniedError {
  const detail = `${code}${status.reason ? ` ${status.reason}` : ""}: ${
    status.message ?? "(no message)"
  }`;
  const message = `Cannot ${action}: ${detail}`;
  if (code === 404) return new ResourceNotFoundError(message);
  if (code === 409 && status.reason === "AlreadyExists") return new KubeAlreadyExistsError(message);
  if ((code === 403 || code === 409 || code === 422) && QUOTA.test(status.message ?? "")) {
    return new QuotaExhaustedError(message);
  }
  if (code === 401 || code === 403) return new PermissionDeniedError(message);
  if (code === 429 || code >= 500) return new PlatformUnavailableError(message);
  return new PlatformError(message);
}

/** One watch event. */
export interface WatchEvent<T = KubeObject> {
  readonly type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  readonly object: T;
}

/** Any Kubernetes object (only metadata is typed). */
export interface KubeObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: {
    readonly name?: string;
    readonly namespace?: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
    readonly resourceVersion?: string;
    readonly creationTimestamp?: string;
    readonly deletionTimestamp?: string;
  };
  readonly [key: string]: unknown;
}

/** A list answer. */
export interface KubeList<T = KubeObject> {
  readonly items: readonly T[];
  readonly metadata?: { readonly resourceVersion?: string };
}

/** Options of one request. */
export interface KubeRequestOptions {
  /** Hard limit of the call. @default the client's */
  readonly timeout?: Duration;
  readonly signal?: AbortSignal;
}

/** Options of {@linkcode KubeClient}. */
export interface KubeClientOptions {
  /** Limit of every call that is not a watch or a followed log. @default 30s */
  readonly timeout?: Duration;
}

/**
 * The API server client. Paths are API paths ("/api/v1/namespaces/iris/pods"); `what` names
 * the verb and resource for error messages ("create Pod iris/w-1").
 */
export class KubeClient implements Disposable {
  readonly #creds: KubeCredentials;
  readonly #timeout: Duration;
  readonly #http?: Deno.HttpClient;

  constructor(creds: KubeCredentials, options: KubeClientOptions = {}) {
    this.#creds = creds;
    this.#timeout = options.timeout ?? seconds(30);
    if (creds.caCert || (creds.clientCert && creds.clientKey)) {
      this.#http = Deno.createHttpClient({
        caCerts: creds.caCert ? [creds.caCert] : undefined,
        ...(creds.clientCert && creds.clientKey
          ? { cert: creds.clientCert, key: creds.clientKey }
          : {}),
      });
    }
  }

  /** The namespace of the kubeconfig context, if it names one. */
  get contextNamespace(): string | undefined {
    return this.#creds.namespace;
  }

  #init(method: string, signal: AbortSignal, body?: unknown, contentType?: string): RequestInit {
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.#creds.token) headers.authorization = `Bearer ${this.#creds.token}`;
    if (body !== undefined) headers["content-type"] = contentType ?? "application/json";
    return {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      ...(this.#http ? { client: this.#http } : {}),
    };
  }

  async #fetch(
    method: string,
    path: string,
    what: string,
    signal: AbortSignal,
    body?: unknown,
    contentType?: string,
  ): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(
        `${this.#creds.server}${path}`,
        this.#init(method, signal, body, contentType),
      );
    } catch (err) {
      const why = signal.aborted ? "timed out or aborted" : String(err);
      throw new PlatformUnavailableError(`Cannot ${what}: ${why}`, { cause: err });
    }
    if (res.ok) return res;
    const text = await res.text().catch(() => "");
    let status: KubeStatus = { message: text.slice(0, 500) };
    try {
      const parsed = JSON.parse(text) as KubeStatus;
      if (parsed?.kind === "Status") status = parsed;
    } catch { /* not JSON */ }
    throw kubeError(what, res.status, status);
  }

  /** One JSON request; resolves to the parsed answer. */
  async request<T = KubeObject>(
    method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
    path: string,
    what: string,
    opts: KubeRequestOptions & { body?: unknown; contentType?: string } = {},
  ): Promise<T> {
    const signal = AbortSignal.any([
      AbortSignal.timeout(opts.timeout ?? this.#timeout),
      ...(opts.signal ? [opts.signal] : []),
    ]);
    const res = await this.#fetch(method, path, what, signal, opts.body, opts.contentType);
    try {
      return await res.json() as T;
    } catch (err) {
      throw new PlatformError(`Cannot ${what}: the answer is not JSON (${err})`, { cause: err });
    }
  }

  get<T = KubeObject>(path: string, what: string, opts?: KubeRequestOptions): Promise<T> {
    return this.request<T>("GET", path, what, opts);
  }

  create<T = KubeObject>(
    path: string,
    body: unknown,
    what: string,
    opts?: KubeRequestOptions,
  ): Promise<T> {
    return this.request<T>("POST", path, what, { ...opts, body });
  }

  /** Creates `body` at collection `path`; an existing object of the name counts as done. */
  async ensure(path: string, body: KubeObject, what: string, opts?: KubeRequestOptions) {
    try {
      await this.create(path, body, what, opts);
      return "created" as const;
    } catch (err) {
      if (err instanceof KubeAlreadyExistsError) return "exists" as const;
      throw err;
    }
  }

  /** Deletes the object at `path`; an object already gone counts as done. */
  async delete(path: string, what: string, opts?: KubeRequestOptions): Promise<void> {
    try {
      await this.request("DELETE", path, what, opts);
    } catch (err) {
      if (!(err instanceof ResourceNotFoundError)) throw err;
    }
  }

  list<T = KubeObject>(
    path: string,
    what: string,
    opts?: KubeRequestOptions & { labelSelector?: string },
  ): Promise<KubeList<T>> {
    const q = opts?.labelSelector ? `?labelSelector=${encodeURIComponent(opts.labelSelector)}` : "";
    return this.request<KubeList<T>>("GET", `${path}${q}`, what, opts);
  }

  /**
   * A raw request to the API server (e.g. a service proxy path) with the client's credentials;
   * the caller owns the answer and its limits. @throws {PlatformUnavailableError} unreachable
   */
  async raw(path: string, init: RequestInit & { what: string }): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.#creds.token) headers.set("authorization", `Bearer ${this.#creds.token}`);
    else headers.delete("authorization");
    try {
      return await fetch(`${this.#creds.server}${path}`, {
        ...init,
        headers,
        ...(this.#http ? { client: this.#http } : {}),
      });
    } catch (err) {
      throw new PlatformUnavailableError(`Cannot ${init.what}: ${err}`, { cause: err });
    }
  }

  /** Reads the lines of a streaming answer until it ends or `signal` aborts. */
  async #lines(
    path: string,
    what: string,
    signal: AbortSignal,
    onLine: (line: string) => void,
  ): Promise<void> {
    const res = await this.#fetch("GET", path, what, signal);
    const reader = textReader(res.body!);
    try {
      await forEachLine(reader, onLine);
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      await reader.cancel().catch(() => {});
    }
  }

  /**
   * Watches a collection (`?watch=true`), calling `onEvent` for each event until the server ends
   * the stream, `signal` aborts, or `onEvent` returns true (done).
   */
  async watch<T = KubeObject>(
    path: string,
    what: string,
    onEvent: (event: WatchEvent<T>) => boolean | void,
    opts: { signal?: AbortSignal; labelSelector?: string; resourceVersion?: string } = {},
  ): Promise<void> {
    const stop = new AbortController();
    const signal = AbortSignal.any([stop.signal, ...(opts.signal ? [opts.signal] : [])]);
    const q = new URLSearchParams({ watch: "true" });
    if (opts.labelSelector) q.set("labelSelector", opts.labelSelector);
    if (opts.resourceVersion) q.set("resourceVersion", opts.resourceVersion);
    await this.#lines(`${path}?${q}`, what, signal, (line) => {
      if (!line.trim() || stop.signal.aborted) return;
      const event = JSON.parse(line) as WatchEvent<T>;
      if (event.type === "ERROR") {
        const status = event.object as KubeStatus;
        throw kubeError(what, status.code ?? 500, status);
      }
      if (onEvent(event) === true) stop.abort();
    });
  }

  /** Follows a Pod's log (`follow=true`), one call per line, until the Pod ends or `signal`. */
  followLog(
    namespace: string,
    pod: string,
    onLine: (line: string) => void,
    opts: { signal?: AbortSignal; container?: string } = {},
  ): Promise<void> {
    const q = new URLSearchParams({ follow: "true" });
    if (opts.container) q.set("container", opts.container);
    const signal = opts.signal ?? new AbortController().signal;
    return this.#lines(
      `/api/v1/namespaces/${namespace}/pods/${pod}/log?${q}`,
      `follow the log of Pod ${namespace}/${pod}`,
      signal,
      onLine,
    );
  }

  /** The log of a Pod so far (the last `tailLines`). */
  async podLog(
    namespace: string,
    pod: string,
    opts: KubeRequestOptions & { tailLines?: number } = {},
  ): Promise<string> {
    const signal = AbortSignal.any([
      AbortSignal.timeout(opts.timeout ?? this.#timeout),
      ...(opts.signal ? [opts.signal] : []),
    ]);
    const q = opts.tailLines ? `?tailLines=${opts.tailLines}` : "";
    const res = await this.#fetch(
      "GET",
      `/api/v1/namespaces/${namespace}/pods/${pod}/log${q}`,
      `read the log of Pod ${namespace}/${pod}`,
      signal,
    );
    return await res.text();
  }

  [Symbol.dispose](): void {
    this.#http?.close();
  }
}
