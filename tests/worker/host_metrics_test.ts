/**
 * Host metrics: the /proc/stat and /proc/meminfo parsers (against fixtures), CPU between two
 * readings, and the meter that turns them into heartbeat figures, reporting "unknown" (absent),
 * never 0, for what it cannot read; and that a sandbox granted only the host-metric `sys` names
 * gets host figures but no other system information.
 * @module
 */
import assert from "node:assert/strict";
import {
  countersFromCpuTimes,
  cpuMillicoresBetween,
  HOST_METRIC_SYS_PERMISSIONS,
  HostMeter,
  type HostSample,
  type HostSource,
  parseMeminfo,
  parseProcStat,
} from "../../src/worker/host_metrics.ts";
import { FakeClock, ms } from "../../src/time.ts";

const fixture = (name: string) =>
  Deno.readTextFileSync(new URL(`./fixtures/${name}`, import.meta.url));

const KB = 1024;

Deno.test("parseProcStat reads the aggregate cpu line and counts cores", () => {
  assert.deepEqual(parseProcStat(fixture("proc_stat_1.txt")), {
    busy: 10000 + 200 + 3000 + 300,
    total: 10000 + 200 + 3000 + 80000 + 500 + 300,
    cores: 4,
  });
  // Old kernels with only user nice system idle; no per-core lines counts as one core.
  assert.deepEqual(parseProcStat("cpu  10 0 5 85\n"), { busy: 15, total: 100, cores: 1 });
  for (const bad of ["", "intr 1 2 3\n", "cpu  1 2 x 4\n", "cpu  1 2\n", "cpu  -1 0 0 5\n"]) {
    assert.equal(parseProcStat(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("cpuMillicoresBetween: busy share of the ticks that passed, times the cores", () => {
  const a = parseProcStat(fixture("proc_stat_1.txt"))!;
  const b = parseProcStat(fixture("proc_stat_2.txt"))!;
  // 400 ticks passed on 4 cores, 100 of them busy: one core's worth.
  assert.equal(cpuMillicoresBetween(a, b), 1000);
  assert.equal(cpuMillicoresBetween(a, a), undefined, "no time passed");
  assert.equal(cpuMillicoresBetween(b, a), undefined, "counters went backwards");
  assert.equal(cpuMillicoresBetween(a, { ...b, cores: 8 }), undefined, "cores changed");
  assert.equal(cpuMillicoresBetween(a, { ...b, busy: a.busy + 400 }), 4000, "capped at all");
});

Deno.test("parseMeminfo: used is total minus available, with the pre-3.14 fallback", () => {
  assert.deepEqual(parseMeminfo(fixture("meminfo.txt")), {
    totalBytes: 16384000 * KB,
    usedBytes: (16384000 - 12288000) * KB,
  });
  // No MemAvailable: free + buffers + cached + reclaimable slab count as available.
  assert.deepEqual(parseMeminfo(fixture("meminfo_no_available.txt")), {
    totalBytes: 8192000 * KB,
    usedBytes: (8192000 - 1024000 - 256000 - 2048000 - 128000) * KB,
  });
  assert.equal(parseMeminfo(""), undefined);
  assert.equal(parseMeminfo("MemFree: 10 kB\n"), undefined);
  assert.equal(parseMeminfo("MemTotal: 0 kB\n"), undefined);
});

/** A HostSource over fixture texts; `files` can be changed between readings. */
function fakeHost(files: Record<string, string | undefined>) {
  const clock = new FakeClock();
  const source: HostSource = {
    readFile: (path) => files[path],
    cpuTimes: () => undefined,
    systemMemory: () => undefined,
    now: () => clock.monotonic(),
  };
  return { source, clock, files };
}

Deno.test("countersFromCpuTimes sums node:os cpus() times over the cores", () => {
  const core = (user: number, idle: number) => ({
    times: { user, nice: 1, sys: 2, idle, irq: 3 },
  });
  assert.deepEqual(countersFromCpuTimes([core(10, 100), core(20, 200)]), {
    busy: 10 + 20 + 2 * (1 + 2 + 3),
    total: 10 + 20 + 2 * (1 + 2 + 3) + 300,
    cores: 2,
  });
  assert.equal(countersFromCpuTimes([]), undefined);
  assert.equal(countersFromCpuTimes([core(NaN, 1)]), undefined);
});

Deno.test("HostMeter: memory at once, CPU from the second reading, rate-limited", () => {
  const { source, clock, files } = fakeHost({
    "/proc/stat": fixture("proc_stat_1.txt"),
    "/proc/meminfo": fixture("meminfo.txt"),
  });
  const meter = new HostMeter(source, ms(500));
  const first = meter.read();
  assert.deepEqual(first, {
    cpuTotalMillicores: 4000,
    memoryUsedBytes: 4096000 * KB,
    memoryTotalBytes: 16384000 * KB,
  });
  assert.equal("cpuMillicores" in first, false, "CPU is unknown after one reading, not 0");
  files["/proc/stat"] = fixture("proc_stat_2.txt");
  clock.jump(ms(200));
  assert.equal(meter.read(), first, "a reading within minInterval repeats the last sample");
  clock.jump(ms(800));
  assert.equal(meter.read().cpuMillicores, 1000);
});

Deno.test("HostMeter: unreadable host figures are absent, never 0", () => {
  const { source, clock, files } = fakeHost({});
  const meter = new HostMeter(source, ms(0));
  assert.deepEqual(meter.read(), {});
  clock.jump(ms(1000));
  assert.deepEqual(meter.read(), {});
  // Without /proc (a sandbox): node:os cpus() and Deno.systemMemoryInfo().
  let busy = 0;
  const withSys = new HostMeter({
    ...source,
    cpuTimes: () => ({ busy: busy += 500, total: busy * 2, cores: 2 }),
    systemMemory: () => ({ total: 100, available: 30 }),
  }, ms(0));
  assert.deepEqual(withSys.read(), {
    cpuTotalMillicores: 2000,
    memoryUsedBytes: 70,
    memoryTotalBytes: 100,
  });
  assert.equal(withSys.read().cpuMillicores, 1000);
  // CPU readable, then not: the CPU figure goes back to unknown.
  files["/proc/stat"] = fixture("proc_stat_1.txt");
  clock.jump(ms(1000));
  meter.read();
  files["/proc/stat"] = undefined;
  clock.jump(ms(1000));
  assert.deepEqual(meter.read(), {});
  // Counters from different sources (ticks vs ms) are never compared.
  let calls = 0;
  const switching = new HostMeter({
    ...source,
    readFile: (path) => path === "/proc/stat" && calls++ === 0 ? fixture("proc_stat_1.txt") : "",
    cpuTimes: () => ({ busy: 1e12, total: 2e12, cores: 4 }),
  }, ms(0));
  switching.read();
  assert.equal(switching.read().cpuMillicores, undefined);
  assert.equal(switching.read().cpuMillicores, undefined, "same counters again: no time passed");
});

Deno.test("HostMeter reads this machine's /proc when it may", () => {
  const sample = new HostMeter(undefined, ms(0)).read();
  if (Deno.build.os !== "linux") return;
  assert.ok(sample.memoryTotalBytes! > 0 && sample.memoryUsedBytes! > 0, JSON.stringify(sample));
  assert.ok(sample.cpuTotalMillicores! >= 1000, JSON.stringify(sample));
});

Deno.test("a sandbox with only the host-metric sys names reads host CPU and memory, nothing else", async () => {
  const code = new URL("../../", import.meta.url).pathname;
  const thread = new Worker(new URL("./host_metrics_entry.ts", import.meta.url), {
    type: "module",
    deno: {
      permissions: {
        read: [code],
        write: false,
        net: false,
        run: false,
        env: false,
        sys: [...HOST_METRIC_SYS_PERMISSIONS],
        ffi: false,
        import: false,
      },
    },
  });
  try {
    const reply = new Promise<Record<string, unknown>>((resolve, reject) => {
      thread.onmessage = (e) => resolve(e.data);
      thread.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
      };
    });
    thread.postMessage("go");
    const { sample, ...denied } = await reply;
    assert.deepEqual(denied, {
      hostnameDenied: true,
      etcHostnameDenied: true,
      procStatDenied: true,
      interfacesDenied: true,
    });
    if (Deno.build.os !== "linux") return;
    const s = sample as HostSample;
    assert.ok(s.memoryTotalBytes! > 0 && s.memoryUsedBytes! > 0, JSON.stringify(s));
    assert.ok(s.cpuTotalMillicores! >= 1000, JSON.stringify(s));
  } finally {
    thread.terminate();
  }
});
