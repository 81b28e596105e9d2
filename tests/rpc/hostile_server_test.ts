/**
 * The RPC server against hostile clients (#16), over raw TCP on loopback: stalled bodies cost
 * neither memory nor other clients' latency and hit the request deadline; slow or silent clients
 * and idle connections are closed; one address cannot hold more than its share of connections;
 * JSON nested too deep is refused before parsing; unknown JSON fields are refused by name while
 * binary stays lenient. Each case runs on every transport, on the fast path and on Connect's
 * handlers.
 */
import net from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { type HttpTransport, serveRpc, type ServeRpcOptions } from "../../src/rpc/server.ts";
import { JsonDepthScanner } from "../../src/rpc/body.ts";
import { ControllerService, GetJobStatusRequestSchema } from "../../src/rpc/mod.ts";
import { startController } from "../../src/controller/server.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";

const PATH = "/iris.v1.ControllerService/GetJobStatus";

function routes(router: ConnectRouter) {
  router.service(ControllerService, {
    getJobStatus: (req) => ({ job: { jobId: req.jobId } }),
  });
}

/** A raw client connection from `localAddress` (a loopback address of its own). */
interface Raw {
  socket: net.Socket;
  /** Everything received until the server closed the connection. */
  closed: Promise<string>;
  /** Whether the server has closed it. */
  isClosed(): boolean;
  /** Everything received so far. */
  data(): string;
}

function connect(port: number, localAddress = "127.0.0.1"): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress });
    let data = "";
    let done = false;
    const closed = new Promise<string>((r) => {
      socket.on("data", (d: Uint8Array) => data += new TextDecoder().decode(d));
      socket.on("close", () => {
        done = true;
        r(data);
      });
    });
    socket.on("error", () => {});
    socket.once(
      "connect",
      () => resolve({ socket, closed, isClosed: () => done, data: () => data }),
    );
    socket.once("error", reject);
  });
}

async function closeAll(raws: Raw[]): Promise<void> {
  for (const r of raws) r.socket.destroy();
  await Promise.all(raws.map((r) => r.closed));
}

/** Headers of a Connect unary call announcing `length` bytes. */
const stalledHead = (length: number, type = "application/proto") =>
  `POST ${PATH} HTTP/1.1\r\nHost: x\r\nConnect-Protocol-Version: 1\r\n` +
  `Content-Type: ${type}\r\nContent-Length: ${length}\r\n\r\n`;

async function call(url: string, body: BodyInit, type: string): Promise<Response> {
  return await fetch(url + PATH, {
    method: "POST",
    body,
    headers: { "content-type": type, "connect-protocol-version": "1" },
  });
}

const binaryRequest = (jobId: string) =>
  toBinary(GetJobStatusRequestSchema, create(GetJobStatusRequestSchema, { jobId }));

/** Waits until `raw` received a whole response head matching `re`. */
async function answered(raw: Raw, re: RegExp, what: string): Promise<string> {
  await waitFor(() => re.test(raw.data()) || raw.isClosed(), { timeout: seconds(20), what });
  return raw.data();
}

