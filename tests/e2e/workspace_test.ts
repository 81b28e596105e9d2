/**
 * Shipping a workspace: the client packs a directory, uploads it through the RPC API, the worker
 * fetches and unpacks it, and a TypeScript module runs from it under scoped Deno permissions.
 * A task that reaches outside its scope fails with a clear permission error in its logs; a
 * malicious archive is refused at upload, naming the entry.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { IrisClient, JobState } from "../../mod.ts";
import { startController } from "../../src/controller/server.ts";
import { startWorker } from "../../src/worker/mod.ts";
import { FileBundleStore, rpcBundleFetcher } from "../../src/bundle/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";

Deno.test("a shipped workspace runs as a permission-scoped TypeScript task", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-ws-" });
  try {
    await Deno.mkdir(`${root}/ws/lib`, { recursive: true });
    await Deno.writeTextFile(`${root}/ws/lib/data.txt`, "shipped data");
    await Deno.writeTextFile(`${root}/ws/secret.log`, "must not ship");
    await Deno.writeTextFile(`${root}/ws/.irisignore`, "*.log\n");
    await Deno.writeTextFile(
      `${root}/ws/main.ts`,
      `console.log("read:", await Deno.readTextFile("lib/data.txt"), "args:", Deno.args.join(","));
let shipped = true;
try { await Deno.stat("secret.log"); } catch { shipped = false; }
console.log("ignored file shipped:", shipped);
try {
  await Deno.readTextFile(${JSON.stringify(`${root}/outside.txt`)});
  console.log("escaped");
} catch (err) {
  console.error("denied:", (err as Error).name, (err as Error).message);
}`,
    );
    await Deno.writeTextFile(`${root}/outside.txt`, "outside the sandbox");
    await using controller = startController({ bundles: new FileBundleStore(`${root}/bundles`) });
    await using _worker = await startWorker({
      controllerUrl: controller.url,
      rootDir: `${root}/worker`,
      resources: { cpuMillicores: 2000, memoryBytes: 2 ** 31 },
      bundleFetcher: rpcBundleFetcher(controller.url, `${root}/worker/bundles`),
    });
    const client = new IrisClient(controller.url);
    await waitFor(async () => (await client.workers()).length === 1, {
      timeout: seconds(10),
      what: "the worker",
    });

    const bundleId = await client.uploadWorkspace(`${root}/ws`);
    assertMatch(bundleId, /^sha256-[0-9a-f]{64}$/);
    const jobId = await client.submit({
      name: "ts-task",
      module: { path: "main.ts", args: ["x", "y"] },
      bundleId,
      memory: 2 ** 29,
    });
    const job = await client.wait(jobId, { timeout: seconds(60) });
    assertEquals(job.state, JobState.SUCCEEDED, job.error);
    const lines = await client.logs(jobId);
    const out = lines.filter((l) => l.stream === "stdout").map((l) => l.text);
    assert(out.includes("read: shipped data args: x,y"), out.join("\n"));
    assert(out.includes("ignored file shipped: false"), out.join("\n"));
    const err = lines.filter((l) => l.stream === "stderr").map((l) => l.text).join("\n");
    assertMatch(err, /denied: NotCapable Requires read access to ".*outside\.txt"/);
    assert(!out.includes("escaped"));

    // A traversal entry is refused at upload, naming the entry; nothing is stored.
    const evil = tarWith("../evil.txt", "x");
    const gz = new Uint8Array(
      await new Response(new Blob([evil]).stream().pipeThrough(new CompressionStream("gzip")))
        .arrayBuffer(),
    );
    const refused = await client.uploadBundle(gz).then(() => "", (e) => String(e));
    assertMatch(refused, /invalid_argument/);
    assertMatch(refused, /\.\.\/evil\.txt/);
    const stored = await Array.fromAsync(Deno.readDir(`${root}/bundles`));
    assertEquals(stored.filter((e) => e.name.startsWith("sha256-")).length, 1);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** A one-file ustar archive (enough to exercise the server's checks). */
function tarWith(name: string, content: string): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder();
  const body: Uint8Array<ArrayBuffer> = enc.encode(content);
  const header = new Uint8Array(512);
  const put = (off: number, text: string) => header.set(enc.encode(text), off);
  put(0, name);
  put(100, "0000644\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, body.length.toString(8).padStart(11, "0") + "\0");
  put(136, "00000000000\0");
  put(148, "        ");
  put(156, "0");
  put(257, "ustar\0");
  put(263, "00");
  const sum = header.reduce((a, b) => a + b, 0);
  put(148, sum.toString(8).padStart(6, "0") + "\0 ");
  const out = new Uint8Array(512 + Math.ceil(body.length / 512) * 512 + 1024);
  out.set(header, 0);
  out.set(body, 512);
  return out;
}
