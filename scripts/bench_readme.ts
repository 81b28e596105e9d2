/**
 * `deno task bench:readme`: rewrites the README's performance table from
 * bench/results/latest.json (bench/report.ts). `--check` only says whether it is up to date.
 * @module
 */
import { type BenchJson, withSection } from "../bench/report.ts";

const root = new URL("../", import.meta.url);
const json = JSON.parse(
  await Deno.readTextFile(new URL("bench/results/latest.json", root)),
) as BenchJson;
const readmeUrl = new URL("README.md", root);
const readme = await Deno.readTextFile(readmeUrl);
const next = withSection(readme, json);
if (Deno.args.includes("--check")) {
  if (next !== readme) {
    console.error(
      "README.md's performance table is not the one latest.json gives: run `deno task bench:readme`",
    );
    Deno.exit(1);
  }
  console.log("README.md's performance table matches bench/results/latest.json");
} else if (next !== readme) {
  await Deno.writeTextFile(readmeUrl, next);
  console.log("README.md: performance table regenerated from bench/results/latest.json");
} else console.log("README.md: performance table already up to date");
