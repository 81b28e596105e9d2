/**
 * The README's performance table is generated (#20): it must be exactly what bench/report.ts
 * renders from the committed bench/results/latest.json, so no figure is typed by hand.
 */
import { assertEquals } from "./_helpers/assert.ts";
import { type BenchJson, renderReadmeSection, withSection } from "../bench/report.ts";

const root = new URL("../", import.meta.url);

Deno.test("README's performance table is the one bench/results/latest.json gives", async () => {
  const json = JSON.parse(
    await Deno.readTextFile(new URL("bench/results/latest.json", root)),
  ) as BenchJson;
  const readme = await Deno.readTextFile(new URL("README.md", root));
  assertEquals(withSection(readme, json), readme, "run `deno task bench:readme`");
  assertEquals(typeof json.ratios, "object", "latest.json has ratios");
  assertEquals(Array.isArray(json.fleet), true, "latest.json has fleet figures");
});

Deno.test("the rendered table changes with the figures (the check can fail)", () => {
  const a = renderReadmeSection({ ratios: { jobsPerSVsSpawnCeiling: 0.5 } });
  const b = renderReadmeSection({ ratios: { jobsPerSVsSpawnCeiling: 0.25 } });
  assertEquals(a.includes("50 % of the spawn ceiling"), true);
  assertEquals(b.includes("25 % of the spawn ceiling"), true);
});

Deno.test("the throughput row shows every run beside the spawn floor measured just before it", () => {
  const runs = [
    { jobsPerS: 900, spawnP50Ms: 1.1, vsSpawnCeiling: 0.495 },
    { jobsPerS: 1000, spawnP50Ms: 1.04, vsSpawnCeiling: 0.52 },
    { jobsPerS: 1100, spawnP50Ms: 1, vsSpawnCeiling: 0.55 },
  ];
  const text = renderReadmeSection({
    ratios: { jobsPerSVsSpawnCeilingWorkerProcess: 0.52 },
    iris: { workerProcess: { throughput: { jobs: 1000, jobsPerS: 1000, runs } } },
  });
  assertEquals(
    text.includes(
      "52 % of the spawn ceiling (median of 3 runs: 50 %, 52 %, 55 %; spawn p50 just before " +
        "each: 1.10 ms, 1.04 ms, 1.00 ms)",
    ),
    true,
    text,
  );
});

Deno.test("the throughput row names the uncounted warm-up run's share after the runs", () => {
  const runs = [
    { jobsPerS: 900, spawnP50Ms: 1.1, vsSpawnCeiling: 0.495 },
    { jobsPerS: 1000, spawnP50Ms: 1.04, vsSpawnCeiling: 0.52 },
    { jobsPerS: 1100, spawnP50Ms: 1, vsSpawnCeiling: 0.55 },
  ];
  const warmup = { jobsPerS: 800, spawnP50Ms: 1.05, vsSpawnCeiling: 0.42 };
  const text = renderReadmeSection({
    ratios: { jobsPerSVsSpawnCeilingWorkerProcess: 0.52 },
    iris: { workerProcess: { throughput: { jobs: 1000, jobsPerS: 1000, runs, warmup } } },
  });
  assertEquals(
    text.includes(
      "52 % of the spawn ceiling (median of 3 runs: 50 %, 52 %, 55 %; spawn p50 just before " +
        "each: 1.10 ms, 1.04 ms, 1.00 ms; warm-up run before them: 42 %)",
    ),
    true,
    text,
  );
});
