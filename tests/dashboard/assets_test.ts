import assert from "node:assert/strict";
import { ASSETS_GEN_URL, generateAssetsModule } from "../../src/dashboard/build.ts";

Deno.test("assets_gen.ts matches a fresh build of src/dashboard/app/", async () => {
  const fresh = await generateAssetsModule();
  const committed = await Deno.readTextFile(ASSETS_GEN_URL);
  assert.ok(
    fresh === committed,
    "src/dashboard/assets_gen.ts is stale: run `deno run -A src/dashboard/build.ts` and commit the result",
  );
});
