/**
 * Chooses the controller lifecycle a config describes: LocalController for `controller.local`;
 * GCP and manual lifecycles come from their platforms.
 * @module
 */
import type { ClusterConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import type { ControllerLifecycle } from "../platform/platform.ts";
import { configMode } from "../config/mod.ts";
import { LocalController, type LocalControllerOptions } from "./local_controller.ts";
import { PlatformError } from "../errors.ts";

/** The lifecycle for `config`'s controller kind. */
export function createControllerLifecycle(
  config: ClusterConfig,
  options: LocalControllerOptions = {},
): ControllerLifecycle {
  const mode = configMode(config);
  if (mode === "local") return new LocalController(config, options);
  throw new PlatformError(
    `Cannot start a ${mode} cluster from this command yet: start its controller with 'iris controller serve' on the controller host and point clients at it`,
  );
}
