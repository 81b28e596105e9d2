/**
 * buildTaskEnv(), moduleArgv() and attemptDirName(): what a task runs with.
 * @module
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ModuleEntrypointSchema } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import {
  attemptDirName,
  buildTaskEnv,
  DEFAULT_TASK_PATH,
  moduleArgv,
} from "../../src/worker/task_spec.ts";

Deno.test("buildTaskEnv() layers defaults, then the request env, then IRIS_PORT_*", () => {
  const env = buildTaskEnv({
    taskDir: "/w/tasks/t",
    env: { HOME: "/custom", IRIS_PORT_WEB: "1", A: "b", IRIS_REAP_TAG: "forged" },
    ports: { web: 20001 },
    workerId: "w1",
    reapTag: "abc",
  });
  assert.deepEqual(env, {
    PATH: DEFAULT_TASK_PATH,
    HOME: "/custom",
    LANG: "C.UTF-8",
    TZ: "UTC",
    TMPDIR: "/w/tasks/t/tmp",
    IRIS_REAP_TAG: "abc",
    IRIS_WORKDIR: "/w/tasks/t",
    IRIS_WORKER_ID: "w1",
    IRIS_PORT_WEB: "20001",
    A: "b",
  });
  assert.equal(
    buildTaskEnv({ taskDir: "/t", env: {}, ports: {}, workerId: "w", denoDir: "/cache" }).DENO_DIR,
    "/cache",
  );
});

Deno.test("moduleArgv() scopes a bundled module to its task dir, the controller and its ports", () => {
  const argv = moduleArgv({
    denoPath: "/bin/deno",
    module: create(ModuleEntrypointSchema, {
      path: "./src/./main.ts",
      args: ["--x", "1"],
      permissions: { read: ["/data"], net: ["example.com:443"], run: ["git"] },
    }),
    taskDir: "/w/t",
    hasBundle: true,
    controllerUrl: "http://10.0.0.1:10000",
    ports: [20001],
  });
  assert.deepEqual(argv, [
    "/bin/deno",
    "run",
    "--no-config",
    "--no-prompt",
    "--allow-read=/w/t,/data",
    "--allow-write=/w/t",
    "--allow-net=10.0.0.1:10000,127.0.0.1:20001,0.0.0.0:20001,localhost:20001,example.com:443",
    "--allow-env",
    "--allow-run=git",
    "/w/t/src/main.ts",
    "--x",
    "1",
  ]);
});

Deno.test("moduleArgv() grants a whole permission for '*' and reads an unbundled module's own directory", () => {
  const argv = moduleArgv({
    denoPath: "deno",
    module: create(ModuleEntrypointSchema, {
      path: "/repo/jobs/main.ts",
      permissions: { write: ["*"] },
    }),
    taskDir: "/w/t",
    hasBundle: false,
    controllerUrl: "http://127.0.0.1:9",
    ports: [],
  });
  assert.ok(argv.includes("--allow-read=/w/t,/repo/jobs"));
  assert.ok(argv.includes("--allow-write"));
  assert.equal(argv.at(-1), "/repo/jobs/main.ts");
});

Deno.test("moduleArgv() rejects module paths that leave the bundle or are relative without one", () => {
  const base = { denoPath: "deno", taskDir: "/w/t", controllerUrl: "http://c:1", ports: [] };
  const mod = (path: string) => create(ModuleEntrypointSchema, { path });
  assert.throws(
    () => moduleArgv({ ...base, hasBundle: true, module: mod("../x.ts") }),
    /must not contain "\.\."/,
  );
  assert.throws(
    () => moduleArgv({ ...base, hasBundle: true, module: mod("/x.ts") }),
    /must be relative to the bundle/,
  );
  assert.throws(
    () => moduleArgv({ ...base, hasBundle: false, module: mod("x.ts") }),
    /must be absolute when the job has no bundle/,
  );
  assert.throws(
    () =>
      moduleArgv({
        ...base,
        hasBundle: true,
        module: create(ModuleEntrypointSchema, { path: "m.ts", permissions: { read: ["a,b"] } }),
      }),
    /permissions\.read: must not contain a comma/,
  );
});

Deno.test("attemptDirName() is readable, filesystem-safe and distinct for distinct task ids", () => {
  const a = attemptDirName("/alice/train/0", 2);
  assert.match(a, /^alice_train_0-[0-9a-f]{8}_attempt_2$/);
  assert.notEqual(attemptDirName("/a/b", 0), attemptDirName("/a_b", 0));
  assert.match(attemptDirName("///", 0), /^task-[0-9a-f]{8}_attempt_0$/);
});
