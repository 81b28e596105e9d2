/**
 * gcloud argv builders, JSON parsers (TPU nodes, GCE instances) and the error classification
 * table the autoscaler's backoff depends on.
 * @module
 */
import assert from "node:assert/strict";
import {
  PermissionDeniedError,
  PlatformError,
  PlatformUnavailableError,
  QuotaExhaustedError,
  ResourceNotFoundError,
} from "../../src/errors.ts";
import {
  checkGcloud,
  classifyGcloudError,
  gcloudInstanceCreate,
  gcloudTpuCreate,
  gcloudTpuList,
  labelKeys,
  labelValue,
  parseInstanceJson,
  parseInstanceListJson,
  parseTpuJson,
  parseTpuListJson,
  resourceName,
} from "../../src/platform/gcloud.ts";
import { TPU_NODE_JSON } from "./_fake_gcloud.ts";

Deno.test("gcloudTpuCreate() builds the full create argv with the startup script on stdin", () => {
  const cmd = gcloudTpuCreate({
    name: "iris-tpu-1",
    zone: "us-central2-b",
    project: "proj",
    acceleratorType: "v4-16",
    runtimeVersion: "tpu-ubuntu2204-base",
    labels: { "iris-slice-id": "s", "iris-managed": "true" },
    preemptible: true,
    startupScript: "#!/bin/bash\necho hi\n",
  });
  assert.deepEqual(cmd.argv, [
    "gcloud",
    "compute",
    "tpus",
    "tpu-vm",
    "create",
    "iris-tpu-1",
    "--zone=us-central2-b",
    "--project=proj",
    "--accelerator-type=v4-16",
    "--version=tpu-ubuntu2204-base",
    "--labels=iris-managed=true,iris-slice-id=s",
    "--preemptible",
    "--metadata-from-file=startup-script=/dev/stdin",
    "--format=json",
    "--quiet",
  ]);
  assert.equal(cmd.stdin, "#!/bin/bash\necho hi\n");
});

Deno.test("gcloudTpuList() filters on the managed label and asks for JSON", () => {
  assert.deepEqual(
    gcloudTpuList({ zone: "z", project: "p" }, "labels.iris-managed=true").argv.slice(4),
    [
      "list",
      "--zone=z",
      "--project=p",
      "--filter=labels.iris-managed=true",
      "--format=json",
    ],
  );
});

Deno.test("gcloudInstanceCreate() defaults to n2-standard-4 on debian-12", () => {
  const argv =
    gcloudInstanceCreate({ name: "iris-controller", zone: "z", project: "p", labels: { a: "b" } })
      .argv;
  for (
    const flag of [
      "--machine-type=n2-standard-4",
      "--image-family=debian-12",
      "--labels=a=b",
      "--format=json",
    ]
  ) {
    assert.ok(argv.includes(flag), flag);
  }
});

Deno.test("labels and resource names are made valid for GCP", () => {
  assert.equal(labelValue("TPU.v5e/16"), "tpu-v5e-16");
  assert.equal(resourceName("iris-tpu_v5e_16-3"), "iris-tpu-v5e-16-3");
  assert.equal(resourceName("1abc"), "x-1abc");
  assert.deepEqual(labelKeys("Iris"), {
    managed: "iris-managed",
    scaleGroup: "iris-scale-group",
    sliceId: "iris-slice-id",
    controller: "iris-controller",
  });
});

Deno.test("parseTpuJson() reads name, zone, state, labels and worker IPs in order", () => {
  const node = parseTpuJson(TPU_NODE_JSON);
  assert.deepEqual(node, {
    name: "iris-tpu-v4-8-1",
    zone: "us-central2-b",
    state: "READY",
    acceleratorType: "v4-16",
    labels: {
      "iris-managed": "true",
      "iris-scale-group": "tpu_v4_16",
      "iris-slice-id": "iris-tpu_v4_16-1",
    },
    ipAddresses: ["10.0.0.2", "10.0.0.3"],
    createTime: "2026-02-01T10:00:00.000Z",
    health: "HEALTHY",
  });
  assert.deepEqual(parseTpuListJson(`[${TPU_NODE_JSON}]`).map((n) => n.name), ["iris-tpu-v4-8-1"]);
  assert.deepEqual(parseTpuListJson(""), []);
  assert.throws(() => parseTpuJson("ERROR: not json"), PlatformError);
});