const CASES: [HttpTransport, boolean][] = [
  ["iris", true],
  ["iris", false],
  ["deno", true],
  ["deno", false],
  ["node", true],
  ["node", false],
];
for (const [transport, fastUnary] of CASES) {
  const path = `${transport}, ${fastUnary ? "fast path" : "Connect path"}`;

  Deno.test(`${path}: stalled 60 MB bodies cost little memory, others are served, the deadline ends them`, async () => {
    const opts: ServeRpcOptions = { transport, fastUnary, requestTimeout: seconds(3) };
    await using server = serveRpc(routes, opts);
    const before = Deno.memoryUsage().rss;
    const raws: Raw[] = [];
    try {
      // 200 stalled bodies from 4 addresses (the per-client cap is 256).
      for (let i = 0; i < 200; i++) {
        const r = await connect(server.port, `127.0.0.${2 + (i % 4)}`);
        r.socket.write(stalledHead(60_000_000) + "A");
        raws.push(r);
      }
      // Another client is answered meanwhile.
      const res = await call(server.url, binaryRequest("ok"), "application/proto");
      assertEquals(res.status, 200);
      await res.arrayBuffer();
      const grown = Deno.memoryUsage().rss - before;
      // Reading with req.bytes() grew RSS by ~16 MB per stalled body (3 GB here).
      assert(grown < 150 * 2 ** 20, `RSS grew ${Math.round(grown / 2 ** 20)} MiB`);
      // The request deadline answers every stalled call (node: 408 and closes the connection;
      // iris and deno: deadline_exceeded).
      await waitFor(() => raws.every((r) => r.isClosed() || r.data() !== ""), {
        timeout: seconds(20),
        what: "stalled calls answered by the request deadline",
      });
      if (transport === "node") assertMatch(await raws[0]!.closed, /^HTTP\/1\.1 408/);
      else assertMatch(raws[0]!.data(), /^HTTP\/1\.1 504[^]*deadline_exceeded[^]*within 3\.0s/);
    } finally {
      await closeAll(raws);
    }
  });

  Deno.test(`${path}: a body past the limit fails while reading`, async () => {
    await using server = serveRpc(routes, { transport, fastUnary, readMaxBytes: 1024 });
    // Announced too large: refused before reading, the connection is not drained.
    const big = await connect(server.port);
    big.socket.write(stalledHead(60_000_000));
    const answer = await answered(big, /readMaxBytes 1024/, "an answer to the large body");
    big.socket.destroy();
    assertMatch(answer, /^HTTP\/1\.1 429/);
    assertMatch(answer, /message size 60000000 is larger than configured readMaxBytes 1024/);
    // No length, sent in chunks: refused as soon as it passes the limit.
    const chunked = await connect(server.port);
    chunked.socket.write(
      `POST ${PATH} HTTP/1.1\r\nHost: x\r\nConnect-Protocol-Version: 1\r\n` +
        `Content-Type: application/proto\r\nTransfer-Encoding: chunked\r\n\r\n`,
    );
    for (let i = 0; i < 3; i++) chunked.socket.write(`200\r\n${"x".repeat(512)}\r\n`);
    const refused = await answered(chunked, /readMaxBytes 1024/, "an answer to the chunked body");
    chunked.socket.destroy();
    await Promise.all([big.closed, chunked.closed]);
    assertMatch(refused, /^HTTP\/1\.1 429/);
    assertMatch(refused, /larger than configured readMaxBytes 1024/);
  });

  Deno.test(`${path}: JSON nested too deep is refused before parsing; brackets in strings do not count`, async () => {
    await using server = serveRpc(routes, { transport, fastUnary });
    const deep = `{"jobId":"x","unknown":${"[".repeat(1_000_000)}}`;
    const t0 = performance.now();
    const res = await call(server.url, deep, "application/json");
    const body = await res.json();
    assertEquals(res.status, 400);
    assertEquals(body.code, "invalid_argument");
    assertMatch(body.message, /JSON nests deeper than 64 levels/);
    assert(performance.now() - t0 < 10_000, "answered without parsing the whole text");
    const inString = await call(
      server.url,
      JSON.stringify({ jobId: "[".repeat(1000) + '{\\"' }),
      "application/json",
    );
    assertEquals(inString.status, 200, await inString.clone().text());
    assertEquals((await inString.json()).job.jobId, "[".repeat(1000) + '{\\"');
  });

  Deno.test(`${path}: unknown JSON fields are refused by name; binary keeps forward compatibility`, async () => {
    await using server = serveRpc(routes, { transport, fastUnary });
    const res = await call(
      server.url,
      JSON.stringify({ jobId: "x", maxRetriesFailures: 3 }),
      "application/json",
    );
    const body = await res.json();
    assertEquals(res.status, 400);
    assertEquals(body.code, "invalid_argument");
    assertMatch(body.message, /maxRetriesFailures/);
    // Field 99 (unknown to this schema) in binary is skipped, as protobuf wants.
    const known = binaryRequest("fwd");
    const withUnknown = new Uint8Array([...known, 0x98, 0x06, 0x01]);
    const ok = await call(server.url, withUnknown, "application/proto");
    assertEquals(ok.status, 200);
    await ok.arrayBuffer();
  });
}

