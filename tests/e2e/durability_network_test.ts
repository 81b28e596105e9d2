/**
 * A flaky network between client and controller: a loopback TCP proxy forwards every request but
 * cuts the connection instead of delivering some responses. The controller has processed (and
 * committed) those calls; the client sees a broken connection, retries with backoff and the same
 * request id, and so every submit yields exactly one job.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { IrisClient, JobState } from "../../mod.ts";
import { startController } from "../../src/controller/server.ts";
import { seconds } from "../../src/time.ts";

/** A TCP proxy to `target` that drops the response of every `dropEvery`-th call. */
interface FlakyProxy extends AsyncDisposable {
  readonly url: string;
  /** Responses cut so far. */
  readonly dropped: number;
  /** Requests forwarded so far (one per call: request and reply alternate on a connection). */
  readonly forwarded: number;
}

function flakyProxy(target: URL, dropEvery: number): FlakyProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const pumps = new Set<Promise<void>>();
  let responses = 0;
  const stats = { dropped: 0, forwarded: 0 };
  const closeBoth = (a: Deno.Conn, b: Deno.Conn) => {
    for (const c of [a, b]) {
      if (conns.delete(c)) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
    }
  };

  const serveConn = async (client: Deno.Conn) => {
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect({ hostname: target.hostname, port: Number(target.port) });
    } catch {
      closeBoth(client, client);
      return;
    }
    conns.add(upstream);
    // HTTP/1.1 without pipelining: the first bytes from the server after bytes from the client
    // start a new response. That is where a call's reply is delivered or dropped.
    let awaitingReply = false;
    const up = (async () => {
      const buf = new Uint8Array(64 * 1024);
      try {
        while (true) {
          const n = await client.read(buf);
          if (n === null) break;
          if (!awaitingReply) stats.forwarded++;
          awaitingReply = true;
          await writeAll(upstream, buf.subarray(0, n));
        }
      } catch { /* a side closed */ }
      closeBoth(client, upstream);
    })();
    const down = (async () => {
      const buf = new Uint8Array(64 * 1024);
      try {
        while (true) {
          const n = await upstream.read(buf);
          if (n === null) break;
          if (awaitingReply) {
            awaitingReply = false;
            if (++responses % dropEvery === 0) {
              stats.dropped++;
              break; // the request was processed; its reply never arrives
            }
          }
          await writeAll(client, buf.subarray(0, n));
        }
      } catch { /* a side closed */ }
      closeBoth(client, upstream);
    })();
    await Promise.all([up, down]);
  };

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        const p = serveConn(conn);
        pumps.add(p);
        p.finally(() => pumps.delete(p));
      }
    } catch { /* listener closed */ }
  })();

  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    get dropped() {
      return stats.dropped;
    },
    get forwarded() {
      return stats.forwarded;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const c of [...conns]) closeBoth(c, c);
      await Promise.allSettled([...pumps]);
    },
  };
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

Deno.test("submits through a proxy that drops every third response make exactly one job each", async () => {
  await using controller = startController({ port: 0 });
  await using proxy = flakyProxy(new URL(controller.url), 3);
  const clients = 4;
  const perClient = 15;
  // No worker: every job stays PENDING, so a second job of the same name would be refused
  // (AlreadyExists) and fail the test rather than hide behind a replaced job.
  const returned = (await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const client = new IrisClient(proxy.url, { retryFor: seconds(30) });
      const ids: string[] = [];
      for (let i = 0; i < perClient; i++) {
        ids.push(await client.submit({ name: `flaky-${c}-${i}`, command: ["true"] }));
      }
      return ids;
    }),
  )).flat();
  const total = clients * perClient;
  assert(proxy.dropped >= total / 4, `responses dropped: ${proxy.dropped}`);
  assert(proxy.forwarded > total, `submits were retried (${proxy.forwarded} requests)`);

  // The truth, straight from the controller (not through the proxy).
  const direct = new IrisClient(controller.url);
  const { jobs, total: listed } = await direct.list({ prefix: "/", limit: 5000 });
  assertEquals(listed, total);
  assertEquals(new Set(returned).size, total);
  assertEquals(jobs.map((j) => j.jobId).sort(), [...returned].sort());
  assert(jobs.every((j) => j.state === JobState.PENDING));
  console.log(
    `flaky network: ${total} submits, ${proxy.forwarded} requests, ${proxy.dropped} responses dropped, ${listed} jobs`,
  );
});
