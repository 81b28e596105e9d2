/**
 * The fast unary path (src/rpc/fast_unary.ts) against Connect's own handler: the same raw HTTP
 * requests go to two servers over loopback, one with the fast path and one without, and the
 * responses (status, headers, body bytes) must match for success, every error kind, JSON and
 * binary; the request gate runs before the body is read.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createContextValues,
  createServiceImplSpec,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import { PEER_ADDRESS } from "../../src/auth/gate.ts";
import { FastUnary } from "../../src/rpc/fast_unary.ts";
import { serveRpc } from "../../src/rpc/server.ts";
import {
  ControllerService,
  GetJobStatusRequestSchema,
  JobStatusSchema,
} from "../../src/rpc/mod.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";

const SERVICE = "/iris.v1.ControllerService";

/** GetJobStatus answers by job id, so each id picks an outcome. */
function routes(router: ConnectRouter) {
  router.service(ControllerService, {
    getJobStatus(req, ctx) {
      switch (req.jobId) {
        case "not-found":
          throw new ConnectError("job not-found does not exist", Code.NotFound);
        case "plain-error":
          throw new Error("boom");
        case "with-metadata":
          throw new ConnectError("slow down", Code.ResourceExhausted, { "retry-after": "3" });
        case "with-details":
          throw new ConnectError("bad job", Code.FailedPrecondition, undefined, [
            { desc: JobStatusSchema, value: { jobId: "detail", user: "u" } },
          ]);
        case "headers":
          ctx.responseHeader.set("x-answer", "42");
          ctx.responseTrailer.set("x-done", "yes");
          return { job: { jobId: "headers" } };
        case "undecodable-impl":
          throw new ConnectError("parse binary: from the implementation", Code.Internal);
        case "signal":
          return { job: { jobId: `aborted=${ctx.signal.aborted}` } };
      }
      return {
        job: {
          jobId: req.jobId,
          user: `${ctx.values.get(PEER_ADDRESS)}|${ctx.requestHeader.get("x-who") ?? ""}`,
          taskCount: 3,
          taskStateCounts: { running: 2, pending: 1 },
        },
      };
    },
    // Every other method is unimplemented.
  });
}

/** Who the gate let in (by x-who) and whether it saw the caller. */
const gate = (ctx: HandlerContext) => {
  if (ctx.requestHeader.get("x-who") === "intruder") {
    throw new ConnectError("invalid token", Code.Unauthenticated);
  }
};

/** Labels ListJobs as rate limited and tags the response. */
const interceptor: Interceptor = (next) => async (req) => {
  if (req.method.name === "GetJobStatus" && req.header.get("x-who") === "flood") {
    throw new ConnectError("GetJobStatus rate limit exceeded", Code.ResourceExhausted);
  }
  const res = await next(req);
  res.header.set("x-intercepted", req.method.name);
  return res;
};

interface Raw {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
}

async function post(
  url: string,
  path: string,
  body: BodyInit,
  headers: Record<string, string>,
): Promise<Raw> {
  // A stream body goes out chunked, without a Content-Length.
  const duplex = body instanceof ReadableStream ? { duplex: "half" } : {};
  const res = await fetch(url + path, { method: "POST", body, headers, ...duplex });
  return {
    status: res.status,
    headers: [...res.headers].filter(([k]) => k !== "date"),
    body: new Uint8Array(await res.arrayBuffer()),
  };
}

const BINARY = { "content-type": "application/proto", "connect-protocol-version": "1" };
const JSON_TYPE = { "content-type": "application/json", "connect-protocol-version": "1" };

const binaryRequest = (jobId: string) =>
  toBinary(GetJobStatusRequestSchema, create(GetJobStatusRequestSchema, { jobId }));
const jsonRequest = (jobId: string) => JSON.stringify({ jobId });

/** `bytes` as a stream in two chunks. */
const chunked = (bytes: Uint8Array) => ReadableStream.from([bytes.slice(0, 10), bytes.slice(10)]);