for (const transport of ["iris", "node"] as const) {
  Deno.test(`${transport}: slow headers, silent connections and idle keep-alives are closed`, async () => {
    await slowClientsAreClosed({
      transport,
      headersTimeout: ms(400),
      idleTimeout: ms(400),
      requestTimeout: seconds(5),
    });
  });
}

Deno.test("the default server cuts off a client stalled in its headers, others are served", async () => {
  await using server = serveRpc(routes, { headersTimeout: ms(500) });
  const stalled = await connect(server.port);
  const t0 = performance.now();
  try {
    stalled.socket.write(`POST ${PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: appl`);
    const res = await call(server.url, binaryRequest("ok"), "application/proto");
    assertEquals(res.status, 200);
    await res.arrayBuffer();
    assertMatch(await stalled.closed, /^HTTP\/1\.1 408/);
    const took = performance.now() - t0;
    assert(took >= 450, `closed after ${took.toFixed(0)} ms, before the header timeout`);
  } finally {
    await closeAll([stalled]);
  }
});

async function slowClientsAreClosed(opts: ServeRpcOptions) {
  await using server = serveRpc(routes, opts);
  const raws: Raw[] = [];
  try {
    const silent = await connect(server.port);
    const slow = await connect(server.port);
    slow.socket.write(`GET / HTTP/1.1\r\nHost: x\r\n`);
    const drip = setInterval(() => {
      if (!slow.isClosed()) slow.socket.write("X-Drip: 1\r\n");
    }, 100);
    const idle = await connect(server.port);
    idle.socket.write(`GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n`);
    raws.push(silent, slow, idle);
    try {
      await waitFor(() => raws.every((r) => r.isClosed()), {
        timeout: seconds(10),
        what: "slow, silent and idle connections closed",
      });
    } finally {
      clearInterval(drip);
    }
    assertMatch(await slow.closed, /^HTTP\/1\.1 408/);
    assertMatch(await idle.closed, /^HTTP\/1\.1 404/);
  } finally {
    await closeAll(raws);
  }
}

for (const transport of ["iris", "node"] as const) {
  Deno.test(`${transport}: one address may hold only maxConnectionsPerClient connections; others are served`, async () => {
    await connectionCap(transport);
  });
}

async function connectionCap(transport: HttpTransport) {
  await using server = serveRpc(routes, { transport, maxConnectionsPerClient: 5 });
  const raws: Raw[] = [];
  try {
    for (let i = 0; i < 5; i++) raws.push(await connect(server.port, "127.0.0.2"));
    const sixth = await connect(server.port, "127.0.0.2");
    raws.push(sixth);
    if (transport === "node") {
      assertEquals(await sixth.closed, "", "the sixth connection is closed unanswered");
    } else {
      assertMatch(
        await sixth.closed,
        /^HTTP\/1\.1 429[^]*resource_exhausted[^]*too many connections from 127\.0\.0\.2 \(at most 5\)/,
      );
    }
    assert(raws.slice(0, 5).every((r) => !r.isClosed()), "the first five stay open");
    // Another address is served as usual.
    const other = await connect(server.port, "127.0.0.3");
    raws.push(other);
    other.socket.write(`GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assertMatch(await other.closed, /^HTTP\/1\.1 404/);
    // Once one of the five closes, the address may connect again.
    raws[0]!.socket.destroy();
    await raws[0]!.closed;
    await waitFor(async () => {
      const again = await connect(server.port, "127.0.0.2");
      raws.push(again);
      again.socket.write(`GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      return /^HTTP\/1\.1 404/.test(await again.closed);
    }, { timeout: seconds(5), what: "a new connection from 127.0.0.2 once one closed" });
  } finally {
    await closeAll(raws);
  }
}

