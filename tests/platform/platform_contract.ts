/**
 * The Platform contract suite: behaviour every implementation (local, gcp, manual, kubernetes) must share.
 * gcp/manual run it over a scripted runner, local over the real thing. Skips must give a reason.
 * @module
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ResourceNotFoundError } from "../../src/errors.ts";
import { groupVmsPerSlice } from "../../src/config/mod.ts";
import type { CreateSliceRequest, Platform } from "../../src/platform/platform.ts";
import { ScaleGroupConfigSchema } from "../../src/rpc/gen/iris/v1/config_pb.ts";
import type { ScaleGroupConfig } from "../../src/rpc/gen/iris/v1/config_pb.ts";

/** A platform under test plus how to ask it for a slice. */
export interface ContractSubject {
  readonly platform: Platform;
  /** The scale group config a slice of `group` is created with. */
  readonly groupConfig: (group: string) => ScaleGroupConfig;
  /** Releases what the subject holds beyond `platform.shutdown()`. */
  readonly cleanup?: () => Promise<void>;
}

/** Options of {@linkcode runPlatformContract}. */
export interface PlatformContractOptions {
  readonly name: string;
  readonly create: () => Promise<ContractSubject>;
  /** Tests to skip, each with the reason. */
  readonly skip?: readonly { readonly test: string; readonly reason: string }[];
}

/** A CreateSliceRequest for the contract tests. */
export function contractRequest(
  subject: ContractSubject,
  sliceId: string,
  group: string,
): CreateSliceRequest {
  const config = subject.groupConfig(group);
  return {
    sliceId,
    scaleGroup: group,
    config,
    vmCount: groupVmsPerSlice(config),
    controllerUrl: "http://127.0.0.1:10000",
    labels: {},
  };
}

/** An empty ScaleGroupConfig to start from. */
export function emptyGroupConfig(): ScaleGroupConfig {
  return create(ScaleGroupConfigSchema, {});
}

const TESTS: Record<string, (s: ContractSubject) => Promise<void>> = {
  "createSlice returns the slice with one worker id per VM": async (s) => {
    const slice = await s.platform.createSlice(contractRequest(s, "c-a-1", "a"));
    assert.equal(slice.sliceId, "c-a-1");
    assert.equal(slice.scaleGroup, "a");
    assert.ok(slice.vms.length >= 1);
    slice.vms.forEach((vm, i) => assert.equal(vm.workerId, `c-a-1-w${i}`));
  },
  "listSlices reports created slices and filters by scale group": async (s) => {
    await s.platform.createSlice(contractRequest(s, "c-a-1", "a"));
    await s.platform.createSlice(contractRequest(s, "c-b-1", "b"));
    assert.deepEqual((await s.platform.listSlices()).map((x) => x.sliceId), ["c-a-1", "c-b-1"]);
    assert.deepEqual((await s.platform.listSlices({ scaleGroup: "b" })).map((x) => x.sliceId), [
      "c-b-1",
    ]);
  },
  "describeSlice finds a slice and throws ResourceNotFoundError for an unknown one": async (s) => {
    await s.platform.createSlice(contractRequest(s, "c-a-1", "a"));
    assert.equal((await s.platform.describeSlice("c-a-1")).sliceId, "c-a-1");
    await assert.rejects(s.platform.describeSlice("c-nope-9"), ResourceNotFoundError);
  },
  "terminateSlice removes the slice and is idempotent": async (s) => {
    await s.platform.createSlice(contractRequest(s, "c-a-1", "a"));
    await s.platform.terminateSlice("c-a-1");
    await s.platform.terminateSlice("c-a-1");
    await s.platform.terminateSlice("c-never-existed");
    const left = (await s.platform.listSlices()).filter((x) => x.state !== "deleting");
    assert.deepEqual(left.map((x) => x.sliceId), []);
  },
  "shutdown resolves and can be repeated": async (s) => {
    await s.platform.shutdown();
    await s.platform.shutdown();
  },
};

/** Registers one Deno.test per contract test for the platform `name`. */
export function runPlatformContract(opts: PlatformContractOptions): void {
  for (const [test, body] of Object.entries(TESTS)) {
    const skipped = opts.skip?.find((s) => s.test === test);
    Deno.test({
      name: `[${opts.name} contract] ${test}${skipped ? ` (skipped: ${skipped.reason})` : ""}`,
      ignore: skipped !== undefined,
      fn: async () => {
        const subject = await opts.create();
        try {
          await body(subject);
        } finally {
          await subject.platform.shutdown();
          await subject.cleanup?.();
        }
      },
    });
  }
}
