/**
 * Hands out free loopback TCP ports from a range for tasks' named ports. The table lives in a
 * SharedArrayBuffer, so workers running in different Deno Workers of one process can share it.
 * @module
 */
import { InvalidArgumentError, ResourceExhaustedError } from "../errors.ts";

/** A port table that can be posted to another Deno Worker and reopened with {@linkcode PortAllocator.fromShared}. */
export interface SharedPortRange {
  /** Lowest port of the range. */
  readonly min: number;
  /** Highest port of the range. */
  readonly max: number;
  /** Address ports are checked on. */
  readonly hostname: string;
  /** Int32 slots: [0] = rotating cursor, [1 + i] = 1 when port `min + i` is handed out. */
  readonly buffer: SharedArrayBuffer;
}

/** Options for {@linkcode PortAllocator}. */
export interface PortAllocatorOptions {
  /** Lowest port handed out. @default 20000 (below Linux's ephemeral range) */
  min?: number;
  /** Highest port handed out. @default 29999 */
  max?: number;
  /** Address a port must be free on. @default "127.0.0.1" */
  hostname?: string;
}

/**
 * Allocates ports that are free right now (checked by binding), never handing the same port to
 * two holders until it is released. Safe to share between workers, also across Deno Workers.
 */
export class PortAllocator {
  /** Lowest port handed out. */
  readonly min: number;
  /** Highest port handed out. */
  readonly max: number;
  /** Address a port must be free on. */
  readonly hostname: string;
  readonly #buffer: SharedArrayBuffer;
  readonly #slots: Int32Array;

  /**
   * A new, empty port table, or (given a {@linkcode SharedPortRange}) a view of an existing one.
   * @throws {InvalidArgumentError} on a bad range or a buffer that does not match it
   */
  constructor(options: PortAllocatorOptions | SharedPortRange = {}) {
    const { min = 20000, max = 29999, hostname = "127.0.0.1" } = options;
    checkRange(min, max);
    const size = max - min + 1;
    const bytes = (size + 1) * Int32Array.BYTES_PER_ELEMENT;
    let buffer: SharedArrayBuffer;
    if ("buffer" in options) {
      buffer = options.buffer;
      if (buffer.byteLength !== bytes) {
        throw new InvalidArgumentError(
          "buffer",
          `does not match the port range ${min}-${max}: ${buffer.byteLength} bytes`,
        );
      }
    } else {
      buffer = new SharedArrayBuffer(bytes);
      // Start at a random place so two processes with their own tables rarely collide.
      new Int32Array(buffer)[0] = Math.floor(Math.random() * size);
    }
    this.min = min;
    this.max = max;
    this.hostname = hostname;
    this.#buffer = buffer;
    this.#slots = new Int32Array(buffer);
  }

  /** Reopens a table shared by another thread (posted from {@linkcode PortAllocator.shared}). */
  static fromShared(shared: SharedPortRange): PortAllocator {
    return new PortAllocator(shared);
  }

  /** The table, to post to another Deno Worker. */
  get shared(): SharedPortRange {
    return { min: this.min, max: this.max, hostname: this.hostname, buffer: this.#buffer };
  }

  /** Ports handed out and not yet released. */
  get inUse(): number {
    let n = 0;
    for (let i = 1; i < this.#slots.length; i++) n += Atomics.load(this.#slots, i);
    return n;
  }

  /**
   * A port free on `hostname` now and not held by anyone sharing this table.
   * @throws {ResourceExhaustedError} when every port of the range is taken
   */
  allocate(): number {
    const size = this.max - this.min + 1;
    for (let tries = 0; tries < size; tries++) {
      const index = ((Atomics.add(this.#slots, 0, 1) % size) + size) % size;
      if (Atomics.compareExchange(this.#slots, index + 1, 0, 1) !== 0) continue;
      const port = this.min + index;
      if (isBindable(this.hostname, port)) return port;
      Atomics.store(this.#slots, index + 1, 0);
    }
    throw new ResourceExhaustedError(
      `Cannot allocate a port as every port in ${this.min}-${this.max} is taken`,
    );
  }

  /**
   * One port per distinct name, all or nothing.
   * @throws {ResourceExhaustedError} when the range runs out (nothing stays allocated)
   */
  allocateNamed(names: readonly string[]): Record<string, number> {
    const out: Record<string, number> = {};
    try {
      for (const name of names) out[name] ??= this.allocate();
    } catch (err) {
      this.release(Object.values(out));
      throw err;
    }
    return out;
  }

  /**
   * Holds one given port (a port the controller chose, e.g. a gang's MASTER_PORT) so that no
   * other holder of this table gets it; false when another holder has it or it is bound on
   * `hostname` now. A port outside the range is only checked for being bindable.
   */
  reserve(port: number): boolean {
    if (!Number.isInteger(port) || port < 1 || port > 65535) return false;
    const inRange = port >= this.min && port <= this.max;
    if (inRange && Atomics.compareExchange(this.#slots, port - this.min + 1, 0, 1) !== 0) {
      return false;
    }
    if (isBindable(this.hostname, port)) return true;
    if (inRange) Atomics.store(this.#slots, port - this.min + 1, 0);
    return false;
  }

  /** Returns ports to the table. Releasing a port that is not held is a no-op. */
  release(ports: number | Iterable<number>): void {
    for (const port of typeof ports === "number" ? [ports] : ports) {
      if (port >= this.min && port <= this.max) Atomics.store(this.#slots, port - this.min + 1, 0);
    }
  }
}

/** The environment variable carrying a named port: `IRIS_PORT_<NAME>`, upper case, non-alphanumerics as `_`. */
export function portEnvName(name: string): string {
  return `IRIS_PORT_${name.toUpperCase().replace(/[^A-Z0-9]/g, "_")}`;
}

function checkRange(min: number, max: number): void {
  if (!Number.isInteger(min) || min < 1 || min > 65535) {
    throw new InvalidArgumentError(
      "min",
      `must be an integer port in 1..65535: current value is ${min}`,
    );
  }
  if (!Number.isInteger(max) || max < min || max > 65535) {
    throw new InvalidArgumentError(
      "max",
      `must be an integer port in ${min}..65535: current value is ${max}`,
    );
  }
}

function isBindable(hostname: string, port: number): boolean {
  try {
    Deno.listen({ hostname, port, transport: "tcp" }).close();
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse || err instanceof Deno.errors.PermissionDenied) {
      return false;
    }
    throw err;
  }
}
