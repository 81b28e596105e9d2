/**
 * src/rpc/fast_unary.ts serves unary calls with Connect's own helpers from
 * `@connectrpc/connect/protocol` and `/protocol-connect`, which Connect marks "@private Internal
 * code, does not follow semantic versioning". These tests pin what it relies on: the exact
 * version in deno.json and the lock file, and the shape and behaviour of each helper. An upgrade
 * that changes any of them fails here by name, before the fast path drifts from Connect's wire
 * format (tests/rpc/fast_path_test.ts compares the two byte for byte).
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  createMethodSerializationLookup,
  mergeNonProtocolHeaders,
  validateUniversalHandlerOptions,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  contentTypeUnaryJson,
  contentTypeUnaryProto,
  errorToJsonBytes,
  trailerMux,
} from "@connectrpc/connect/protocol-connect";
import {
  ControllerService,
  GetJobStatusRequestSchema,
} from "../../src/rpc/gen/iris/v1/controller_pb.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";

/** The versions the fast path was written and checked against. */
const PINNED = {
  "@connectrpc/connect": "2.2.0",
  "@connectrpc/connect-web": "2.2.0",
  "@bufbuild/protobuf": "2.17.0",
};

const ROOT = new URL("../../", import.meta.url);

Deno.test("connect internals: deno.json pins Connect and protobuf exactly, lock frozen", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  for (const [name, version] of Object.entries(PINNED)) {
    assertEquals(
      config.imports[name],
      `npm:${name}@${version}`,
      `deno.json imports.${name}: fast_unary.ts relies on this exact version`,
    );
  }
  assertEquals(config.lock?.frozen, true, "deno.json lock.frozen");
  const lock = JSON.parse(await Deno.readTextFile(new URL("deno.lock", ROOT)));
  for (const [name, version] of Object.entries(PINNED)) {
    const resolved: string | undefined = lock.specifiers[`npm:${name}@${version}`];
    assert(resolved !== undefined, `deno.lock has no entry for npm:${name}@${version}`);
    assertEquals(resolved.split("_")[0], version, `deno.lock resolves ${name}`);
  }
});

Deno.test("connect internals: validateUniversalHandlerOptions keeps what the fast path reads", () => {
  const gate = () => {};
  const opts = validateUniversalHandlerOptions({
    readMaxBytes: 1234,
    requestGate: gate,
    jsonOptions: { ignoreUnknownFields: false },
  });
  assertEquals(opts.readMaxBytes, 1234);
  assertEquals(opts.interceptors, [], "interceptors default to an empty array");
  assertEquals(opts.requestGate, gate, "requestGate passes through");
  assertEquals(opts.jsonOptions, { ignoreUnknownFields: false });
  assertEquals(opts.binaryOptions, undefined);
});

Deno.test("connect internals: the serialization lookup parses and serializes both formats", () => {
  const method = ControllerService.method.getJobStatus;
  const opts = validateUniversalHandlerOptions({ readMaxBytes: 1 << 20 });
  const lookup = createMethodSerializationLookup(
    method,
    opts.binaryOptions,
    opts.jsonOptions,
    opts,
  );
  const msg = create(GetJobStatusRequestSchema, { jobId: "/alice/job" });
  const bin = toBinary(GetJobStatusRequestSchema, msg);
  assertEquals(lookup.getI(true).parse(bin).jobId, "/alice/job");
  const json = new TextEncoder().encode(JSON.stringify({ jobId: "/alice/job" }));
  assertEquals(lookup.getI(false).parse(json).jobId, "/alice/job");
  const out = lookup.getI(true).serialize(msg);
  assertEquals(fromBinary(GetJobStatusRequestSchema, out).jobId, "/alice/job");
  // A binary body it cannot decode fails with the message fast_unary.ts rewrites to
  // invalid_argument; a bad JSON body is invalid_argument already.
  const bad = (binary: boolean, bytes: Uint8Array): ConnectError => {
    try {
      lookup.getI(binary).parse(bytes);
    } catch (e) {
      if (e instanceof ConnectError) return e;
      throw new Error(`a bad body threw ${e}, not a ConnectError`);
    }
    throw new Error("a bad body parsed");
  };
  const truncated = bad(true, new Uint8Array([0x0a, 0x05, 0xff]));
  assertEquals(truncated.code, Code.Internal);
  assert(/^parse binary: /.test(truncated.rawMessage), `rawMessage: ${truncated.rawMessage}`);
  assertEquals(bad(false, new TextEncoder().encode("{")).code, Code.InvalidArgument);
});

Deno.test("connect internals: content types, status codes and the error body", () => {
  assertEquals(contentTypeUnaryProto, "application/proto");
  assertEquals(contentTypeUnaryJson, "application/json");
  assertEquals(codeToHttpStatus(Code.InvalidArgument), 400);
  assertEquals(codeToHttpStatus(Code.NotFound), 404);
  assertEquals(codeToHttpStatus(Code.PermissionDenied), 403);
  assertEquals(codeToHttpStatus(Code.Internal), 500);
  const body = errorToJsonBytes(new ConnectError("no such job", Code.NotFound), {});
  assertEquals(JSON.parse(new TextDecoder().decode(body)), {
    code: "not_found",
    message: "no such job",
  });
});

Deno.test("connect internals: header helpers merge and multiplex as the fast path expects", () => {
  const header = new Headers({ "x-a": "1" });
  mergeNonProtocolHeaders(header, new Headers({ "x-b": "2", "content-type": "text/plain" }));
  assertEquals(header.get("x-b"), "2", "non-protocol headers are merged");
  assertEquals(header.get("content-type"), null, "protocol headers are not");
  const muxed = trailerMux(new Headers({ "x-h": "h" }), new Headers({ "x-t": "t" }));
  assertEquals(muxed.get("x-h"), "h");
  assertEquals(muxed.get("trailer-x-t"), "t");
});
