/**
 * The one error translation (src/rpc/errors.ts): Iris errors map to their Connect codes on both
 * serving paths (the fast unary path and Connect's own, server streams included), and no code
 * outside src/rpc/ throws a ConnectError.
 * @module
 */
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import {
  AlreadyExistsError,
  ConfigError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  PlatformError,
  QuotaExhaustedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
  UnimplementedError,
} from "../../src/errors.ts";
import { toConnectError } from "../../src/rpc/errors.ts";
import { serveRpc } from "../../src/rpc/server.ts";
import { workerClient } from "../../src/rpc/client.ts";
import { WorkerService } from "../../src/rpc/mod.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";

Deno.test("toConnectError maps each Iris error to its code, keeps ConnectErrors, else internal", () => {
  const cases: [Error, Code][] = [
    [new InvalidArgumentError("f", "bad"), Code.InvalidArgument],
    [new ConfigError("a.b", "bad"), Code.InvalidArgument],
    [new NotFoundError("x"), Code.NotFound],
    [new AlreadyExistsError("x"), Code.AlreadyExists],
    [new FailedPreconditionError("x"), Code.FailedPrecondition],
    [new ResourceExhaustedError("x"), Code.ResourceExhausted],
    [new PermissionDeniedError("x"), Code.PermissionDenied],
    [new UnauthenticatedError("x"), Code.Unauthenticated],
    [new UnavailableError("x"), Code.Unavailable],
    [new UnimplementedError("x"), Code.Unimplemented],
    [new DeadlineExceededError("x"), Code.DeadlineExceeded],
    [new QuotaExhaustedError("x"), Code.Internal],
    [new Error("boom"), Code.Internal],
  ];
  for (const [err, code] of cases) {
    const c = toConnectError(err);
    assertEquals([err.name, c.code, c.rawMessage], [err.name, code, err.message]);
  }
  const wire = new ConnectError("from elsewhere", Code.Aborted);
  assert(toConnectError(wire) === wire);
});

Deno.test("a permission error is not a platform error", () => {
  assertEquals(new PermissionDeniedError("x") instanceof PlatformError, false);
});

function routes(router: ConnectRouter) {
  router.service(WorkerService, {
    killTask: () => {
      throw new NotFoundError("no task t");
    },
    health: () => Promise.reject(new UnavailableError("later")),
    async *execInTask() {
      yield { stdout: new TextEncoder().encode("one") };
      throw new PermissionDeniedError("no exec for you");
    },
  });
}

for (const fastUnary of [true, false]) {
  Deno.test(`handlers' Iris errors reach the client as codes (fast path ${fastUnary})`, async () => {
    await using server = serveRpc(routes, { fastUnary });
    const client = workerClient(server.url);
    const codeOf = (p: Promise<unknown>) =>
      p.then(() => undefined, (e) => [ConnectError.from(e).code, ConnectError.from(e).rawMessage]);
    assertEquals(await codeOf(client.killTask({ taskId: "t" })), [Code.NotFound, "no task t"]);
    assertEquals(await codeOf(client.health({})), [Code.Unavailable, "later"]);
    const got: string[] = [];
    const streamed = (async () => {
      for await (const m of client.execInTask({ taskId: "t" })) {
        got.push(new TextDecoder().decode(m.stdout));
      }
    })();
    assertEquals(await codeOf(streamed), [Code.PermissionDenied, "no exec for you"]);
    assertEquals(got, ["one"]);
  });
}

Deno.test("no code outside src/rpc/ throws a ConnectError (browser code excepted)", async () => {
  const root = new URL("../../src/", import.meta.url);
  const found: string[] = [];
  const walk = async (dir: URL, rel: string): Promise<void> => {
    for await (const e of Deno.readDir(dir)) {
      const path = `${rel}${e.name}`;
      if (e.isDirectory) {
        // rpc/ is where errors meet the wire; dashboard/app/ is the browser's client code.
        if (path === "rpc" || path === "dashboard/app") continue;
        await walk(new URL(`${e.name}/`, dir), `${path}/`);
      } else if (e.name.endsWith(".ts") && e.name !== "assets_gen.ts") {
        const text = await Deno.readTextFile(new URL(e.name, dir));
        for (const [i, line] of text.split("\n").entries()) {
          if (/new ConnectError\(/.test(line)) found.push(`src/${path}:${i + 1}`);
        }
      }
    }
  };
  await walk(root, "");
  assertEquals(found, []);
});
