/**
 * Named endpoints registered by tasks (address + metadata), looked up by name or prefix.
 * An endpoint lives as long as the task attempt that registered it is active.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Endpoint, EndpointSchema } from "../rpc/gen/iris/v1/types_pb.ts";

/** The endpoint registry. */
export class EndpointTable {
  readonly #byId = new Map<string, Endpoint>();
  #next = 0;

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
      if (old.name === e.name && old.taskId === e.taskId) this.#byId.delete(id);
    }
    const endpoint = create(EndpointSchema, { ...e, endpointId: `ep-${++this.#next}` });
    this.#byId.set(endpoint.endpointId, endpoint);
    return endpoint;
  }

  /** Removes one endpoint; false when unknown. */
  unregister(endpointId: string): boolean {
    return this.#byId.delete(endpointId);
  }

  /** Removes every endpoint of a task. */
  removeTask(taskId: string): void {
    for (const [id, e] of this.#byId) if (e.taskId === taskId) this.#byId.delete(id);
  }

  /** Endpoints whose name starts with (or, when exact, equals) `prefix`, oldest first. */
  list(prefix: string, exact: boolean): Endpoint[] {
    return [...this.#byId.values()].filter((e) =>
      exact ? e.name === prefix : e.name.startsWith(prefix)
    );
  }
}
