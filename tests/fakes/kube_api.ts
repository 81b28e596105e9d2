/**
 * An in-test stand-in for the Kubernetes API server's REST surface, written from the Kubernetes
 * API reference (API conventions: resource paths, `Status` error objects, list/watch semantics):
 *
 * - Collections: Namespaces; namespaced Pods, Services, ConfigMaps, ServiceAccounts (core v1),
 *   Deployments (apps/v1), Roles and RoleBindings (rbac.authorization.k8s.io/v1); the cluster-
 *   scoped CoreWeave NodePool custom resource (compute.coreweave.com/v1alpha1, nodepools).
 * - Verbs: create (POST collection; 409 AlreadyExists, 404 when the namespace is missing), get,
 *   list (with equality `labelSelector`), replace (PUT), JSON merge patch (PATCH), delete, and
 *   watch (`?watch=true`: newline-delimited `{type, object}` events; without resourceVersion the
 *   existing objects come first as ADDED), Pod logs (`/log`, `follow=true` streams until the Pod
 *   finishes or goes, or the server closes; `tailLines`), the service proxy
 *   (`services/NAME:PORT/proxy/…`, forwarded to a backend the test names; no endpoints → 503).
 * - Errors are `Status` objects (`kind: Status`, `status: Failure`, `message`, `reason`,
 *   `details {name, group, kind}`, `code`); a missing or wrong bearer token gets 401.
 * - Every request is recorded (`transcript()`) for golden files; injected failures (`failNext`)
 *   answer a given code/reason/message once.
 *
 * It does NOT model: authorization (RBAC is stored, not enforced), admission/validation of
 * specs (no 422 unless injected), ResourceQuota (inject 403 "exceeded quota"), graceful
 * deletion (objects vanish at once; no deletionTimestamp), owner references and garbage
 * collection, scheduling, kubelets or controllers (Pods stay Pending and Deployments get no
 * status unless the test sets them with `setStatus`/`onCreate`), strategic-merge or JSON patch,
 * field selectors, set-based label selectors, resourceVersion conflicts on update, watch
 * bookmarks, timeouts and 410 Gone, client-certificate authentication (https with a test
 * certificate is optional; only bearer tokens are checked), API discovery.
 * @module
 */

type Obj = Record<string, unknown> & {
  metadata?: Record<string, unknown> & {
    name?: string;
    namespace?: string;
    labels?: Record<string, string>;
  };
};

/** Collection kinds: [path regex, kind, group, namespaced]. */
const COLLECTIONS: [RegExp, string, string, string][] = [
  [/^\/api\/v1\/namespaces$/, "Namespace", "", "namespaces"],
  [/^\/api\/v1\/namespaces\/([^/]+)\/pods$/, "Pod", "", "pods"],
  [/^\/api\/v1\/namespaces\/([^/]+)\/services$/, "Service", "", "services"],
  [/^\/api\/v1\/namespaces\/([^/]+)\/configmaps$/, "ConfigMap", "", "configmaps"],
  [/^\/api\/v1\/namespaces\/([^/]+)\/serviceaccounts$/, "ServiceAccount", "", "serviceaccounts"],
  [/^\/apis\/apps\/v1\/namespaces\/([^/]+)\/deployments$/, "Deployment", "apps", "deployments"],
  [
    /^\/apis\/rbac\.authorization\.k8s\.io\/v1\/namespaces\/([^/]+)\/roles$/,
    "Role",
    "rbac.authorization.k8s.io",
    "roles",
  ],
  [
    /^\/apis\/rbac\.authorization\.k8s\.io\/v1\/namespaces\/([^/]+)\/rolebindings$/,
    "RoleBinding",
    "rbac.authorization.k8s.io",
    "rolebindings",
  ],
  [
    /^\/apis\/compute\.coreweave\.com\/v1alpha1\/nodepools$/,
    "NodePool",
    "compute.coreweave.com",
    "nodepools",
  ],
];

interface Route {
  readonly collection: string;
  readonly kind: string;
  readonly group: string;
  readonly resource: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly sub?: string;
}

function route(path: string): Route | undefined {
  const parts = path.split("/");
  for (let cut = 0; cut <= 2; cut++) {
    const base = cut === 0 ? path : parts.slice(0, parts.length - cut).join("/");
    for (const [re, kind, group, resource] of COLLECTIONS) {
      const m = re.exec(base);
      if (!m) continue;
      const rest = parts.slice(parts.length - cut);
      return {
        collection: base,
        kind,
        group,
        resource,
        namespace: m[1],
        name: rest[0],
        sub: rest[1],
      };
    }
  }
  return undefined;
}

