/**
 * SetUserBudget, GetUserBudget and ListUserBudgets: per-user budgets (accounts.ts) and what each
 * user's active tasks hold against them. Setting needs the admin role (when auth is on).
 * @module
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { type UserBudgetInfo, UserBudgetInfoSchema } from "../rpc/gen/iris/v1/controller_pb.ts";
import { PriorityBand } from "../rpc/gen/iris/v1/types_pb.ts";
import { InvalidArgumentError, PermissionDeniedError } from "../errors.ts";
import { PRINCIPAL } from "../auth/mod.ts";
import type { ControllerCore } from "./core.ts";
import type { UserBudgetRecord, UserUsage } from "./accounts.ts";
import { resourceBudget, type UserBudget } from "./budgets.ts";
import { bandOrUndefined } from "../types.ts";

/** A user name as budgets take it: 1..128 characters, no whitespace, not "*". */
const USER = /^[^\s*]{1,128}$/;

function info(user: string, rec: UserBudgetRecord | undefined, usage?: UserUsage): UserBudgetInfo {
  const b = rec?.budget;
  return create(UserBudgetInfoSchema, {
    user,
    maxTasks: b?.maxTasks ?? 0,
    maxBand: b?.maxBand ?? PriorityBand.UNSPECIFIED,
    maxCpuMillicores: b?.resources?.cpuMillicores ?? 0,
    maxMemoryBytes: b?.resources?.memoryBytes ?? 0,
    maxAccelerators: b?.resources?.accelerators ?? 0,
    source: rec?.source ?? "",
    usedCpuMillicores: usage?.cpuMillicores ?? 0,
    usedMemoryBytes: usage?.memoryBytes ?? 0,
    usedAccelerators: usage?.accelerators ?? 0,
    activeTasks: usage?.tasks ?? 0,
    activeBatchTasks: usage?.batchTasks ?? 0,
  });
}

/** Checks a budget from the wire. @throws {InvalidArgumentError} naming the field */
export function budgetFromInfo(b: UserBudgetInfo | undefined): {
  user: string;
  budget: Omit<UserBudget, "users">;
} {
  if (!b) throw new InvalidArgumentError("budget", "is required");
  if (!USER.test(b.user)) {
    throw new InvalidArgumentError(
      "budget.user",
      `must be a user name (1-128 characters, no spaces, not "*"); got ${JSON.stringify(b.user)}`,
    );
  }
  const nonNegative = (field: string, v: number) => {
    if (!Number.isFinite(v) || v < 0) {
      throw new InvalidArgumentError(`budget.${field}`, `must be ≥ 0 (0 = unlimited); got ${v}`);
    }
  };
  nonNegative("max_tasks", b.maxTasks);
  nonNegative("max_cpu_millicores", b.maxCpuMillicores);
  nonNegative("max_memory_bytes", b.maxMemoryBytes);
  nonNegative("max_accelerators", b.maxAccelerators);
  if (!(b.maxBand in PriorityBand)) {
    throw new InvalidArgumentError("budget.max_band", `unknown band ${b.maxBand}`);
  }
  return {
    user: b.user,
    budget: {
      maxTasks: b.maxTasks > 0 ? b.maxTasks : undefined,
      maxBand: bandOrUndefined(b.maxBand),
      resources: resourceBudget(b.maxCpuMillicores, b.maxMemoryBytes, b.maxAccelerators),
    },
  };
}

/** The three budget handlers of ControllerService. */
export function budgetHandlers(c: ControllerCore) {
  return {
    setUserBudget: (req: { budget?: UserBudgetInfo }, ctx: HandlerContext) => {
      const principal = ctx.values.get(PRINCIPAL);
      if (principal && principal.role !== "admin") {
        throw new PermissionDeniedError(
          `${principal.role} ${principal.user} may not set budgets (admins only)`,
        );
      }
      const { user, budget } = budgetFromInfo(req.budget);
      const rec = c.accounts.setBudget(user, budget);
      c.log(`budget of ${user} set${principal ? ` by ${principal.user}` : ""}`);
      c.requestSchedule();
      return { budget: info(user, rec, c.usageByUser().get(user)) };
    },
    getUserBudget: (req: { user: string }, ctx: HandlerContext) => {
      const user = req.user || ctx.values.get(PRINCIPAL)?.user || "";
      if (!user) throw new InvalidArgumentError("user", "is required when auth is off");
      return { budget: info(user, c.accounts.get(user), c.usageByUser().get(user)) };
    },
    listUserBudgets: () => {
      const usage = c.usageByUser();
      const recs = c.accounts.list();
      const named = new Set(recs.map((r) => r.user));
      // Users with active tasks and no budget of their own are listed with the one that applies.
      const extra = [...usage.keys()].filter((u) => !named.has(u)).sort();
      return {
        budgets: [
          ...recs.map((r) => info(r.user, r, usage.get(r.user))),
          ...extra.map((u) => info(u, c.accounts.get(u), usage.get(u))),
        ],
      };
    },
  };
}
