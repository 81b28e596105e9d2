/**
 * What a worker offers and how busy it is: resource detection and the CPU meter behind heartbeat
 * snapshots (their proto form is in convert.ts).
 * @module
 */
import { InvalidArgumentError } from "../errors.ts";
import type { AcceleratorSpec } from "../types.ts";

/** What a worker offers to tasks. */
export interface WorkerResources {
  /** CPU in thousandths of a core. */
  readonly cpuMillicores: number;
  /** Memory in bytes. */
  readonly memoryBytes: number;
  /** Accelerators of the VM. @default none (a CPU worker) */
  readonly accelerator?: AcceleratorSpec;
}

/**
 * Fills in what `given` leaves out from the machine: cores from navigator.hardwareConcurrency,
 * memory from Deno.systemMemoryInfo() (which needs --allow-sys=systemMemoryInfo).
 * @throws {InvalidArgumentError} when memory must be detected but may not be read
 */
export function detectResources(given: Partial<WorkerResources> = {}): WorkerResources {
  const cpuMillicores = given.cpuMillicores ??
    Math.max(1, navigator.hardwareConcurrency || 1) * 1000;
  let memoryBytes = given.memoryBytes;
  if (memoryBytes === undefined) {
    try {
      memoryBytes = Deno.systemMemoryInfo().total;
    } catch (err) {
      throw new InvalidArgumentError(
        "resources.memoryBytes",
        `must be given when system memory cannot be read: ${
          err instanceof Error ? err.message : String(err)
        }`,
      );
    }
  }
  if (!(cpuMillicores > 0)) {
    throw new InvalidArgumentError(
      "resources.cpuMillicores",
      `must be > 0: current value is ${cpuMillicores}`,
    );
  }
  if (!(memoryBytes > 0)) {
    throw new InvalidArgumentError(
      "resources.memoryBytes",
      `must be > 0: current value is ${memoryBytes}`,
    );
  }
  return { cpuMillicores, memoryBytes, accelerator: given.accelerator };
}

/**
 * CPU use of the worker's tasks as a percentage of the worker's cores, from the growth of each
 * attempt's cumulative CPU time between two readings.
 */
export class CpuMeter {
  readonly #cores: number;
  #last = new Map<string, number>();
  #lastAt = performance.now();
  #percent = 0;
  #perTask = new Map<string, number>();

  /** A meter for a worker with `cpuMillicores` of CPU. */
  constructor(cpuMillicores: number) {
    this.#cores = Math.max(0.001, cpuMillicores / 1000);
  }

  /**
   * Percent of the cores used since the previous reading, given attempt key → cumulative CPU
   * seconds. CPU times have 1 s resolution, so readings less than 2 s apart repeat the last value.
   */
  read(usage: ReadonlyMap<string, number>): number {
    const now = performance.now();
    const wallSeconds = (now - this.#lastAt) / 1000;
    if (wallSeconds < 2) return this.#percent;
    let used = 0;
    const perTask = new Map<string, number>();
    for (const [key, cpu] of usage) {
      const delta = Math.max(0, cpu - (this.#last.get(key) ?? cpu));
      used += delta;
      perTask.set(key, Math.round((1000 * delta) / wallSeconds));
    }
    this.#perTask = perTask;
    this.#last = new Map(usage);
    this.#lastAt = now;
    this.#percent = Math.min(100, (100 * used) / wallSeconds / this.#cores);
    return this.#percent;
  }

  /** Millicores one attempt (by attempt key) used between the last two readings; 0 if unknown. */
  taskMillicores(key: string): number {
    return this.#perTask.get(key) ?? 0;
  }
}
