/**
 * Named endpoints registered by tasks (address + metadata), looked up by name or prefix.
 * An endpoint lives as long as the task attempt that registered it is active. Changes are
 * marked in `dirty` so the controller's store persists them with the job changes (store.ts).
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Endpoint, EndpointSchema } from "../rpc/gen/iris/v1/types_pb.ts";

/** The endpoint registry. */
export class EndpointTable {
  readonly #byId = new Map<string, Endpoint>();
  #next = 0;
  /** Ids of endpoints added or removed since the last persistence flush. */
  readonly dirty = new Set<string>();

  /** The number in the most recently issued endpoint id (ids are never reused). */
  get sequence(): number {
    return this.#next;
  }

  /** An endpoint by id. */
  get(endpointId: string): Endpoint | undefined {
    return this.#byId.get(endpointId);
  }

  /** Forgets which endpoints changed (a memory-only controller has nothing to write). */
  clearDirty(): void {
    this.dirty.clear();
  }

  /** Forgets every endpoint (before they are loaded again from the store). */
  clear(): void {
    this.#byId.clear();
    this.dirty.clear();
  }

  /** Reloads persisted endpoints (store.ts); new ids continue after `sequence`. */
  restore(endpoints: Iterable<Endpoint>, sequence: number): void {
    for (const e of endpoints) {
      this.#byId.set(e.endpointId, e);
      const n = Number(e.endpointId.replace(/^ep-/, ""));
      if (Number.isInteger(n)) this.#next = Math.max(this.#next, n);
    }
    this.#next = Math.max(this.#next, sequence);
  }

  /** Adds an endpoint; a task re-registering a name replaces its previous entry. */
  register(
    e: {
      name: string;
      address: string;
      taskId: string;
      jobId: string;
      metadata: Record<string, string>;
    },
  ): Endpoint {
    for (const [id, old] of this.#byId) {
      if (old.name === e.name && old.taskId === e.taskId) this.#remove(id);
    }
    const endpoint = create(EndpointSchema, { ...e, endpointId: `ep-${++this.#next}` });
    this.#byId.set(endpoint.endpointId, endpoint);
    this.dirty.add(endpoint.endpointId);
    return endpoint;
  }

  /** Removes one endpoint; false when unknown. */
  unregister(endpointId: string): boolean {
    return this.#remove(endpointId);
  }

  /** Removes every endpoint of a task. */
  removeTask(taskId: string): void {
    for (const [id, e] of this.#byId) if (e.taskId === taskId) this.#remove(id);
  }

  #remove(endpointId: string): boolean {
    if (!this.#byId.delete(endpointId)) return false;
    this.dirty.add(endpointId);
    return true;
  }

  /** Endpoints whose name starts with (or, when exact, equals) `prefix`, oldest first. */
  list(prefix: string, exact: boolean): Endpoint[] {
    return [...this.#byId.values()].filter((e) =>
      exact ? e.name === prefix : e.name.startsWith(prefix)
    );
  }
}
