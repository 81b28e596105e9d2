/**
 * A stateful fake of `gcloud compute tpus tpu-vm` (create/describe/list/delete) for the GCP
 * contract tests, plugged into a ScriptedRunner. Knows only the flags gcloud.ts emits.
 * @module
 */
import type { Command } from "../../src/command/command.ts";
import type { ScriptedReply } from "../fakes/scripted_runner.ts";
import { ScriptedRunner } from "../fakes/scripted_runner.ts";

/** A `tpu-vm describe --format=json` output of a two-host v4-16 slice. */
export const TPU_NODE_JSON = JSON.stringify({
  name: "projects/proj/locations/us-central2-b/nodes/iris-tpu-v4-8-1",
  acceleratorType: "v4-16",
  state: "READY",
  health: "HEALTHY",
  createTime: "2026-02-01T10:00:00.000Z",
  labels: {
    "iris-managed": "true",
    "iris-scale-group": "tpu_v4_16",
    "iris-slice-id": "iris-tpu_v4_16-1",
  },
  networkEndpoints: [{ ipAddress: "10.0.0.2", port: 8470 }, { ipAddress: "10.0.0.3", port: 8470 }],
});

interface FakeNode {
  name: string;
  zone: string;
  acceleratorType: string;
  labels: Record<string, string>;
  hosts: number;
}

function flag(cmd: Command, name: string): string | undefined {
  const prefix = `--${name}=`;
  return cmd.argv.find((a) => a.startsWith(prefix))?.slice(prefix.length);
}

function nodeJson(n: FakeNode, project: string): unknown {
  return {
    name: `projects/${project}/locations/${n.zone}/nodes/${n.name}`,
    acceleratorType: n.acceleratorType,
    state: "READY",
    createTime: "2026-02-01T10:00:00Z",
    labels: n.labels,
    networkEndpoints: Array.from({ length: n.hosts }, (_, i) => ({ ipAddress: `10.1.0.${i + 2}` })),
  };
}

/** Hosts of a TPU variant in this fake: the number after the dash divided by 8, at least 1. */
function hostsOf(acceleratorType: string): number {
  return Math.max(1, Math.floor(Number(acceleratorType.split("-")[1] ?? 8) / 8));
}

/** A ScriptedRunner whose TPU commands act on an in-memory set of nodes. */
export function fakeGcloudRunner(): { runner: ScriptedRunner; nodes: Map<string, FakeNode> } {
  const nodes = new Map<string, FakeNode>();
  const notFound = (name: string): ScriptedReply => ({
    code: 1,
    stderr: `ERROR: (gcloud.compute.tpus.tpu-vm) NOT_FOUND: Resource '${name}' was not found\n`,
  });
  const respond = (cmd: Command): ScriptedReply => {
    const verb = cmd.argv[4];
    const name = cmd.argv[5] ?? "";
    const zone = flag(cmd, "zone") ?? "";
    const project = flag(cmd, "project") ?? "";
    const key = `${zone}/${name}`;
    switch (verb) {
      case "create": {
        const labels = Object.fromEntries(
          (flag(cmd, "labels") ?? "").split(",").map((kv) => kv.split("=")),
        );
        const acceleratorType = flag(cmd, "accelerator-type") ?? "";
        const node = { name, zone, acceleratorType, labels, hosts: hostsOf(acceleratorType) };
        nodes.set(key, node);
        return { stdout: JSON.stringify(nodeJson(node, project)) };
      }
      case "describe": {
        const node = nodes.get(key);
        return node ? { stdout: JSON.stringify(nodeJson(node, project)) } : notFound(name);
      }
      case "delete":
        return nodes.delete(key) ? {} : notFound(name);
      case "list": {
        const wanted = (flag(cmd, "filter") ?? "").split(" AND ").map((c) =>
          c.replace(/^labels\./, "").split("=")
        );
        const found = [...nodes.values()].filter((n) =>
          n.zone === zone && wanted.every(([k, v]) => n.labels[k!] === v)
        );
        return { stdout: JSON.stringify(found.map((n) => nodeJson(n, project))) };
      }
      default:
        return { code: 2, stderr: `fake gcloud: unsupported ${verb}\n` };
    }
  };
  const runner = new ScriptedRunner().respond(["gcloud", "compute", "tpus", "tpu-vm"], respond);
  return { runner, nodes };
}
