/**
 * `iris rpc SERVICE METHOD [JSON|@file|@-]`: calls any RPC of the proto by name with the CLI's
 * URL and token, printing the answer as JSON. Services and methods come from the generated
 * descriptors, so new RPCs appear here without code; `--list` shows them.
 * @module
 */
import {
  type DescMethod,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  type DescService,
  fromJson,
  type JsonValue,
  toJson,
} from "@bufbuild/protobuf";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { file_iris_v1_controller } from "../rpc/gen/iris/v1/controller_pb.ts";
import { file_iris_v1_worker } from "../rpc/gen/iris/v1/worker_pb.ts";
import { rpcTransport } from "../rpc/mod.ts";
import { bool, type CommandSpec, UsageError } from "./args.ts";
import { cliToken, CONTROLLER_OPTION, controllerUrl, TOKEN_FILE_OPTION } from "./job.ts";

/** Every service the proto defines. */
export function rpcServices(): DescService[] {
  return [...file_iris_v1_controller.services, ...file_iris_v1_worker.services];
}

/** "ListJobs", "list-jobs", "list_jobs" and "listJobs" all compare equal. */
function norm(name: string): string {
  return name.replace(/[-_]/g, "").toLowerCase();
}

/** The service named `name` ("controller", "ControllerService", "iris.v1.ControllerService"). */
export function findService(name: string): DescService {
  const want = norm(name).replace(/service$/, "");
  const found = rpcServices().find((s) =>
    norm(s.name).replace(/service$/, "") === want ||
    norm(s.typeName).replace(/service$/, "") === want
  );
  if (!found) {
    throw new UsageError(
      `unknown service ${JSON.stringify(name)} (known: ${
        rpcServices().map((s) => s.name).join(", ")
      })`,
    );
  }
  return found;
}

/** The method named `name` of `service`, in any case style. */
export function findMethod(service: DescService, name: string): DescMethod {
  const found = service.methods.find((m) => norm(m.name) === norm(name));
  if (!found) {
    throw new UsageError(
      `${service.name} has no method ${
        JSON.stringify(name)
      } (run 'iris rpc ${service.name} --list')`,
    );
  }
  return found;
}

function kebab(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase();
}

function listing(services: readonly DescService[]): string {
  const lines: string[] = [];
  for (const s of services) {
    lines.push(`${s.name} (${s.typeName})`);
    for (const m of s.methods) {
      const kind = m.methodKind === "unary" ? "" : ` [${m.methodKind}]`;
      lines.push(`  ${kebab(m.name).padEnd(26)} ${m.input.name} -> ${m.output.name}${kind}`);
    }
  }
  return lines.join("\n") + "\n";
}

async function readBody(arg: string | undefined): Promise<string> {
  if (arg === undefined) return "{}";
  if (arg === "@-") return await new Response(Deno.stdin.readable).text();
  if (arg.startsWith("@")) {
    try {
      return await Deno.readTextFile(arg.slice(1));
    } catch (err) {
      throw new UsageError(
        `cannot read request file ${arg.slice(1)}: ${err instanceof Error ? err.message : err}`,
      );
    }
  }
  return arg;
}

/** Parses the request body for `method`; UsageError naming the problem otherwise. */
export function parseRequest(method: DescMethod, text: string): ReturnType<typeof fromJson> {
  let json: JsonValue;
  try {
    json = JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new UsageError(
      `the request is not valid JSON: ${err instanceof Error ? err.message : err}`,
    );
  }
  try {
    return fromJson(method.input, json);
  } catch (err) {
    throw new UsageError(
      `the request does not fit ${method.input.typeName}: ${
        err instanceof Error ? err.message : err
      }`,
    );
  }
}

const rpcCommand: CommandSpec = {
  name: "rpc",
  summary: "Call any RPC by name with a JSON request (--list shows services and methods).",
  usage: "rpc SERVICE METHOD [JSON|@FILE|@-] [--controller URL] | rpc [SERVICE] --list",
  description: "SERVICE is controller or worker (any spelling of the proto name); METHOD may be " +
    "kebab-case (list-jobs) or the proto name (ListJobs). The request is JSON in the proto's " +
    "JSON mapping, inline, from a file (@FILE) or from stdin (@-); the default is {}. The answer " +
    "is printed as JSON (one document per message for streaming methods). For a worker's " +
    "service, pass the worker's URL as --controller.",
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    list: { type: "boolean", description: "List services and methods instead of calling" },
  },
  positionals: { min: 0, max: 3, names: "SERVICE METHOD [JSON]" },
  examples: [
    "iris rpc --list",
    'iris rpc controller list-jobs \'{"prefix": "/alice/"}\'',
    "iris rpc controller get-job-status @request.json",
  ],
  async run(p, io, signal) {
    const [serviceName, methodName, body] = p.positionals;
    if (bool(p, "list")) {
      io.out(listing(serviceName ? [findService(serviceName)] : rpcServices()));
      return 0;
    }
    if (!serviceName || !methodName) {
      throw new UsageError("missing SERVICE METHOD (run 'iris rpc --list' to see them)");
    }
    const service = findService(serviceName);
    const method = findMethod(service, methodName);
    const input = parseRequest(method, await readBody(body));
    const url = controllerUrl(p);
    const token = cliToken(p);
    const transport = rpcTransport(url, { token });
    const print = (message: Parameters<typeof toJson>[1]) =>
      io.out(JSON.stringify(toJson(method.output, message), null, 2) + "\n");
    if (method.methodKind === "unary") {
      const res = await transport.unary(
        method as DescMethodUnary,
        signal,
        undefined,
        undefined,
        input,
      );
      print(res.message);
    } else if (method.methodKind === "server_streaming") {
      const res = await transport.stream(
        method as DescMethodServerStreaming,
        signal,
        undefined,
        undefined,
        createAsyncIterable([input]),
      );
      for await (const message of res.message) print(message);
    } else {
      throw new UsageError(
        `${method.name} is ${method.methodKind}: iris rpc calls unary and server-streaming methods only`,
      );
    }
    return 0;
  },
};

/** `iris rpc`. */
export const rpcCommands: readonly CommandSpec[] = [rpcCommand];
