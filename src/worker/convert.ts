/**
 * The worker's proto↔domain mapping: its resources and attributes as the controller receives them
 * at registration (the attribute map's wire form is shared with the controller, src/rpc).
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  AcceleratorSchema,
  AcceleratorType,
  type Resources,
  ResourcesSchema,
} from "../rpc/gen/iris/v1/types_pb.ts";
import type { WorkerResources } from "./host.ts";

export { attributesFromProto, attributesToProto } from "../rpc/mod.ts";

/** The proto form of a worker's resources. */
export function resourcesToProto(r: WorkerResources): Resources {
  const acc = r.accelerator;
  return create(ResourcesSchema, {
    cpuMillicores: r.cpuMillicores,
    memoryBytes: r.memoryBytes,
    accelerator: acc && acc.kind !== "cpu"
      ? create(AcceleratorSchema, {
        type: acc.kind === "tpu" ? AcceleratorType.TPU : AcceleratorType.GPU,
        variant: acc.variant,
        count: acc.count,
      })
      : undefined,
  });
}
