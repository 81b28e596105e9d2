/**
 * `iris endpoints list [PREFIX] [--exact]`: the endpoints tasks registered (ListEndpoints).
 * @module
 */
import { controllerClient } from "../rpc/mod.ts";
import { bool, type CommandSpec, table } from "./args.ts";
import { cliToken, CONTROLLER_OPTION, controllerUrl, TOKEN_FILE_OPTION } from "./job.ts";

const endpointsListCommand: CommandSpec = {
  name: "endpoints list",
  summary: "List registered endpoints (name, address, task), optionally under a prefix.",
  usage: "endpoints list [PREFIX] [--exact] [--json]",
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    exact: { type: "boolean", description: "PREFIX must match the whole name" },
    json: { type: "boolean", description: "Print JSON instead of a table" },
  },
  positionals: { min: 0, max: 1, names: "PREFIX" },
  examples: [
    "iris endpoints list",
    "iris endpoints list /alice/serve/ ",
    "iris endpoints list /alice/serve/coord --exact",
  ],
  async run(p, io, signal) {
    const client = controllerClient(controllerUrl(p), { token: cliToken(p) });
    const res = await client.listEndpoints(
      { prefix: p.positionals[0] ?? "", exact: bool(p, "exact") },
      { signal },
    );
    if (bool(p, "json")) {
      io.out(
        JSON.stringify(
          res.endpoints.map((e) => ({
            endpointId: e.endpointId,
            name: e.name,
            address: e.address,
            taskId: e.taskId,
            jobId: e.jobId,
            metadata: e.metadata,
          })),
          null,
          2,
        ) + "\n",
      );
      return 0;
    }
    if (res.endpoints.length === 0) {
      io.out("No endpoints.\n");
      return 0;
    }
    io.out(
      table(
        ["NAME", "ADDRESS", "TASK", "ID"],
        res.endpoints.map((e) => [e.name, e.address, e.taskId, e.endpointId]),
      ),
    );
    return 0;
  },
};

/** `iris endpoints …`. */
export const endpointsCommands: readonly CommandSpec[] = [endpointsListCommand];
