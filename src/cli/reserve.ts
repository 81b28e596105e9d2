/**
 * `--reserve` of `iris job run`: workers to hold for the job before its tasks start
 * (JobRequest.reservation; docs/priorities.md, Reservations).
 * @module
 */
import type { OptionSpec } from "./args.ts";
import { UsageError } from "./args.ts";
import type { ReservationInput } from "../client/mod.ts";
import { parseCpuMillicores, parseSizeBytes } from "../config/mod.ts";

/** The option's spec (repeatable). */
export const RESERVE_OPTION: OptionSpec = {
  type: "string",
  multiple: true,
  value: "N[:cpu=C,memory=M,tpu=V]",
  description:
    "Hold N workers for the job before its tasks start; each must cover one task (or the given cpu/memory/TPU variant). Repeatable",
};

/** Parses every `--reserve` value. @throws {UsageError} naming the flag and the bad part */
export function parseReserve(values: readonly string[]): ReservationInput[] {
  return values.map((raw) => {
    const bad = (why: string) =>
      new UsageError(`--reserve ${JSON.stringify(raw)}: ${why} (e.g. 2 or 1:cpu=8,memory=32GiB)`);
    const [countText, rest] = raw.split(":", 2) as [string, string | undefined];
    if (!/^\d+$/.test(countText) || Number(countText) < 1 || Number(countText) > 10_000) {
      throw bad("N must be a whole number 1..10000");
    }
    const out: {
      count: number;
      cpu?: number;
      memory?: number;
      accelerator?: ReservationInput["accelerator"];
    } = { count: Number(countText) };
    for (const part of rest ? rest.split(",") : []) {
      const [k, v] = part.split("=", 2);
      if (k === "cpu") {
        const m = parseCpuMillicores(v);
        if (m === undefined || m <= 0) throw bad(`cpu must be cores like 8 or 500m`);
        out.cpu = m / 1000;
      } else if (k === "memory") {
        const b = parseSizeBytes(v);
        if (b === undefined || b <= 0) throw bad(`memory must be a size like 32GiB`);
        out.memory = b;
      } else if (k === "tpu" && v) {
        out.accelerator = { kind: "tpu", variant: v };
      } else {
        throw bad(`unknown part ${JSON.stringify(part)} (cpu=, memory=, tpu=)`);
      }
    }
    return out;
  });
}