/** [name, path, body, headers] sent to both servers. */
const CASES: [string, string, () => BodyInit, Record<string, string>][] = [];
for (
  const id of [
    "ok",
    "not-found",
    "plain-error",
    "with-metadata",
    "with-details",
    "headers",
    "undecodable-impl",
    "signal",
  ]
) {
  CASES.push([`${id} binary`, "/GetJobStatus", () => binaryRequest(id), BINARY]);
  CASES.push([`${id} json`, "/GetJobStatus", () => jsonRequest(id), JSON_TYPE]);
}
CASES.push(
  ["caller header reaches the impl", "/GetJobStatus", () => binaryRequest("ok"), {
    ...BINARY,
    "x-who": "alice",
  }],
  ["gate rejects (binary)", "/GetJobStatus", () => binaryRequest("ok"), {
    ...BINARY,
    "x-who": "intruder",
  }],
  ["gate rejects (json)", "/GetJobStatus", () => jsonRequest("ok"), {
    ...JSON_TYPE,
    "x-who": "intruder",
  }],
  ["interceptor rejects", "/GetJobStatus", () => binaryRequest("ok"), {
    ...BINARY,
    "x-who": "flood",
  }],
  ["unimplemented method", "/ListJobs", () => new Uint8Array(), BINARY],
  ["empty body", "/GetJobStatus", () => new Uint8Array(), BINARY],
  ["undecodable binary", "/GetJobStatus", () => new Uint8Array([0x0a, 0x05, 0xff, 0xfe]), BINARY],
  ["invalid utf-8 in a string", "/GetJobStatus", () => new Uint8Array([0x0a, 0x02, 0xc3, 0x28]), {
    ...BINARY,
  }],
  ["malformed json", "/GetJobStatus", () => "{jobId:", JSON_TYPE],
  ["json of the wrong shape", "/GetJobStatus", () => '{"jobId": 7}', JSON_TYPE],
  ["json with charset", "/GetJobStatus", () => jsonRequest("ok"), {
    ...JSON_TYPE,
    "content-type": "application/json; charset=utf-8",
  }],
  ["over readMaxBytes", "/GetJobStatus", () => binaryRequest("x".repeat(300)), BINARY],
  ["chunked", "/GetJobStatus", () => chunked(binaryRequest("ok")), BINARY],
  ["chunked over readMaxBytes", "/GetJobStatus", () => chunked(binaryRequest("x".repeat(300))), {
    ...BINARY,
  }],
  ["timeout header", "/GetJobStatus", () => binaryRequest("ok"), {
    ...BINARY,
    "connect-timeout-ms": "5000",
  }],
  // Not on the fast path; listed to show the fallback answers as before.
  ["no protocol version header", "/GetJobStatus", () => binaryRequest("ok"), {
    "content-type": "application/proto",
  }],
  ["gzip (unsupported)", "/GetJobStatus", () => binaryRequest("ok"), {
    ...BINARY,
    "content-encoding": "gzip",
  }],
  ["unknown content type", "/GetJobStatus", () => "hello", {
    "content-type": "text/plain",
    "connect-protocol-version": "1",
  }],
  ["malformed timeout header", "/GetJobStatus", () => binaryRequest("ok"), {
    ...BINARY,
    "connect-timeout-ms": "5s",
  }],
  ["timeout header of 11 digits", "/GetJobStatus", () => binaryRequest("ok"), {
    ...BINARY,
    "connect-timeout-ms": "12345678901",
  }],
);

/** Statuses some cases must have, so the comparison cannot pass on two equally wrong answers. */
const STATUS: Record<string, number> = {
  "ok binary": 200,
  "ok json": 200,
  "not-found binary": 404,
  "plain-error json": 500,
  "gate rejects (binary)": 401,
  "interceptor rejects": 429,
  "unimplemented method": 501,
  "undecodable binary": 400,
  "invalid utf-8 in a string": 400,
  "malformed json": 400,
  "over readMaxBytes": 429,
  "chunked": 200,
  "chunked over readMaxBytes": 429,
  "timeout header": 200,
  "malformed timeout header": 400,
};

Deno.test("fast path answers byte for byte like Connect's handler", async () => {
  const options = { readMaxBytes: 256, requestGate: gate, interceptors: [interceptor] };
  await using connect = serveRpc(routes, { ...options, fastUnary: false });
  await using fast = serveRpc(routes, options);
  for (const [name, path, body, headers] of CASES) {
    const want = await post(connect.url, SERVICE + path, body(), headers);
    const got = await post(fast.url, SERVICE + path, body(), headers);
    if (name in STATUS) assertEquals(want.status, STATUS[name], name);
    assertEquals(got.status, want.status, name);
    assertEquals(got.headers, want.headers, name);
    assertEquals(
      new TextDecoder().decode(got.body),
      new TextDecoder().decode(want.body),
      name,
    );
    assertEquals(got.body, want.body, name);
  }
});

Deno.test("fast path without interceptors or gate matches too", async () => {
  await using connect = serveRpc(routes, { fastUnary: false });
  await using fast = serveRpc(routes);
  for (const id of ["ok", "not-found", "headers"]) {
    const requests: [BodyInit, Record<string, string>][] = [
      [binaryRequest(id), BINARY],
      [jsonRequest(id), JSON_TYPE],
    ];
    for (const [body, headers] of requests) {
      const want = await post(connect.url, `${SERVICE}/GetJobStatus`, body, headers);
      const got = await post(fast.url, `${SERVICE}/GetJobStatus`, body, headers);
      assertEquals(got, want, id);
    }
  }
});

/** A request whose body records whether anyone started reading it. */
function watchedRequest(headers: Record<string, string>, payload: Uint8Array) {
  const seen = { read: false };
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      seen.read = true;
      c.enqueue(payload);
      c.close();
    },
  }, { highWaterMark: 0 });
  const req = new Request(`http://127.0.0.1${SERVICE}/GetJobStatus`, {
    method: "POST",
    headers,
    body,
  });
  return { req, seen };
}

