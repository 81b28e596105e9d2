/** Durations, sizes and CPU amounts parse (and bad ones are rejected); "did you mean" hints. */
import assert from "node:assert/strict";
import { formatConfigBytes, formatConfigDuration } from "../../src/format.ts";
import { parseCpuMillicores, parseDurationMs, parseSizeBytes } from "../../src/config/mod.ts";
import { suggestKey } from "../../src/config/issues.ts";

Deno.test("durations: human strings and numbers of seconds", () => {
  assert.equal(parseDurationMs("30s"), 30_000);
  assert.equal(parseDurationMs("5m"), 300_000);
  assert.equal(parseDurationMs("250ms"), 250);
  assert.equal(parseDurationMs("1.5s"), 1500);
  assert.equal(parseDurationMs("2h"), 7_200_000);
  assert.equal(parseDurationMs(" 10s "), 10_000);
  assert.equal(parseDurationMs(30), 30_000);
  assert.equal(parseDurationMs(0.25), 250);
  assert.equal(parseDurationMs("0"), 0);
});

Deno.test("durations: bad values are rejected", () => {
  for (const bad of ["5 parsecs", "", "s", "-5s", "5d", "1e3s", "5 m s", "abc", "∞"]) {
    assert.equal(parseDurationMs(bad), undefined, bad);
  }
  for (const bad of [-1, NaN, Infinity, 1e12, true, null, {}, [], undefined]) {
    assert.equal(parseDurationMs(bad), undefined, String(bad));
  }
});

Deno.test("sizes: binary and decimal units, plain bytes", () => {
  assert.equal(parseSizeBytes("8GiB"), 8 * 2 ** 30);
  assert.equal(parseSizeBytes("512MiB"), 512 * 2 ** 20);
  assert.equal(parseSizeBytes("1.5GB"), 1_500_000_000);
  assert.equal(parseSizeBytes("50GB"), 50e9);
  assert.equal(parseSizeBytes("4Gi"), 4 * 2 ** 30);
  assert.equal(parseSizeBytes("1tib"), 2 ** 40);
  assert.equal(parseSizeBytes("100 KB"), 100_000);
  assert.equal(parseSizeBytes("42B"), 42);
  assert.equal(parseSizeBytes("1024"), 1024);
  assert.equal(parseSizeBytes(4096), 4096);
});

Deno.test("sizes: bad values are rejected", () => {
  for (const bad of ["8XB", "GiB", "-1GiB", "8 parsecs", "", "1e3", "2PiB"]) {
    assert.equal(parseSizeBytes(bad), undefined, bad);
  }
  for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 60, false, null, []]) {
    assert.equal(parseSizeBytes(bad), undefined, String(bad));
  }
});

Deno.test("cpu: cores as numbers or strings, millicores with m", () => {
  assert.equal(parseCpuMillicores(4), 4000);
  assert.equal(parseCpuMillicores(0.5), 500);
  assert.equal(parseCpuMillicores("2"), 2000);
  assert.equal(parseCpuMillicores("500m"), 500);
  assert.equal(parseCpuMillicores("0.25"), 250);
  for (const bad of [-1, "four", "1 core", NaN, Infinity, 1e9, null, true]) {
    assert.equal(parseCpuMillicores(bad), undefined, String(bad));
  }
});

Deno.test("formatters are compact", () => {
  assert.equal(formatConfigDuration(250), "250ms");
  assert.equal(formatConfigDuration(1000), "1s");
  assert.equal(formatConfigDuration(1500), "1.5s");
  assert.equal(formatConfigDuration(90_000), "1m30s");
  assert.equal(formatConfigDuration(300_000), "5m");
  assert.equal(formatConfigDuration(3_600_000), "1h");
  assert.equal(formatConfigDuration(5_400_000), "1h30m");
  assert.equal(formatConfigBytes(8 * 2 ** 30), "8GiB");
  assert.equal(formatConfigBytes(1.5 * 2 ** 30), "1.5GiB");
  assert.equal(formatConfigBytes(100), "100B");
});

Deno.test("suggestKey finds typos, camelCase and _ms suffixes, and stays quiet otherwise", () => {
  const keys = ["min_slices", "max_slices", "scale_down_delay", "zone", "region"];
  assert.equal(suggestKey("max_slice", keys), "max_slices");
  assert.equal(suggestKey("maxSlices", keys), "max_slices");
  assert.equal(suggestKey("scale_down_delay_ms", keys), "scale_down_delay");
  assert.equal(suggestKey("zon", keys), "zone");
  assert.equal(suggestKey("regoin", keys), "region");
  assert.equal(suggestKey("frobnicate", keys), undefined);
  assert.equal(suggestKey("x", keys), undefined);
});