/** A Kubernetes `Status` failure object. */
export function statusObject(
  code: number,
  reason: string,
  message: string,
  details?: { name?: string; group?: string; kind?: string },
) {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

interface Watcher {
  readonly collection: string;
  readonly selector: Record<string, string>;
  readonly send: (line: string) => void;
}

interface LogFollower {
  readonly key: string;
  readonly send: (line: string) => void;
  readonly close: () => void;
}

/** The stand-in API server. */
export class KubeApiStandIn implements AsyncDisposable {
  readonly token: string;
  readonly #objects = new Map<string, Obj>();
  readonly #watchers = new Set<Watcher>();
  readonly #followers = new Set<LogFollower>();
  readonly #logs = new Map<string, string[]>();
  readonly #transcript: string[] = [];
  readonly #failures: {
    method: string;
    path: RegExp;
    code: number;
    reason: string;
    msg: string;
    skip: number;
  }[] = [];
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #version = 1;
  /** Called after each create (e.g. a kubelet stand-in for Deployments). */
  onCreate?: (kind: string, obj: Obj) => void;

  readonly #tls: boolean;

  /** `tls`: serve https with the test certificate in tests/fakes/kube_tls (CA: `caPem()`). */
  constructor(token = "standin-token", options: { tls?: boolean } = {}) {
    this.token = token;
    this.#tls = options.tls ?? false;
    const dir = new URL("./kube_tls/", import.meta.url);
    const tls = this.#tls
      ? {
        cert: Deno.readTextFileSync(new URL("server.pem", dir)),
        key: Deno.readTextFileSync(new URL("server.key", dir)),
      }
      : {};
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {}, ...tls },
      (req) => this.#handle(req),
    );
  }

  /** The CA that signed the https certificate. */
  static caPem(): string {
    return Deno.readTextFileSync(new URL("./kube_tls/ca.pem", import.meta.url));
  }

  get url(): string {
    return `${this.#tls ? "https" : "http"}://127.0.0.1:${this.#server.addr.port}`;
  }

  /** A kubeconfig (YAML) pointing at this server with its token. */
  kubeconfig(namespace?: string): string {
    const ca = this.#tls
      ? [`      certificate-authority-data: ${btoa(KubeApiStandIn.caPem())}`]
      : [];
    return [
      "apiVersion: v1",
      "kind: Config",
      "current-context: standin",
      "clusters:",
      "  - name: standin",
      "    cluster:",
      `      server: ${this.url}`,
      ...ca,
      "users:",
      "  - name: standin",
      "    user:",
      `      token: ${this.token}`,
      "contexts:",
      "  - name: standin",
      "    context:",
      "      cluster: standin",
      "      user: standin",
      ...(namespace ? [`      namespace: ${namespace}`] : []),
      "",
    ].join("\n");
  }

  /** Every request as `METHOD path?query -> code` plus the request body, one block each. */
  transcript(): string {
    return this.#transcript.join("\n");
  }

  clearTranscript(): void {
    this.#transcript.length = 0;
  }

  /**
   * The next request matching `method` and `path` (after `skip` matching ones went through)
   * answers `code` with this Status.
   */
  failNext(
    method: string,
    path: RegExp,
    code: number,
    reason: string,
    message: string,
    skip = 0,
  ): void {
    this.#failures.push({ method, path, code, reason, msg: message, skip });
  }

  /** The stored object at `path` (`collection/name`), if any. */
  get(path: string): Obj | undefined {
    return this.#objects.get(path);
  }

  /** Paths of stored objects under `prefix`. */
  paths(prefix = ""): string[] {
    return [...this.#objects.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  /** Sets an object's `status` (as a controller or kubelet would) and tells watchers. */
  setStatus(path: string, status: Record<string, unknown>): void {
    const obj = this.#objects.get(path);
    if (!obj) throw new Error(`stand-in: no object at ${path}`);
    obj.status = status;
    this.#bump(obj);
    this.#notify(path, "MODIFIED", obj);
    // A finished container's log stream ends, as the kubelet's does.
    if (status.phase === "Succeeded" || status.phase === "Failed") {
      const key = `${obj.metadata?.namespace}/${obj.metadata?.name}`;
      for (const f of this.#followers) if (f.key === key) f.close();
    }
  }

  /** Appends a line to a Pod's log (followers get it at once). */
  appendLog(namespace: string, pod: string, line: string): void {
    const key = `${namespace}/${pod}`;
    this.#logs.set(key, [...(this.#logs.get(key) ?? []), line]);
    for (const f of this.#followers) if (f.key === key) f.send(`${line}\n`);
  }

  #bump(obj: Obj): void {
    obj.metadata!.resourceVersion = String(++this.#version);
  }

  #notify(path: string, type: string, obj: Obj): void {
    const collection = path.slice(0, path.lastIndexOf("/"));
    for (const w of this.#watchers) {
      if (w.collection === collection && matches(obj, w.selector)) {
        w.send(`${JSON.stringify({ type, object: obj })}\n`);
      }
    }
  }

  #record(req: Request, url: URL, code: number, body?: string): void {
    const q = url.search ? decodeURIComponent(url.search) : "";
    let line = `${req.method} ${url.pathname}${q} -> ${code}`;
    if (body) line += `\n  ${JSON.stringify(sortKeys(JSON.parse(body)))}`;
    this.#transcript.push(line);
  }

  #stream(onStart: (send: (s: string) => void, close: () => void) => () => void): Response {
    const enc = new TextEncoder();
    let cleanup = () => {};
    let ctl: ReadableStreamDefaultController<Uint8Array> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        ctl = c;
        this.#streams.add(c);
        const close = () => {
          cleanup();
          this.#streams.delete(c);
          try {
            c.close();
          } catch { /* closed */ }
        };
        cleanup = onStart((s) => {
          try {
            c.enqueue(enc.encode(s));
          } catch { /* closed */ }
        }, close);
      },
      cancel: () => {
        cleanup();
        if (ctl) this.#streams.delete(ctl);
      },
    });
    return new Response(body, { headers: { "content-type": "application/json" } });
  }

  readonly #backends = new Map<string, string>();

  /** Where the service proxy of Service `namespace/name` sends requests (a loopback URL). */
  setServiceBackend(namespace: string, name: string, url: string): void {
    this.#backends.set(`${namespace}/${name}`, url.replace(/\/$/, ""));
  }

  /** `/api/v1/namespaces/NS/services/NAME[:PORT]/proxy/PATH`: forwarded to the backend. */
  async #proxy(req: Request, url: URL, m: RegExpExecArray): Promise<Response> {
    const backend = this.#backends.get(`${m[1]}/${m[2]}`);
    const record = (code: number) =>
      this.#transcript.push(`${req.method} ${url.pathname}${url.search} -> ${code}`);
    if (!backend) {
      record(503);
      return Response.json(
        statusObject(503, "ServiceUnavailable", `no endpoints available for service "${m[2]}"`),
        { status: 503 },
      );
    }
    const headers = new Headers(req.headers);
    headers.delete("authorization");
    headers.delete("host");
    const res = await fetch(`${backend}${m[4] ?? "/"}${url.search}`, {
      method: req.method,
      headers,
      body: req.body,
    });
    record(res.status);
    return new Response(res.body, { status: res.status, headers: res.headers });
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const proxy = /^\/api\/v1\/namespaces\/([^/]+)\/services\/([^/:]+)(?::([^/]+))?\/proxy(\/.*)?$/
      .exec(url.pathname);
    if (proxy && req.headers.get("authorization") === `Bearer ${this.token}`) {
      return await this.#proxy(req, url, proxy);
    }
    const body = req.method === "GET" || req.method === "DELETE" ? "" : await req.text();
    const answer = (code: number, obj: unknown) => {
      this.#record(req, url, code, body || undefined);
      return Response.json(obj, { status: code });
    };
    if (req.headers.get("authorization") !== `Bearer ${this.token}`) {
      return answer(401, statusObject(401, "Unauthorized", "Unauthorized"));
    }
    const failure = this.#failures.findIndex((f) =>
      f.method === req.method && f.path.test(url.pathname) && f.skip-- <= 0
    );
    if (failure >= 0) {
      const f = this.#failures.splice(failure, 1)[0]!;
      return answer(f.code, statusObject(f.code, f.reason, f.msg));
    }
    const r = route(url.pathname);
    if (!r) {
      return answer(
        404,
        statusObject(404, "NotFound", "the server could not find the requested resource"),
      );
    }
    const details = (name?: string) => ({
      name,
      ...(r.group ? { group: r.group } : {}),
      kind: r.resource,
    });
    const gr = r.group ? `${r.resource}.${r.group}` : r.resource;
    const notFound = (name: string) =>
      answer(404, statusObject(404, "NotFound", `${gr} "${name}" not found`, details(name)));
    const nsMissing = r.namespace !== undefined &&
      !this.#objects.has(`/api/v1/namespaces/${r.namespace}`);
    const itemPath = `${r.collection}/${r.name}`;

    if (r.name === undefined) {
      if (req.method === "POST") {
        let obj: Obj;
        try {
          obj = JSON.parse(body) as Obj;
        } catch {
          return answer(400, statusObject(400, "BadRequest", "the body is not JSON"));
        }
        const name = obj.metadata?.name;
        if (!name) {
          return answer(
            422,
            statusObject(422, "Invalid", `${r.kind} is invalid: metadata.name: Required value`),
          );
        }
        if (nsMissing) {
          return answer(
            404,
            statusObject(404, "NotFound", `namespaces "${r.namespace}" not found`, {
              name: r.namespace,
              kind: "namespaces",
            }),
          );
        }
        const path = `${r.collection}/${name}`;
        if (this.#objects.has(path)) {
          return answer(
            409,
            statusObject(409, "AlreadyExists", `${gr} "${name}" already exists`, details(name)),
          );
        }
        obj.metadata = {
          ...obj.metadata,
          ...(r.namespace ? { namespace: r.namespace } : {}),
          uid: crypto.randomUUID(),
          creationTimestamp: new Date(0).toISOString(),
        };
        if (r.kind === "Pod") obj.status = { phase: "Pending" };
        this.#bump(obj);
        this.#objects.set(path, obj);
        this.#notify(path, "ADDED", obj);
        this.onCreate?.(r.kind, obj);
        return answer(201, obj);
      }
      if (req.method === "GET") {
        const selector = parseSelector(url.searchParams.get("labelSelector") ?? "");
        const items = [...this.#objects].filter(([k, o]) =>
          k.slice(0, k.lastIndexOf("/")) === r.collection && matches(o, selector)
        ).map(([, o]) => o);
        if (url.searchParams.get("watch") === "true") {
          this.#record(req, url, 200);
          const initial = url.searchParams.has("resourceVersion") ? [] : items;
          return this.#stream((send) => {
            for (const o of initial) send(`${JSON.stringify({ type: "ADDED", object: o })}\n`);
            const w = { collection: r.collection, selector, send };
            this.#watchers.add(w);
            return () => this.#watchers.delete(w);
          });
        }
        return answer(200, {
          kind: `${r.kind}List`,
          apiVersion: "v1",
          metadata: { resourceVersion: String(this.#version) },
          items,
        });
      }
      return answer(405, statusObject(405, "MethodNotAllowed", `${req.method} not allowed`));
    }

    if (r.sub === "log" && r.kind === "Pod" && req.method === "GET") {
      if (!this.#objects.has(itemPath)) return notFound(r.name);
      const key = `${r.namespace}/${r.name}`;
      let lines = this.#logs.get(key) ?? [];
      const tail = Number(url.searchParams.get("tailLines") ?? 0);
      if (tail > 0) lines = lines.slice(-tail);
      if (url.searchParams.get("follow") !== "true") {
        this.#record(req, url, 200);
        return new Response(lines.map((l) => `${l}\n`).join(""));
      }
      this.#record(req, url, 200);
      const phase = (this.#objects.get(itemPath)!.status as { phase?: string } | undefined)?.phase;
      const finished = phase === "Succeeded" || phase === "Failed";
      return this.#stream((send, close) => {
        for (const l of lines) send(`${l}\n`);
        if (finished) {
          queueMicrotask(close);
          return () => {};
        }
        const f = { key, send, close };
        this.#followers.add(f);
        return () => this.#followers.delete(f);
      });
    }
    if (r.sub !== undefined) return notFound(`${r.name}/${r.sub}`);

    const existing = this.#objects.get(itemPath);
    if (req.method === "GET") return existing ? answer(200, existing) : notFound(r.name);
    if (req.method === "DELETE") {
      if (!existing) return notFound(r.name);
      this.#objects.delete(itemPath);
      this.#notify(itemPath, "DELETED", existing);
      if (r.kind === "Pod") {
        for (const f of this.#followers) if (f.key === `${r.namespace}/${r.name}`) f.close();
      }
      return answer(200, existing);
    }
    if (req.method === "PUT" || req.method === "PATCH") {
      if (!existing) return notFound(r.name);
      const patch = JSON.parse(body) as Obj;
      const next = req.method === "PUT"
        ? { ...patch, metadata: { ...existing.metadata, ...patch.metadata } }
        : mergePatch(existing, patch) as Obj;
      this.#bump(next);
      this.#objects.set(itemPath, next);
      this.#notify(itemPath, "MODIFIED", next);
      return answer(200, next);
    }
    return answer(405, statusObject(405, "MethodNotAllowed", `${req.method} not allowed`));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const c of this.#streams) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    this.#streams.clear();
    this.#watchers.clear();
    this.#followers.clear();
    await this.#server.shutdown();
  }
}

function parseSelector(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(",").filter(Boolean)) {
    const [k, v] = part.split("=");
    out[k!] = v ?? "";
  }
  return out;
}

function matches(obj: Obj, selector: Record<string, string>): boolean {
  const labels = obj.metadata?.labels ?? {};
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== "object" || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    typeof target === "object" && target !== null && !Array.isArray(target)
      ? { ...target as Record<string, unknown> }
      : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (typeof v !== "object" || v === null) return v;
  return Object.fromEntries(
    Object.entries(v).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, sortKeys(x)]),
  );
}
