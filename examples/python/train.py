"""A stand-in training script: imports its dependency, writes checkpoints to IRIS_OUTPUT_DIR and
submits an eval job (a child of this one) with the Python client that workers put on PYTHONPATH."""

import json
import os
import sys

import irisdemo
from iris_client import IrisClient, iris_ctx

ctx = iris_ctx()
out = os.environ.get("IRIS_OUTPUT_DIR", "outputs")
os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
for step in (50, 100):
    path = os.path.join(out, "checkpoints", f"step-{step}.json")
    with open(path, "w") as f:
        json.dump({"step": step, "lib": irisdemo.VALUE, "python": sys.version.split()[0]}, f)
    print(f"step {step}: wrote {path}")

if ctx and "--no-eval" not in sys.argv:
    client = IrisClient()
    child = client.submit(
        ["python", "-c", "import irisdemo; print('eval sees', irisdemo.VALUE)"],
        name="eval",
        cpu=0.5,
        memory=512 * 1024 * 1024,
        environment={"requirementsFile": "requirements.txt", "pipArgs": ["--no-index", "--find-links=wheels"]},
    )
    state = client.wait(child, timeout=600)["state"]
    print(f"eval job {child}: {state}")
    sys.exit(0 if state == "SUCCEEDED" else 1)
