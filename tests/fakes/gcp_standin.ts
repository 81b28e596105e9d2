/**
 * A stand-in for the two Google endpoints Iris calls from a VM, on loopback: the GCE metadata
 * server (service-account token, instance attributes) and the GCS JSON API (media upload,
 * object metadata, media download). It CHECKS every request against the public references
 * (method, path, query, `Metadata-Flavor: Google`, `Authorization: Bearer <a token it issued>`),
 * records each violation, and keeps uploaded objects in memory.
 * @module
 */

/** One request as seen by the stand-in. */
export interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly query: string;
}

/** Options for {@linkcode startGcpStandIn}. */
export interface GcpStandInOptions {
  /** `instance/attributes/<key>` values (e.g. `accelerator-type`). */
  readonly attributes?: Record<string, string>;
  /** `expires_in` of issued tokens, in seconds. @default 3600 */
  readonly tokenLifetimeSeconds?: number;
  /** The bucket that exists; requests for others get 404. */
  readonly bucket?: string;
}

/** A running stand-in. */
export interface GcpStandIn extends AsyncDisposable {
  /** Base URL for both the metadata server and the GCS API. */
  readonly url: string;
  /** `host:port`, the form GCE_METADATA_HOST takes. */
  readonly host: string;
  readonly objects: Map<string, Uint8Array>;
  readonly requests: SeenRequest[];
  /** Problems with requests; a test asserts this stays empty. */
  readonly violations: string[];
  /** Tokens issued so far. */
  readonly tokensIssued: () => number;
  /** Answers the next GCS request with this HTTP status (once). */
  failNext(status: number): void;
  /** Revokes every token issued so far: requests with them get 401 (not a violation). */
  revokeTokens(): void;
}

/** Starts the stand-in on 127.0.0.1 (a free port). */
export function startGcpStandIn(options: GcpStandInOptions = {}): GcpStandIn {
  const objects = new Map<string, Uint8Array>();
  const requests: SeenRequest[] = [];
  const violations: string[] = [];
  const tokens = new Set<string>();
  const revoked = new Set<string>();
  let failNext = 0;
  const bucket = options.bucket ?? "iris-test-bucket";
  const bad = (what: string, status = 400) => {
    violations.push(what);
    return new Response(JSON.stringify({ error: { code: status, message: what } }), { status });
  };
  const handler = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    // The raw path: object names are URL-encoded into one segment.
    const rawPath = url.pathname;
    requests.push({ method: req.method, path: rawPath, query: url.search });
    if (rawPath.startsWith("/computeMetadata/v1/")) {
      if (req.headers.get("Metadata-Flavor") !== "Google") {
        return bad(`${req.method} ${rawPath} without "Metadata-Flavor: Google"`, 403);
      }
      if (req.method !== "GET") return bad(`${req.method} ${rawPath}: metadata is GET only`, 405);
      const key = rawPath.slice("/computeMetadata/v1/".length);
      if (key === "instance/service-accounts/default/token") {
        const token = `ya29.standin-${tokens.size + revoked.size + 1}`;
        tokens.add(token);
        return Response.json({
          access_token: token,
          expires_in: options.tokenLifetimeSeconds ?? 3600,
          token_type: "Bearer",
        });
      }
      const attr = /^instance\/attributes\/([^/]+)$/.exec(key);
      const value = attr ? options.attributes?.[attr[1]!] : undefined;
      return value === undefined
        ? new Response("not found\n", { status: 404 })
        : new Response(value, { headers: { "Content-Type": "application/text" } });
    }
    const auth = req.headers.get("Authorization") ?? "";
    const token = /^Bearer (\S+)$/.exec(auth)?.[1];
    if (token && revoked.has(token)) {
      await req.body?.cancel();
      return new Response(JSON.stringify({ error: { code: 401, message: "revoked" } }), {
        status: 401,
      });
    }
    if (!token || !tokens.has(token)) {
      return bad(`${req.method} ${rawPath}: Authorization is ${JSON.stringify(auth)}`, 401);
    }
    if (failNext) {
      const status = failNext;
      failNext = 0;
      await req.body?.cancel();
      return new Response(JSON.stringify({ error: { code: status, message: "injected" } }), {
        status,
      });
    }
    const upload = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(rawPath);
    if (upload) {
      if (req.method !== "POST") return bad(`${req.method} ${rawPath}: uploads are POST`, 405);
      if (url.searchParams.get("uploadType") !== "media") {
        return bad(`upload without uploadType=media (query ${url.search})`);
      }
      const name = url.searchParams.get("name");
      if (!name) return bad(`upload without a name (query ${url.search})`);
      if (decodeURIComponent(upload[1]!) !== bucket) {
        return new Response("no such bucket", { status: 404 });
      }
      const data = new Uint8Array(await req.arrayBuffer());
      objects.set(name, data);
      return Response.json({ kind: "storage#object", bucket, name, size: String(data.length) });
    }
    const object = /^\/storage\/v1\/b\/([^/]+)\/o\/([^/]+)$/.exec(rawPath);
    if (object) {
      if (req.method !== "GET") return bad(`${req.method} ${rawPath}: expected GET`, 405);
      const alt = url.searchParams.get("alt");
      if (alt !== null && alt !== "media") return bad(`unexpected alt=${alt}`);
      const name = decodeURIComponent(object[2]!);
      const data = decodeURIComponent(object[1]!) === bucket ? objects.get(name) : undefined;
      if (!data) return new Response("No such object", { status: 404 });
      return alt === "media"
        ? new Response(data as Uint8Array<ArrayBuffer>)
        : Response.json({ kind: "storage#object", bucket, name, size: String(data.length) });
    }
    return bad(`unexpected ${req.method} ${rawPath}${url.search}`, 404);
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const host = `127.0.0.1:${server.addr.port}`;
  return {
    url: `http://${host}`,
    host,
    objects,
    requests,
    violations,
    tokensIssued: () => tokens.size + revoked.size,
    failNext: (status) => failNext = status,
    revokeTokens: () => {
      for (const t of tokens) revoked.add(t);
      tokens.clear();
    },
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}
