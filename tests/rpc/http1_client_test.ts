/**
 * The lean HTTP/1.1 client transport (src/rpc/http1_client.ts) against every server transport:
 * answers, errors with their codes and metadata, the bearer token, interceptors and call headers,
 * calls spaced wider than the server's idle timeout, an unreachable server (a transient error, as with
 * fetch), streaming calls carried by the fetch fallback, and the per-server connection cap.
 */
import { Code, ConnectError, type ConnectRouter, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { type HttpTransport, serveRpc } from "../../src/rpc/server.ts";
import {
  connectionStats,
  createHttp1Transport,
  MAX_CONNECTIONS_PER_SERVER,
} from "../../src/rpc/http1_client.ts";
import { controllerClient, rpcTransport } from "../../src/rpc/client.ts";
import { ControllerService } from "../../src/rpc/mod.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";

function routes(router: ConnectRouter) {
  router.service(ControllerService, {
    getJobStatus(req, ctx) {
      if (req.jobId === "missing") {
        throw new ConnectError("job missing does not exist", Code.NotFound, { "x-why": "gone" });
      }
      if (req.jobId === "with-header") ctx.responseHeader.set("x-answer", "yes");
      return {
        job: {
          jobId: req.jobId,
          user: `${ctx.requestHeader.get("authorization") ?? ""}|${
            ctx.requestHeader.get("x-extra") ?? ""
          }`,
        },
      };
    },
    async *execInTask(req) {
      for (let i = 0; i < 3; i++) {
        yield { stdout: new TextEncoder().encode(`${req.taskId}:${i}\n`) };
      }
    },
  });
}

async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected an error");
}

for (const transport of ["iris", "deno", "node"] as HttpTransport[]) {
  Deno.test(`http1 client against ${transport}: answers, errors, token, headers, streaming`, async () => {
    await using server = serveRpc(routes, { transport });
    const client = controllerClient(server.url, { token: "t0k" });
    // Many calls, sequential and concurrent, over kept-alive connections.
    for (let i = 0; i < 20; i++) {
      assertEquals((await client.getJobStatus({ jobId: `j${i}` })).job?.jobId, `j${i}`);
    }
    const many = await Promise.all(
      Array.from({ length: 40 }, (_, i) => client.getJobStatus({ jobId: `c${i}` })),
    );
    assertEquals(many.map((r) => r.job?.jobId), Array.from({ length: 40 }, (_, i) => `c${i}`));
    assertEquals((await client.getJobStatus({ jobId: "x" })).job?.user, "Bearer t0k|");
    const withHeader = await client.getJobStatus({ jobId: "x" }, { headers: { "x-extra": "e" } });
    assertEquals(withHeader.job?.user, "Bearer t0k|e");
    // The answer's header (made only when read) holds every field the server sent.
    let header = new Headers();
    await client.getJobStatus({ jobId: "with-header" }, { onHeader: (h) => header = h });
    assertEquals(header.get("x-answer"), "yes");
    assertEquals(new Headers(header).get("content-type"), "application/proto");
    assert([...header.keys()].includes("x-answer"), [...header.keys()].join());
    const err = await errorOf(client.getJobStatus({ jobId: "missing" }));
    assertEquals(err.code, Code.NotFound);
    assertEquals(err.rawMessage, "job missing does not exist");
    assertEquals(err.metadata.get("x-why"), "gone");
    const unimplemented = await errorOf(client.listJobs({}));
    assertEquals(unimplemented.code, Code.Unimplemented);
    // Server-streaming goes over fetch.
    const lines: string[] = [];
    for await (const m of client.execInTask({ taskId: "t" })) {
      lines.push(new TextDecoder().decode(m.stdout));
    }
    assertEquals(lines.join(""), "t:0\nt:1\nt:2\n");
  });
}

Deno.test("http1 client: calls after pauses longer than the server's idle timeout succeed", async () => {
  await using server = serveRpc(routes, { idleTimeout: ms(100) });
  const client = controllerClient(server.url);
  for (let i = 0; i < 3; i++) {
    assertEquals((await client.getJobStatus({ jobId: `a${i}` })).job?.jobId, `a${i}`);
    await new Promise((r) => setTimeout(r, 300)); // past the server's idle timeout
  }
});

