/**
 * `iris user budget get|set|list`: per-user budgets (resources of active tasks above BATCH,
 * unfinished-task count, highest band) and what each user holds against them. Setting needs an
 * admin token when the cluster has auth.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type UserBudgetInfo, UserBudgetInfoSchema } from "../rpc/gen/iris/v1/controller_pb.ts";
import { PriorityBand } from "../rpc/gen/iris/v1/types_pb.ts";
import { type CommandSpec, formatBytes, str, table, UsageError } from "./args.ts";
import { cliClient, CONTROLLER_OPTION, TOKEN_FILE_OPTION } from "./job.ts";
import { parseCpuMillicores, parseSizeBytes } from "../config/mod.ts";
import { formatCores } from "../format.ts";

const BANDS: Record<string, PriorityBand> = {
  production: PriorityBand.PRODUCTION,
  interactive: PriorityBand.INTERACTIVE,
  batch: PriorityBand.BATCH,
};

const bandText = (b: PriorityBand) => Object.entries(BANDS).find(([, v]) => v === b)?.[0] ?? "any";

const limit = (used: string, max: number, text: string) =>
  max > 0 ? `${used}/${text}` : `${used}/-`;

/** One row per budget: user, source, CPU, memory, accelerators (used/max), tasks, band. */
export function budgetRows(list: readonly UserBudgetInfo[]): string {
  return table(
    ["USER", "SOURCE", "CPU", "MEMORY", "ACCELERATORS", "ACTIVE", "BATCH", "MAX_TASKS", "MAX_BAND"],
    list.map((b) => [
      b.user,
      b.source || "-",
      limit(
        formatCores(b.usedCpuMillicores),
        b.maxCpuMillicores,
        formatCores(b.maxCpuMillicores),
      ),
      limit(formatBytes(b.usedMemoryBytes), b.maxMemoryBytes, formatBytes(b.maxMemoryBytes)),
      limit(String(b.usedAccelerators), b.maxAccelerators, String(b.maxAccelerators)),
      String(b.activeTasks),
      String(b.activeBatchTasks),
      b.maxTasks ? String(b.maxTasks) : "-",
      bandText(b.maxBand),
    ]),
  );
}

const common = { controller: CONTROLLER_OPTION, "token-file": TOKEN_FILE_OPTION };

const getCommand: CommandSpec = {
  name: "user budget get",
  summary: "Show a user's budget and usage (default: yourself).",
  usage: "user budget get [USER]",
  positionals: { min: 0, max: 1, names: "USER" },
  options: common,
  examples: ["iris user budget get alice"],
  async run(p, io) {
    const client = cliClient(p);
    const res = await client.call((rpc) => rpc.getUserBudget({ user: p.positionals[0] ?? "" }));
    io.out(budgetRows(res.budget ? [res.budget] : []));
    return 0;
  },
};

const listCommand: CommandSpec = {
  name: "user budget list",
  summary: "List budgets and every active user's usage against theirs.",
  usage: "user budget list",
  options: common,
  examples: ["iris user budget list"],
  async run(p, io) {
    const res = await cliClient(p).call((rpc) => rpc.listUserBudgets({}));
    io.out(budgetRows(res.budgets));
    return 0;
  },
};

const setCommand: CommandSpec = {
  name: "user budget set",
  summary: "Replace a user's budget (admins only). Unset limits are unlimited.",
  usage:
    "user budget set USER [--cpu N] [--memory SIZE] [--accelerators N] [--max-tasks N] [--max-band BAND]",
  description:
    "CPU, memory and accelerators limit what the user's INTERACTIVE/PRODUCTION tasks hold at once; " +
    "checked every scheduling pass, tasks beyond them run as BATCH. --max-tasks and --max-band " +
    "apply when a job is submitted. The budget is kept across controller restarts.",
  positionals: { min: 1, max: 1, names: "USER" },
  options: {
    ...common,
    cpu: { type: "string", value: "N", description: "CPU cores (e.g. 8, 0.5, 500m)" },
    memory: { type: "string", value: "SIZE", description: "Memory (e.g. 64GiB)" },
    accelerators: { type: "string", value: "N", description: "Accelerator chips/devices" },
    "max-tasks": { type: "string", value: "N", description: "Unfinished tasks above BATCH" },
    "max-band": {
      type: "string",
      value: "BAND",
      description: "Highest band: production, interactive or batch",
    },
  },
  examples: ["iris user budget set alice --cpu 64 --memory 256GiB --accelerators 8"],
  async run(p, io) {
    const user = p.positionals[0]!;
    const count = (name: string) => {
      const raw = str(p, name);
      if (raw === undefined) return 0;
      if (!/^\d+$/.test(raw)) {
        throw new UsageError(`--${name} must be a whole number ≥ 0 (got ${JSON.stringify(raw)})`);
      }
      return Number(raw);
    };
    const cpuRaw = str(p, "cpu");
    const cpu = cpuRaw === undefined ? 0 : parseCpuMillicores(cpuRaw);
    if (cpu === undefined) {
      throw new UsageError(
        `--cpu must be cores like 8, 0.5 or 500m (got ${JSON.stringify(cpuRaw)})`,
      );
    }
    const memRaw = str(p, "memory");
    const memory = memRaw === undefined ? 0 : parseSizeBytes(memRaw);
    if (memory === undefined) {
      throw new UsageError(`--memory must be a size like 64GiB (got ${JSON.stringify(memRaw)})`);
    }
    const bandRaw = str(p, "max-band");
    const band = bandRaw === undefined ? PriorityBand.UNSPECIFIED : BANDS[bandRaw.toLowerCase()];
    if (band === undefined) {
      throw new UsageError(
        `--max-band must be one of ${Object.keys(BANDS).join(", ")} (got ${
          JSON.stringify(bandRaw)
        })`,
      );
    }
    const budget = create(UserBudgetInfoSchema, {
      user,
      maxCpuMillicores: cpu,
      maxMemoryBytes: memory,
      maxAccelerators: count("accelerators"),
      maxTasks: count("max-tasks"),
      maxBand: band,
    });
    const res = await cliClient(p).call((rpc) => rpc.setUserBudget({ budget }));
    io.out(budgetRows(res.budget ? [res.budget] : []));
    return 0;
  },
};

/** The `iris user …` commands. */
export const userCommands: readonly CommandSpec[] = [getCommand, setCommand, listCommand];
