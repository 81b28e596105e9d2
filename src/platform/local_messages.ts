/**
 * Messages between the local platform (main thread) and a local VM (a Deno Worker).
 * Plain data only: everything here crosses postMessage.
 * @module
 */
import type { SharedPortRange } from "../worker/mod.ts";
import type { AcceleratorSpec, AttributeScalar } from "../types.ts";

/** Starts the VM's worker. */
export interface LocalVmStartMessage {
  readonly type: "start";
  readonly controllerUrl: string;
  /** The worker token when auth is on. */
  readonly workerToken?: string;
  /** Paths module tasks may never be granted. */
  readonly protectedPaths?: readonly string[];
  readonly workerId: string;
  readonly sliceId: string;
  readonly scaleGroup: string;
  readonly rootDir: string;
  readonly resources: {
    cpuMillicores: number;
    memoryBytes: number;
    accelerator?: AcceleratorSpec;
  };
  readonly attributes: Record<string, AttributeScalar>;
  readonly heartbeatIntervalMs: number;
  /** The platform's one port table, shared by every VM. */
  readonly ports: SharedPortRange;
  /** The cluster config's `defaults.outputs` and `defaults.python`. */
  readonly settings?: WorkerSettings;
}

/** Worker settings of a cluster config (`defaults.outputs`, `defaults.python`); unset: defaults. */
export interface WorkerSettings {
  readonly outputRetentionMs?: number;
  /** "gs://bucket/path" or "file:///absolute/path". */
  readonly outputsPrefix?: string;
  readonly pythonInstaller?: "uv" | "pip" | "auto";
  readonly pythonCacheBytes?: number;
  readonly pythonCacheMaxAgeMs?: number;
}

/** What a VM reports back. */
export type LocalVmToPlatform =
  | { readonly type: "started"; readonly url: string; readonly workerId: string }
  | { readonly type: "error"; readonly message: string }
  | { readonly type: "stopped" }
  | { readonly type: "log"; readonly line: string }
  | { readonly type: "probe-result"; readonly ok: boolean; readonly error: string };
