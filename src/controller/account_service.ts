/**
 * Users and API keys (accounts.ts): GetCurrentUser, Create/List/RevokeApiKey, Create/List/
 * DeleteUser. Users manage their own keys; admins manage users and anyone's keys. With auth off
 * every caller is treated as an admin with no name.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import {
  type ApiKeyInfo,
  ApiKeyInfoSchema,
  type UserInfo,
  UserInfoSchema,
} from "../rpc/gen/iris/v1/controller_pb.ts";
import { InvalidArgumentError, NotFoundError, PermissionDeniedError } from "../errors.ts";
import {
  type AuthPolicy,
  bearerToken,
  checkUserName,
  PRINCIPAL,
  type Principal,
} from "../auth/mod.ts";
import type { ControllerCore } from "./core.ts";
import type { KeyRecord } from "./accounts.ts";

/** Longest key lifetime accepted (10 years). */
const MAX_TTL_MS = 10 * 365 * 24 * 3600 * 1000;

function keyInfo(c: ControllerCore, k: KeyRecord): ApiKeyInfo {
  return create(ApiKeyInfoSchema, {
    keyId: k.keyId,
    user: k.user,
    name: k.name,
    createdAtMs: k.createdAtMs,
    expiresAtMs: k.expiresAtMs,
    lastUsedMs: c.accounts.lastUsed(k.keyId),
  });
}

/** The handlers; `auth` gives the config's token users (bootstrap admins among them). */
export function accountHandlers(c: ControllerCore, auth: AuthPolicy | undefined) {
  const configUsers = new Map<string, "user" | "admin">();
  if (auth?.mode === "token") { for (const t of auth.tokens) configUsers.set(t.user, t.role); }
  const caller = (ctx: HandlerContext): Principal | undefined => ctx.values.get(PRINCIPAL);
  const isAdmin = (p: Principal | undefined) => !p || p.role === "admin";
  const requireAdmin = (p: Principal | undefined, what: string) => {
    if (!isAdmin(p)) {
      throw new PermissionDeniedError(`${p!.role} ${p!.user} may not ${what} (admins only)`);
    }
  };
  const userInfo = (user: string): UserInfo | undefined => {
    const rec = c.accounts.user(user);
    const role = rec?.role ?? configUsers.get(user);
    if (!role) return undefined;
    return create(UserInfoSchema, {
      user,
      role,
      source: rec ? "created" : "config",
      createdAtMs: rec?.createdAtMs ?? 0,
      keyCount: c.accounts.keys(user).length,
    });
  };
  return {
    getCurrentUser: (_req: unknown, ctx: HandlerContext) => {
      const p = caller(ctx);
      return {
        user: p?.user ?? "",
        role: p?.role ?? "admin",
        authMode: auth?.mode ?? "none",
        keyId: p?.keyId ?? "",
      };
    },
    createApiKey: (req: { user: string; name: string; ttlMs: number }, ctx: HandlerContext) => {
      const p = caller(ctx);
      if (p?.role === "worker") throw new PermissionDeniedError("workers may not create keys");
      const user = req.user || p?.user || "";
      if (!user) throw new InvalidArgumentError("user", "is required when auth is off");
      checkUserName("user", user);
      if (p && user !== p.user) requireAdmin(p, `create keys for ${user}`);
      if (req.name.length > 64) throw new InvalidArgumentError("name", "at most 64 characters");
      if (!Number.isFinite(req.ttlMs) || req.ttlMs < 0 || req.ttlMs > MAX_TTL_MS) {
        throw new InvalidArgumentError("ttl_ms", `must be 0 (no expiry) .. ${MAX_TTL_MS}`);
      }
      // The key's role: the user's record, else their config token's, else the caller's own
      // (a user's own key) or "user".
      const role = c.accounts.user(user)?.role ?? configUsers.get(user) ??
        (p && user === p.user && p.role === "admin" ? "admin" : "user");
      if (p && user !== p.user && !userInfo(user)) {
        throw new NotFoundError(`No user ${user} (create it with iris user create)`);
      }
      const now = c.clock.now();
      const { key, token } = c.accounts.createKey(
        user,
        req.name,
        role,
        now,
        req.ttlMs > 0 ? now + req.ttlMs : 0,
      );
      c.log(`API key ${key.keyId} created for ${user}${p ? ` by ${p.user}` : ""}`);
      return { key: keyInfo(c, key), token };
    },
    listApiKeys: (req: { user: string }, ctx: HandlerContext) => {
      const p = caller(ctx);
      const user = req.user || p?.user || "*";
      if (p && user !== p.user) requireAdmin(p, `list the keys of ${user}`);
      return { keys: c.accounts.keys(user === "*" ? undefined : user).map((k) => keyInfo(c, k)) };
    },
    revokeApiKey: (req: { keyId: string }, ctx: HandlerContext) => {
      const p = caller(ctx);
      const k = c.accounts.key(req.keyId);
      if (!k) throw new NotFoundError(`No API key ${JSON.stringify(req.keyId)}`);
      if (p && k.user !== p.user) requireAdmin(p, `revoke the keys of ${k.user}`);
      c.accounts.revokeKey(k.keyId);
      c.log(`API key ${k.keyId} of ${k.user} revoked${p ? ` by ${p.user}` : ""}`);
      return {};
    },
    createUser: (req: { user: string; role: string }, ctx: HandlerContext) => {
      requireAdmin(caller(ctx), "create users");
      checkUserName("user", req.user);
      const role = req.role || "user";
      if (role !== "user" && role !== "admin") {
        throw new InvalidArgumentError(
          "role",
          `must be user or admin (got ${JSON.stringify(role)})`,
        );
      }
      c.accounts.createUser(req.user, role, c.clock.now());
      return { user: userInfo(req.user) };
    },
    listUsers: () => {
      const names = new Set([...configUsers.keys(), ...c.accounts.users().map((u) => u.user)]);
      return { users: [...names].sort().map((u) => userInfo(u)!) };
    },
    enrolWorker: (req: { workerId: string }, ctx: HandlerContext) => {
      const p = caller(ctx);
      if (auth?.mode !== "token" || p?.role !== "enrolment") {
        throw new PermissionDeniedError("EnrolWorker needs an enrolment token (auth mode token)");
      }
      const token = bearerToken(ctx.requestHeader.get("authorization"));
      const why = c.accounts.enrolments.redeem(token, req.workerId, c.clock.now());
      if (why) throw new PermissionDeniedError(why);
      c.log(`worker ${req.workerId} enrolled (${p.user})`);
      return { workerToken: auth.workerToken };
    },
    deleteUser: (req: { user: string }, ctx: HandlerContext) => {
      requireAdmin(caller(ctx), "delete users");
      if (!c.accounts.user(req.user) && c.accounts.keys(req.user).length === 0) {
        throw new NotFoundError(
          configUsers.has(req.user)
            ? `${req.user} comes from the config's auth.tokens; remove it there`
            : `No user ${JSON.stringify(req.user)}`,
        );
      }
      return { revokedKeys: c.accounts.deleteUser(req.user) };
    },
  };
}
