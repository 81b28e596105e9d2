/**
 * PortAllocator: distinct free ports, release, exhaustion, busy ports, sharing; portEnvName().
 * @module
 */
import assert from "node:assert/strict";
import { ResourceExhaustedError } from "../../src/errors.ts";
import { PortAllocator, portEnvName } from "../../src/worker/ports.ts";

Deno.test("PortAllocator.allocate() hands out distinct ports from its range until released", () => {
  const ports = new PortAllocator({ min: 31000, max: 31004 });
  const got = [1, 2, 3, 4, 5].map(() => ports.allocate());
  assert.equal(new Set(got).size, 5);
  assert.ok(got.every((p) => p >= 31000 && p <= 31004));
  assert.equal(ports.inUse, 5);
  assert.throws(() => ports.allocate(), ResourceExhaustedError);
  ports.release(got[2]!);
  assert.equal(ports.allocate(), got[2]);
  ports.release(got);
  assert.equal(ports.inUse, 0);
});

Deno.test("PortAllocator.allocate() skips a port something else is listening on", () => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 31010 });
  try {
    const ports = new PortAllocator({ min: 31010, max: 31011 });
    assert.equal(ports.allocate(), 31011);
    assert.throws(() => ports.allocate(), ResourceExhaustedError);
    assert.equal(ports.inUse, 1);
  } finally {
    busy.close();
  }
});

Deno.test("PortAllocator.allocateNamed() gives one port per distinct name, all or nothing", () => {
  const ports = new PortAllocator({ min: 31020, max: 31022 });
  const named = ports.allocateNamed(["http", "grpc", "http"]);
  assert.deepEqual(Object.keys(named).sort(), ["grpc", "http"]);
  assert.throws(() => ports.allocateNamed(["a", "b"]), ResourceExhaustedError);
  assert.equal(ports.inUse, 2);
});

Deno.test("PortAllocator.fromShared() views the same table, so two holders never get one port", () => {
  const a = new PortAllocator({ min: 31030, max: 31031 });
  const b = PortAllocator.fromShared(a.shared);
  const p1 = a.allocate();
  const p2 = b.allocate();
  assert.notEqual(p1, p2);
  assert.throws(() => a.allocate(), ResourceExhaustedError);
  b.release(p1);
  assert.equal(a.allocate(), p1);
  assert.throws(() => PortAllocator.fromShared({ ...a.shared, max: 31040 }), /does not match/);
});

Deno.test("new PortAllocator() rejects a bad range", () => {
  assert.throws(() => new PortAllocator({ min: 0 }), /min: must be an integer port/);
  assert.throws(
    () => new PortAllocator({ min: 5000, max: 4000 }),
    /max: must be an integer port in 5000\.\.65535/,
  );
});

Deno.test("portEnvName() upper-cases and replaces non-alphanumerics", () => {
  assert.equal(portEnvName("http"), "IRIS_PORT_HTTP");
  assert.equal(portEnvName("grpc-api.v2"), "IRIS_PORT_GRPC_API_V2");
});

Deno.test("PortAllocator.reserve() holds a chosen port once; allocate() then skips it", () => {
  const a = new PortAllocator({ min: 31050, max: 31051 });
  const b = PortAllocator.fromShared(a.shared);
  assert.equal(a.reserve(31050), true);
  assert.equal(b.reserve(31050), false, "a second holder of one table is refused");
  assert.equal(b.allocate(), 31051);
  a.release(31050);
  assert.equal(b.reserve(31050), true);
  // A port bound on the host is refused even when the table has it free.
  using l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const bound = (l.addr as Deno.NetAddr).port;
  assert.equal(new PortAllocator({ min: bound, max: bound }).reserve(bound), false);
  assert.equal(a.reserve(bound), false, "outside the range: only bindability is checked");
  assert.equal(a.reserve(0), false);
});
