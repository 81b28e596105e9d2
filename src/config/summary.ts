/**
 * Human summary of a cluster config for `iris cluster status`-style output: a header line for
 * the cluster and controller, then one aligned line per scale group.
 * @module
 */
import type {
  ClusterConfig,
  ControllerConfig,
  ScaleGroupConfig,
} from "../rpc/gen/iris/v1/config_pb.ts";
import { AcceleratorType } from "../rpc/gen/iris/v1/types_pb.ts";
import { groupVmsPerSlice } from "./defaults.ts";
import { formatConfigBytes, formatConfigDuration, formatCores } from "../format.ts";
import { labelPrefixOf } from "./load.ts";

function controllerText(controller: ControllerConfig | undefined): string {
  const kind = controller?.kind;
  switch (kind?.case) {
    case "local":
      return `local controller ${kind.value.host || "127.0.0.1"}:${kind.value.port || "auto"}`;
    case "gcp":
      return `gcp controller in ${kind.value.zone || "?"} (${
        kind.value.machineType || "?"
      }, port ${kind.value.port})`;
    case "manual":
      return `manual controller ${kind.value.host}:${kind.value.port}`;
    case "kubernetes":
      return `kubernetes controller (Deployment, port ${kind.value.port})`;
    default:
      return "no controller";
  }
}

function acceleratorText(group: ScaleGroupConfig): string {
  const type = AcceleratorType[group.acceleratorType]?.toLowerCase() ?? "cpu";
  const name = type === "unspecified" ? "cpu" : type;
  return group.acceleratorVariant ? `${name} ${group.acceleratorVariant}` : name;
}

function resourcesText(group: ScaleGroupConfig): string {
  const vm = group.vmResources;
  if (!vm) return "";
  const parts = [
    `cpu ${formatCores(vm.cpuMillicores)}`,
    `mem ${formatConfigBytes(vm.memoryBytes)}`,
  ];
  if (vm.diskBytes) parts.push(`disk ${formatConfigBytes(vm.diskBytes)}`);
  const count = vm.accelerator?.count ?? 0;
  if (count > 0) parts.push(`${acceleratorText(group).split(" ")[0]} ×${count}`);
  return parts.join(" ");
}

function placeText(group: ScaleGroupConfig): string {
  const parts: string[] = [];
  if (group.zone) parts.push(`zone ${group.zone}`);
  else if (group.region) parts.push(`region ${group.region}`);
  if (group.preemptible) parts.push("preemptible");
  return parts.join(" ");
}

/**
 * One header line (name, controller, label prefix), then one line per scale group:
 * name, provider, accelerator, slice bounds, VMs per slice, per-VM resources, priority,
 * cooldown/idle delay and placement.
 */
export function formatConfigSummary(config: ClusterConfig): string {
  const groups = Object.entries(config.scaleGroups);
  const header = `cluster ${config.name || "(unnamed)"}: ${controllerText(config.controller)}, ` +
    `label prefix ${labelPrefixOf(config)}, ${groups.length} scale group${
      groups.length === 1 ? "" : "s"
    }`;
  const rows = groups.map(([name, g]) => {
    const vms = groupVmsPerSlice(g);
    return [
      name,
      g.provider?.kind.case ?? "?",
      acceleratorText(g),
      `slices ${g.minSlices}..${g.maxSlices}`,
      `${vms} vm${vms === 1 ? "" : "s"}/slice`,
      resourcesText(g),
      `priority ${g.priority}`,
      `up ${formatConfigDuration(g.scaleUpCooldownMs)} down ${
        formatConfigDuration(g.scaleDownDelayMs)
      }`,
      placeText(g),
    ];
  });
  const widths = rows.reduce<number[]>(
    (w, row) => row.map((cell, i) => Math.max(w[i] ?? 0, cell.length)),
    [],
  );
  const lines = rows.map((row) =>
    "  " + row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ").trimEnd()
  );
  return [header, ...lines].join("\n");
}
