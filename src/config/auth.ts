/**
 * The `auth:` section of a cluster config, and its conversion to the controller's AuthPolicy.
 * Only token hashes live in the config; the worker token is read from a file or the environment
 * when the controller starts, never from the config text itself.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type AuthConfig,
  AuthConfigSchema,
  type AuthToken,
  AuthTokenSchema,
} from "../rpc/gen/iris/v1/config_pb.ts";
import type { AuthPolicy, RateLimit } from "../auth/mod.ts";
import { readTokenFile } from "../auth/mod.ts";
import { type ConnectionLimits, HTTP_TRANSPORTS, type HttpTransport } from "../rpc/mod.ts";
import { ms } from "../time.ts";
import { ConfigError } from "../errors.ts";
import { formatGot } from "./issues.ts";
import { type YamlMap, YamlReader } from "./reader.ts";
import { parse as parseYaml } from "yaml";

/** Keys of the auth section and its items. */
export const AUTH_KEYS = {
  auth: [
    "mode",
    "tokens",
    "worker_token_file",
    "launch_rate_limit",
    "max_request_size",
    "request_timeout",
    "header_timeout",
    "idle_timeout",
    "max_connections_per_client",
    "http_server",
  ],
  token: ["user", "role", "sha256"],
  rateLimit: ["per_second", "burst"],
} as const;