Deno.test("parseInstanceJson() reads the internal IP, status, zone and labels", () => {
  const vm = {
    name: "iris-controller",
    zone: "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-a",
    status: "RUNNING",
    labels: { "iris-controller": "true" },
    networkInterfaces: [{ networkIP: "10.128.0.7", accessConfigs: [{ natIP: "34.1.2.3" }] }],
  };
  assert.deepEqual(parseInstanceJson(JSON.stringify([vm])), {
    name: "iris-controller",
    zone: "us-central1-a",
    status: "RUNNING",
    internalIp: "10.128.0.7",
    labels: { "iris-controller": "true" },
    createTime: undefined,
  });
  assert.equal(parseInstanceListJson("[]").length, 0);
});

const CLASSIFICATION: [
  string,
  string,
  new (...args: never[]) => PlatformError | PermissionDeniedError,
][] = [
  [
    "quota",
    "ERROR: (gcloud.compute.tpus.tpu-vm.create) RESOURCE_EXHAUSTED: Quota 'TPUV4sPreemptiblePodPerProjectPerZoneForTPUAPI' exhausted. Limit 32 in zone us-central2-b",
    QuotaExhaustedError,
  ],
  [
    "stockout",
    'ERROR: There is no more capacity in the zone "europe-west4-a"; you can try in another zone',
    QuotaExhaustedError,
  ],
  [
    "insufficient capacity",
    "ERROR: Insufficient capacity for the requested accelerator",
    QuotaExhaustedError,
  ],
  [
    "permission",
    "ERROR: (gcloud.compute.tpus.tpu-vm.create) PERMISSION_DENIED: Permission 'tpu.nodes.create' denied",
    PermissionDeniedError,
  ],
  ["iam", "ERROR: The user does not have permission to access project p", PermissionDeniedError],
  [
    "not found",
    "ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: Resource 'x' was not found",
    ResourceNotFoundError,
  ],
  [
    "unavailable",
    "ERROR: gcloud crashed (ConnectionError): Unable to connect to the server",
    PlatformUnavailableError,
  ],
  ["503", "ERROR: HTTPError 503: The service is currently unavailable.", PlatformUnavailableError],
  ["unknown", "ERROR: something odd happened\nline two", PlatformError],
];

for (const [what, stderr, expected] of CLASSIFICATION) {
  Deno.test(`classifyGcloudError() classifies ${what}`, () => {
    const err = classifyGcloudError(stderr, 1, { action: "create TPU slice s" });
    assert.equal(err.constructor, expected);
    assert.match(err.message, /^Cannot create TPU slice s/);
  });
}

Deno.test("classifyGcloudError() names the zone of quota errors and keeps the last stderr lines", () => {
  assert.match(classifyGcloudError(CLASSIFICATION[0]![1], 1).message, /in zone us-central2-b/);
  assert.match(
    classifyGcloudError("quota exceeded", 1, { zone: "z-given" }).message,
    /in zone z-given/,
  );
  const unknown = classifyGcloudError("a\nb\nc\nd\ne\nf\ng", 2, { action: "x" });
  assert.equal(unknown.message, "Cannot x: gcloud exited with code 2: c\nd\ne\nf\ng");
  assert.ok(
    classifyGcloudError("gcloud: command not found", 127) instanceof PlatformUnavailableError,
  );
});

Deno.test("checkGcloud() passes successes and turns timeouts into PlatformUnavailableError", () => {
  const ok = { code: 0, stdout: "[]", stderr: "", timedOut: false };
  assert.equal(checkGcloud(ok, { action: "list" }), ok);
  assert.throws(
    () => checkGcloud({ ...ok, code: 143, timedOut: true }, { action: "list" }),
    PlatformUnavailableError,
  );
});