Deno.test("deno: one address may have only maxConnectionsPerClient requests in flight; others are served", async () => {
  await using server = serveRpc(routes, { transport: "deno", maxConnectionsPerClient: 5 });
  const raws: Raw[] = [];
  try {
    for (let i = 0; i < 5; i++) {
      const r = await connect(server.port, "127.0.0.2");
      r.socket.write(stalledHead(1000) + "A");
      raws.push(r);
    }
    const sixth = await connect(server.port, "127.0.0.2");
    raws.push(sixth);
    sixth.socket.write(stalledHead(1000) + "A");
    const refused = await answered(sixth, /retry later/, "the sixth call refused");
    assertMatch(refused, /^HTTP\/1\.1 429[^]*resource_exhausted[^]*too many requests in flight/);
    // Another address is served as usual.
    const res = await call(server.url, binaryRequest("ok"), "application/proto");
    assertEquals(res.status, 200);
    await res.arrayBuffer();
    // Once one of the five goes, the address may call again.
    raws[0]!.socket.destroy();
    await raws[0]!.closed;
    await waitFor(async () => {
      const again = await connect(server.port, "127.0.0.2");
      raws.push(again);
      const body = binaryRequest("again");
      again.socket.write(stalledHead(body.byteLength));
      again.socket.write(body);
      return /^HTTP\/1\.1 200/.test(await answered(again, /\r\n\r\n/, "an answer"));
    }, { timeout: seconds(5), what: "a call from 127.0.0.2 once one ended" });
  } finally {
    await closeAll(raws);
  }
});

Deno.test("JsonDepthScanner counts across chunks and skips escaped quotes", () => {
  const s = new JsonDepthScanner(3);
  const enc = new TextEncoder();
  s.feed(enc.encode('{"a":"\\"[[[[[",'));
  s.feed(enc.encode('"b":[['));
  let refused = "";
  try {
    s.feed(enc.encode("["));
  } catch (e) {
    refused = String(e);
  }
  assertMatch(refused, /nests deeper than 3 levels/);
});

Deno.test("LaunchJob with a misspelt field is refused naming it; the job count is unchanged", async () => {
  await using c = startController();
  const res = await fetch(`${c.url}/iris.v1.ControllerService/LaunchJob`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify({
      spec: {
        name: "typo",
        entrypoint: { command: { argv: ["true"] } },
        maxRetriesFailures: 3,
      },
    }),
  });
  const body = await res.json();
  assertEquals(body.code, "invalid_argument");
  assertMatch(body.message, /maxRetriesFailures/);
  assertEquals(c.controller.jobs.jobs.size, 0);
});

Deno.test("iris: a header value a Headers object refuses is answered 400; a repeated field reads joined", async () => {
  const seen: (string | null)[] = [];
  await using server = serveRpc((router: ConnectRouter) => {
    router.service(ControllerService, {
      getJobStatus: (req, ctx) => {
        seen.push(ctx.requestHeader.get("x-twice"));
        return { job: { jobId: req.jobId } };
      },
    });
  }, { transport: "iris" });
  const raws: Raw[] = [];
  try {
    for (const value of ["a\u0000b", "price \u20ac"]) {
      const bad = await connect(server.port);
      raws.push(bad);
      bad.socket.write(`GET /x HTTP/1.1\r\nHost: x\r\nX-Bad: ${value}\r\n\r\n`);
      assertMatch(await bad.closed, /^HTTP\/1\.1 400/);
    }
    const body = binaryRequest("twice");
    const ok = await connect(server.port);
    raws.push(ok);
    ok.socket.write(
      `POST ${PATH} HTTP/1.1\r\nHost: x\r\nConnect-Protocol-Version: 1\r\n` +
        `Content-Type: application/proto\r\nX-Twice: 1\r\nx-twice:  2 \r\n` +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
    );
    ok.socket.write(body);
    assertMatch(await ok.closed, /^HTTP\/1\.1 200/);
    assertEquals(seen, ["1, 2"]);
  } finally {
    await closeAll(raws);
  }
});