const USER = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** Parses `auth:` (absent means mode none), recording problems in `r`. */
export function parseAuth(root: YamlMap, r: YamlReader): AuthConfig | undefined {
  const m = r.child(root, "auth", "", AUTH_KEYS.auth, { nullIsEmpty: true });
  if (!m) return undefined;
  const mode = r.string(m, "mode", "auth", {
    pattern: /^(none|token)$/,
    patternHint: '"none" or "token"',
  }) ?? "none";
  const tokens: AuthToken[] = [];
  const seen = new Set<string>();
  if (Object.hasOwn(m, "tokens") && m.tokens !== null) {
    if (!Array.isArray(m.tokens)) {
      r.problem(
        "auth.tokens",
        `must be a list of {user, role, sha256} (got ${formatGot(m.tokens)})`,
      );
    } else {
      m.tokens.forEach((item: unknown, i) => {
        const path = `auth.tokens[${i}]`;
        const t = r.mapping(item, path, AUTH_KEYS.token);
        if (!t) return;
        for (const key of ["user", "sha256"]) {
          if (!Object.hasOwn(t, key)) r.problem(`${path}.${key}`, "required");
        }
        const user = r.string(t, "user", path, {
          pattern: USER,
          patternHint: "1..64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        });
        const role = r.string(t, "role", path, {
          pattern: /^(user|admin)$/,
          patternHint: '"user" or "admin"',
        }) ?? "user";
        const sha256 = r.string(t, "sha256", path, {
          pattern: SHA256,
          patternHint: "64 lower-case hex digits (iris auth hash-token)",
        });
        if (sha256 && seen.has(sha256)) r.problem(`${path}.sha256`, "duplicate token hash");
        if (user && sha256) {
          seen.add(sha256);
          tokens.push(create(AuthTokenSchema, { user, role, sha256 }));
        }
      });
    }
  }
  if (
    mode === "token" && r.present.has("auth.mode") && tokens.length === 0 &&
    !r.issues.list.some((i) => i.path.startsWith("auth.tokens"))
  ) {
    r.problem("auth.tokens", 'required with mode "token" (at least one token)');
  }
  const rate = r.child(m, "launch_rate_limit", "auth", AUTH_KEYS.rateLimit);
  let perSecond = 0;
  let burst = 0;
  if (rate) {
    const p = "auth.launch_rate_limit";
    const v = rate.per_second;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || v > 1e6) {
      r.problem(`${p}.per_second`, `must be a number in (0, 1000000] (got ${formatGot(v)})`);
    } else perSecond = v;
    burst = r.integer(rate, "burst", p, { min: 1, max: 1_000_000 }) ?? 0;
  }
  return create(AuthConfigSchema, {
    mode,
    tokens,
    workerTokenFile: r.string(m, "worker_token_file", "auth", { nonEmpty: true }) ?? "",
    launchRatePerSecond: perSecond,
    launchBurst: burst,
    maxRequestBytes: r.size(m, "max_request_size", "auth", { positive: true }) ?? 0,
    requestTimeoutMs: r.duration(m, "request_timeout", "auth", { positive: true }) ?? 0,
    headerTimeoutMs: r.duration(m, "header_timeout", "auth", { positive: true }) ?? 0,
    idleTimeoutMs: r.duration(m, "idle_timeout", "auth", { positive: true }) ?? 0,
    maxConnectionsPerClient: r.integer(m, "max_connections_per_client", "auth", {
      min: 0,
      max: 1_000_000,
    }),
    httpServer: r.string(m, "http_server", "auth", {
      pattern: /^(iris|deno|node)$/,
      patternHint: '"iris", "deno" or "node"',
    }) ?? "",
  });
}

/** The connection limits an `auth` section sets (unset keys keep serveRpc's defaults). */
function connectionLimits(auth: AuthConfig | undefined): ConnectionLimits | undefined {
  const out: ConnectionLimits = {};
  if (!auth) return undefined;
  if (auth.requestTimeoutMs > 0) out.requestTimeout = ms(auth.requestTimeoutMs);
  if (auth.headerTimeoutMs > 0) out.headersTimeout = ms(auth.headerTimeoutMs);
  if (auth.idleTimeoutMs > 0) out.idleTimeout = ms(auth.idleTimeoutMs);
  if ((HTTP_TRANSPORTS as readonly string[]).includes(auth.httpServer)) {
    out.transport = auth.httpServer as HttpTransport;
  }
  if (auth.maxConnectionsPerClient !== undefined) {
    out.maxConnectionsPerClient = auth.maxConnectionsPerClient;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Where the worker token comes from when the config names no file. */
export interface WorkerTokenSources {
  /** IRIS_WORKER_TOKEN's value, if set. */
  readonly env?: string;
  /** IRIS_WORKER_TOKEN_FILE's value, if set. */
  readonly envFile?: string;
}

/**
 * The worker token: IRIS_WORKER_TOKEN, else the file IRIS_WORKER_TOKEN_FILE, else `fileFlag`
 * (a `--worker-token-file` or `auth.worker_token_file`), else undefined.
 */
export function resolveWorkerToken(
  fileFlag: string | undefined,
  sources: WorkerTokenSources,
): string | undefined {
  if (sources.env) return sources.env.trim();
  const file = sources.envFile || fileFlag;
  return file ? readTokenFile("worker_token_file", file) : undefined;
}

/** IRIS_WORKER_TOKEN / IRIS_WORKER_TOKEN_FILE from the process environment. */
export function workerTokenEnv(): WorkerTokenSources {
  return {
    env: Deno.env.get("IRIS_WORKER_TOKEN"),
    envFile: Deno.env.get("IRIS_WORKER_TOKEN_FILE"),
  };
}

/** What the controller runs with: the policy and the request limits. */
export interface ControllerAuth {
  readonly policy: AuthPolicy;
  readonly launchRateLimit?: RateLimit;
  readonly maxRequestBytes?: number;
  /** Header, request (body) and idle timeouts and the per-client connection cap. */
  readonly connectionLimits?: ConnectionLimits;
}

/**
 * The controller's policy for a parsed `auth` section. Mode "token" needs the worker token
 * (`auth.worker_token_file` or the environment); the file's content never appears in errors.
 * @throws {ConfigError} on a token mode without a worker token
 */
export function controllerAuth(
  auth: AuthConfig | undefined,
  sources: WorkerTokenSources = {},
): ControllerAuth {
  const limits = {
    launchRateLimit: auth && auth.launchRatePerSecond > 0
      ? {
        perSecond: auth.launchRatePerSecond,
        burst: auth.launchBurst || Math.max(1, Math.ceil(auth.launchRatePerSecond)),
      }
      : undefined,
    maxRequestBytes: auth?.maxRequestBytes || undefined,
    ...(connectionLimits(auth) ? { connectionLimits: connectionLimits(auth) } : {}),
  };
  if (!auth || auth.mode !== "token") return { policy: { mode: "none" }, ...limits };
  let workerToken: string | undefined;
  try {
    workerToken = resolveWorkerToken(auth.workerTokenFile || undefined, sources);
  } catch (err) {
    throw new ConfigError(
      "auth.worker_token_file",
      err instanceof Error ? err.message : "unreadable",
    );
  }
  if (!workerToken) {
    throw new ConfigError(
      "auth.worker_token_file",
      'required with mode "token" (or set IRIS_WORKER_TOKEN / IRIS_WORKER_TOKEN_FILE)',
    );
  }
  return {
    policy: {
      mode: "token",
      tokens: auth.tokens.map((t) => ({
        sha256: t.sha256,
        user: t.user,
        role: t.role === "admin" ? "admin" : "user",
      })),
      workerToken,
    },
    ...limits,
  };
}

/**
 * Parses a YAML document holding only an `auth:` section (for `iris controller serve
 * --auth-config` without a cluster config).
 * @throws {ConfigValidationError} listing every problem
 */
export function parseAuthDocument(text: string, source?: string): AuthConfig {
  const r = new YamlReader();
  let tree: unknown;
  try {
    tree = parseYaml(text);
  } catch (err) {
    r.problem("", `YAML syntax error: ${err instanceof Error ? err.message.split("\n")[0] : err}`);
    r.issues.throwIfAny(source);
  }
  const root = r.mapping(tree ?? {}, "", ["auth"]);
  const auth = root ? parseAuth(root, r) : undefined;
  r.issues.throwIfAny(source);
  return auth ?? create(AuthConfigSchema, { mode: "none" });
}
