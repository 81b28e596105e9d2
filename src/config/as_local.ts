/**
 * "Run any config locally": the local variant of a gcp or manual config, for trying it on a
 * laptop (`iris cluster start --config gcp.yaml --as-local`). The scale groups stay the same
 * (names, accelerators, slice bounds, priorities, zones and regions, attributes); what only makes
 * sense on the real platform is replaced: the controller runs in-process on a free port, every
 * group uses the local provider, each local worker advertises a share of this machine instead of
 * the cloud VM's size, bundles are stored by the local controller, and the remote state dir and
 * platform settings are dropped. Every change is listed, so the CLI can say what it did.
 * @module
 */
import { gpuMachine } from "./gce_machines.ts";
import type { ClusterConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import { ConfigError } from "../errors.ts";
import {
  parseConfigObject,
  type ParseConfigOptions,
  parseConfigYaml,
  readConfigText,
} from "./load.ts";
import { CONTROLLER_KINDS } from "./parse.ts";

/** A config converted to local, and what was changed. */
export interface LocalVariant {
  readonly config: ClusterConfig;
  /** The config's own mode before the conversion. */
  readonly from: string;
  /** One line per change, e.g. `scale_groups.tpu-v5e-16.provider: tpu → local`. */
  readonly changes: readonly string[];
}

type Tree = Record<string, unknown>;

function isMap(v: unknown): v is Tree {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

/**
 * The local variant of a config tree (snake_case keys, as parsed from YAML). The input is not
 * modified. A local config comes back unchanged.
 */
export function localVariantTree(
  tree: unknown,
): { tree: unknown; from: string; changes: string[] } {
  if (!isMap(tree) || !isMap(tree.controller)) return { tree, from: "?", changes: [] };
  const out = structuredClone(tree) as Tree;
  const controller = out.controller as Tree;
  const from = CONTROLLER_KINDS.find((k) => Object.hasOwn(controller, k)) ?? "?";
  const changes: string[] = [];
  if (from === "local") return { tree: out, from, changes };

  for (const kind of CONTROLLER_KINDS) {
    if (kind !== "local" && Object.hasOwn(controller, kind)) {
      changes.push(`controller.${kind} → controller.local (in this process, on a free port)`);
      delete controller[kind];
    }
  }
  controller.local = { port: 0 };
  if (Object.hasOwn(controller, "bundle_prefix")) {
    changes.push(
      `controller.bundle_prefix ${show(controller.bundle_prefix)} dropped: ` +
        "the local controller stores bundles itself",
    );
    delete controller.bundle_prefix;
  }
  if (Object.hasOwn(controller, "state_dir")) {
    changes.push(`controller.state_dir ${show(controller.state_dir)} dropped: state is in memory`);
    delete controller.state_dir;
  }
  if (isMap(out.platform)) {
    for (const key of ["gcp", "ssh"]) {
      if (Object.hasOwn(out.platform, key)) {
        changes.push(`platform.${key} dropped: nothing runs on the remote platform`);
        delete out.platform[key];
      }
    }
  }
  if (isMap(out.scale_groups)) {
    for (const [name, group] of Object.entries(out.scale_groups)) {
      if (!isMap(group)) continue;
      const provider = isMap(group.provider) ? Object.keys(group.provider)[0] ?? "?" : "?";
      if (provider !== "local") {
        changes.push(`scale_groups.${name}.provider: ${provider} → local`);
        // A manual group's slice bound defaulted from its hosts: keep that bound.
        const hosts = isMap(group.provider) && isMap(group.provider.manual) &&
            Array.isArray(group.provider.manual.hosts)
          ? group.provider.manual.hosts.length
          : undefined;
        if (hosts !== undefined && !Object.hasOwn(group, "max_slices")) {
          group.max_slices = hosts;
          changes.push(`scale_groups.${name}.max_slices: ${hosts} (its host count)`);
        }
        // A GPU VM group's GPUs came from its machine type: keep them.
        const machineType = isMap(group.provider) && isMap(group.provider.gce)
          ? String(group.provider.gce.machine_type ?? "")
          : "";
        const gpus = group.accelerator_type === "gpu" ? gpuMachine(machineType) : undefined;
        if (gpus) {
          group.accelerator_variant ??= gpus.variant;
          if (!isMap(group.vm_resources)) group.vm_resources = {};
          (group.vm_resources as Tree).accelerators ??= gpus.count;
        }
      }
      group.provider = { local: {} };
      if (isMap(group.vm_resources)) {
        const dropped = ["cpu", "memory", "disk"].filter((k) =>
          Object.hasOwn(group.vm_resources as Tree, k)
        );
        if (dropped.length) {
          changes.push(
            `scale_groups.${name}.vm_resources ${dropped.join("/")} dropped: ` +
              "each local worker advertises a share of this machine",
          );
          for (const k of dropped) delete (group.vm_resources as Tree)[k];
        }
      }
    }
  }
  return { tree: out, from, changes };
}

/**
 * Loads the config at `path` and converts it to its local variant. The file is validated as
 * written first, so its problems are reported against its own mode.
 * @throws {ConfigError} when the file cannot be read or is invalid
 */
export async function loadConfigAsLocal(
  path: string,
  options: ParseConfigOptions = {},
): Promise<LocalVariant> {
  const tree = parseConfigYaml(await readConfigText(path), path);
  // Validate the file as written (throws its own problems), then the converted tree.
  parseConfigObject(tree, path, options);
  const local = localVariantTree(tree);
  try {
    return {
      config: parseConfigObject(local.tree, path, options),
      from: local.from,
      changes: local.changes,
    };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    throw new ConfigError(path, `its local variant (--as-local) is invalid: ${err.message}`, {
      cause: err,
    });
  }
}