Deno.test("http1 client: interceptors see the call; an unreachable server is a transient error", async () => {
  await using server = serveRpc(routes);
  const seen: string[] = [];
  const transport = createHttp1Transport({
    baseUrl: server.url,
    interceptors: [(next) => (req) => {
      seen.push(req.method.name);
      req.header.set("x-extra", "from-interceptor");
      return next(req);
    }],
    fallback: createConnectTransport({ baseUrl: server.url, useBinaryFormat: true }),
  });
  const client = createClient(ControllerService, transport);
  assertEquals((await client.getJobStatus({ jobId: "i" })).job?.user, "|from-interceptor");
  assertEquals(seen, ["GetJobStatus"]);
  // A port nobody listens on: like fetch, Unknown with a TypeError cause (src/client retries it).
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const down = createClient(ControllerService, rpcTransport(`http://127.0.0.1:${port}`));
  const err = await errorOf(down.getJobStatus({ jobId: "x" }));
  assertEquals(err.code, Code.Unknown);
  assert(err.cause instanceof TypeError, `cause: ${err.cause}`);
  assertMatch(err.message, /error sending request/);
});

Deno.test("http1 client: at most MAX_CONNECTIONS_PER_SERVER connections to a server; more calls wait their turn", async () => {
  let inFlight = 0;
  let most = 0;
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  await using server = serveRpc((router: ConnectRouter) => {
    router.service(ControllerService, {
      async getJobStatus(req) {
        inFlight++;
        most = Math.max(most, inFlight);
        await released;
        inFlight--;
        return { job: { jobId: req.jobId } };
      },
    });
  }, { maxConnectionsPerClient: MAX_CONNECTIONS_PER_SERVER + 8 });
  const client = controllerClient(server.url);
  const n = MAX_CONNECTIONS_PER_SERVER + 36;
  const calls = Array.from({ length: n }, (_, i) => client.getJobStatus({ jobId: `h${i}` }));
  // One more that gives up while it waits for a connection: it leaves the queue.
  const abort = new AbortController();
  const gaveUp = errorOf(client.getJobStatus({ jobId: "late" }, { signal: abort.signal }));
  await waitFor(
    () => inFlight === MAX_CONNECTIONS_PER_SERVER && connectionStats(server.url).waiting === 37,
    {
      timeout: seconds(10),
      what: "the pool full and the rest waiting",
    },
  );
  abort.abort();
  assertEquals((await gaveUp).code, Code.Canceled);
  assertEquals(connectionStats(server.url).waiting, 36);
  release();
  const answers = await Promise.all(calls);
  assertEquals(answers.map((r) => r.job?.jobId), Array.from({ length: n }, (_, i) => `h${i}`));
  // Nothing beyond the cap reached the server, and no call was refused by its per-address cap.
  assertEquals(most, MAX_CONNECTIONS_PER_SERVER);
  const stats = connectionStats(server.url);
  assertEquals([stats.open, stats.waiting], [stats.idle, 0]);
  assert(stats.open <= MAX_CONNECTIONS_PER_SERVER, `open: ${stats.open}`);
});

Deno.test("http1 client: a deadline is sent, met calls answer, a missed one fails DeadlineExceeded, a caller's abort Canceled", async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  await using server = serveRpc((router: ConnectRouter) => {
    router.service(ControllerService, {
      async getJobStatus(req, ctx) {
        if (req.jobId === "slow") await released;
        return {
          job: { jobId: req.jobId, user: ctx.requestHeader.get("connect-timeout-ms") ?? "" },
        };
      },
    });
  });
  const client = controllerClient(server.url);
  const abort = new AbortController();
  for (let i = 0; i < 5; i++) {
    const r = await client.getJobStatus({ jobId: "quick" }, {
      timeoutMs: 5000,
      signal: abort.signal,
    });
    assertEquals([r.job?.jobId, r.job?.user], ["quick", "5000"]);
  }
  const t0 = performance.now();
  const missed = await errorOf(client.getJobStatus({ jobId: "slow" }, { timeoutMs: 100 }));
  assertEquals(missed.code, Code.DeadlineExceeded);
  assertMatch(missed.message, /the operation timed out/);
  assert(performance.now() - t0 < 5000, "failed at its deadline");
  const cancelled = errorOf(
    client.getJobStatus({ jobId: "slow" }, { timeoutMs: 60_000, signal: abort.signal }),
  );
  abort.abort();
  assertEquals((await cancelled).code, Code.Canceled);
  release();
  // The connections the deadline and the abort closed are not reused: calls go on.
  assertEquals(
    (await client.getJobStatus({ jobId: "after" }, { timeoutMs: 5000 })).job?.jobId,
    "after",
  );
});