Deno.test("fast path runs the gate before the body is read", async () => {
  let readWhenGated: boolean | undefined;
  let probe = { read: false };
  const fast = new FastUnary({
    readMaxBytes: 1024,
    requestGate: (ctx) => {
      readWhenGated = probe.read;
      gate(ctx);
    },
  });
  fast.service(createServiceImplSpec<typeof ControllerService>(ControllerService, {
    getJobStatus: (req) => ({ job: { jobId: req.jobId } }),
  }));
  const path = `${SERVICE}/GetJobStatus`;

  const rejected = watchedRequest({ ...BINARY, "x-who": "intruder" }, binaryRequest("ok"));
  probe = rejected.seen;
  const call = fast.eligible(rejected.req, path);
  assert(call, "a Connect unary POST is on the fast path");
  const denied = await fast.serve(rejected.req, call, createContextValues());
  assertEquals(denied.status, 401);
  assertEquals(await denied.json(), { code: "unauthenticated", message: "invalid token" });
  assertEquals(readWhenGated, false);
  assertEquals(rejected.seen.read, false, "a rejected caller's body is never read");
  await rejected.req.body?.cancel();

  const allowed = watchedRequest(BINARY, binaryRequest("ok"));
  probe = allowed.seen;
  const ok = await fast.serve(
    allowed.req,
    fast.eligible(allowed.req, path)!,
    createContextValues(),
  );
  assertEquals(ok.status, 200);
  await ok.body?.cancel();
  assertEquals(readWhenGated, false, "the gate ran before the body was read");
  assertEquals(allowed.seen.read, true);
});

Deno.test("fast path leaves other calls to Connect", () => {
  const fast = new FastUnary({ readMaxBytes: 1024 });
  fast.service(createServiceImplSpec<typeof ControllerService>(ControllerService, {}));
  const path = `${SERVICE}/GetJobStatus`;
  const req = (init: RequestInit) => new Request(`http://127.0.0.1${path}`, init);
  assert(fast.eligible(req({ method: "POST", headers: BINARY }), path));
  assert(fast.eligible(req({ method: "POST", headers: JSON_TYPE }), path));
  for (
    const [what, r, p] of [
      ["GET", req({ method: "GET", headers: BINARY }), path],
      [
        "gRPC-web",
        req({ method: "POST", headers: { "content-type": "application/grpc-web+proto" } }),
        path,
      ],
      [
        "streaming content type",
        req({
          method: "POST",
          headers: { ...BINARY, "content-type": "application/connect+proto" },
        }),
        path,
      ],
      [
        "compressed",
        req({ method: "POST", headers: { ...BINARY, "content-encoding": "gzip" } }),
        path,
      ],
      [
        "no protocol version",
        req({ method: "POST", headers: { "content-type": "application/proto" } }),
        path,
      ],
      ["unknown path", req({ method: "POST", headers: BINARY }), `${SERVICE}/Nope`],
      [
        "malformed timeout",
        req({ method: "POST", headers: { ...BINARY, "connect-timeout-ms": "-1" } }),
        path,
      ],
    ] as const
  ) {
    assertEquals(fast.eligible(r, p), undefined, what);
  }
});

Deno.test("fast path's signal aborts when the call finishes", async () => {
  let signal: AbortSignal | undefined;
  const fast = new FastUnary({ readMaxBytes: 1024 });
  fast.service(createServiceImplSpec<typeof ControllerService>(ControllerService, {
    getJobStatus: (req, ctx) => {
      signal = ctx.signal;
      assertEquals(ctx.signal.aborted, false);
      return { job: { jobId: req.jobId } };
    },
  }));
  const path = `${SERVICE}/GetJobStatus`;
  const r = new Request(`http://127.0.0.1${path}`, {
    method: "POST",
    headers: BINARY,
    body: binaryRequest("x"),
  });
  const res = await fast.serve(r, fast.eligible(r, path)!, createContextValues());
  await res.body?.cancel();
  assertEquals(signal?.aborted, true);
});

Deno.test("fast path serves a call with a timeout header: the context has it, its deadline aborts the signal", async () => {
  const seen: { timeoutMs?: number; reason?: unknown }[] = [];
  const fast = new FastUnary({ readMaxBytes: 1024 });
  fast.service(createServiceImplSpec<typeof ControllerService>(ControllerService, {
    getJobStatus: (req, ctx) => {
      seen.push({ timeoutMs: ctx.timeoutMs(), reason: ctx.signal.reason });
      return { job: { jobId: req.jobId } };
    },
  }));
  const path = `${SERVICE}/GetJobStatus`;
  for (const timeout of ["5000", "0"]) {
    const r = new Request(`http://127.0.0.1${path}`, {
      method: "POST",
      headers: { ...BINARY, "connect-timeout-ms": timeout },
      body: binaryRequest("x"),
    });
    const route = fast.eligible(r, path);
    assertEquals(route?.timeoutMs, Number(timeout));
    const res = await fast.serve(r, route!, createContextValues());
    assertEquals(res.status, 200);
    await res.body?.cancel();
  }
  assert(seen[0]!.timeoutMs! > 4000 && seen[0]!.timeoutMs! <= 5000, `${seen[0]!.timeoutMs}`);
  assertEquals(seen[0]!.reason, undefined);
  assert(seen[1]!.reason instanceof ConnectError);
  assertEquals((seen[1]!.reason as ConnectError).code, Code.DeadlineExceeded);
});
