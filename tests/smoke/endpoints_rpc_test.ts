/**
 * Seed 002: RPC through the client, never raw HTTP. The smoke jobs' task programs reach the
 * controller through IrisClient; no smoke source builds a Connect request by hand.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";

const SMOKE = new URL("../../src/smoke/", import.meta.url).pathname;

Deno.test("no smoke source posts to a /iris.v1.<Service>/<Method> path with fetch", async () => {
  const offenders: string[] = [];
  for await (const e of Deno.readDir(SMOKE)) {
    if (!e.isFile || !e.name.endsWith(".ts")) continue;
    const text = await Deno.readTextFile(`${SMOKE}${e.name}`);
    if (/\/iris\.v1\.\w+Service\//.test(text)) offenders.push(e.name);
  }
  assertEquals(offenders, []);
});

Deno.test("the endpoints task program registers and looks up through IrisClient", async () => {
  const text = await Deno.readTextFile(`${SMOKE}endpoint_task.ts`);
  assert(/client\.registerEndpoint\(/.test(text), "registers through the client");
  assert(/client\.lookupEndpoint\(/.test(text), "looks up through the client");
  const jobs = await Deno.readTextFile(`${SMOKE}jobs.ts`);
  assert(jobs.includes("endpoint_task.ts"), "the endpoints job runs endpoint_task.ts");
});
