"""A small, dependency-free Python client for Iris (docs/python.md#the-python-client).

It speaks the controller's Connect JSON API (POST /iris.v1.ControllerService/<Method>,
Content-Type: application/json, bearer IRIS_TOKEN). Workers put this module on every task's
PYTHONPATH, so inside a task::

    from iris_client import iris_ctx, IrisClient

    ctx = iris_ctx()                  # the task's context, None outside a task
    client = IrisClient()             # IRIS_CONTROLLER_URL and IRIS_TOKEN from the environment
    child = client.submit(["python", "eval.py"], name="eval")   # a child of this task's job
    status = client.wait(child)
    print(status["state"], client.logs(child))
"""

import json
import os
import time
import urllib.error
import urllib.request

__all__ = ["IrisClient", "IrisError", "JobContext", "iris_ctx", "TERMINAL_STATES"]

TERMINAL_STATES = frozenset(
    {"SUCCEEDED", "FAILED", "KILLED", "WORKER_FAILED", "UNSCHEDULABLE"}
)
# Constraint keys a child job inherits from its parent (as the TypeScript client does).
INHERITED_CONSTRAINT_KEYS = ("region", "zone")


class IrisError(Exception):
    """An RPC failed: `code` is the Connect code ("not_found", "permission_denied", ...)."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class JobContext:
    """The context a task runs in, read from its IRIS_* environment."""

    def __init__(self, env):
        self.job_id = env["IRIS_JOB_ID"]
        self.task_id = env["IRIS_TASK_ID"]
        self.task_index = int(env.get("IRIS_TASK_INDEX", "0"))
        self.num_tasks = int(env.get("IRIS_NUM_TASKS", "1"))
        self.attempt_id = int(env.get("IRIS_ATTEMPT_ID", "0"))
        self.worker_id = env.get("IRIS_WORKER_ID", "")
        self.controller_url = env.get("IRIS_CONTROLLER_URL", "")
        self.user = env.get("IRIS_USER", "")
        self.bundle_id = env.get("IRIS_BUNDLE_ID", "")
        self.output_dir = env.get("IRIS_OUTPUT_DIR", "")
        self.workdir = env.get("IRIS_WORKDIR", "")
        self.ports = {
            k[len("IRIS_PORT_"):].lower(): int(v)
            for k, v in env.items()
            if k.startswith("IRIS_PORT_")
        }
        self.job_env = _json_or(env.get("IRIS_JOB_ENV"), {})
        self.constraints = _json_or(env.get("IRIS_JOB_CONSTRAINTS"), [])

    def __repr__(self):
        return f"JobContext(job_id={self.job_id!r}, task_index={self.task_index})"


def iris_ctx(env=None):
    """The task's JobContext, or None outside a task."""
    env = os.environ if env is None else env
    if not env.get("IRIS_JOB_ID") or not env.get("IRIS_TASK_ID"):
        return None
    return JobContext(env)


def _json_or(text, fallback):
    try:
        return json.loads(text) if text else fallback
    except ValueError:
        return fallback


class IrisClient:
    """Calls the controller at `url` (default IRIS_CONTROLLER_URL) with `token` (IRIS_TOKEN)."""

    def __init__(self, url=None, token=None, timeout=60.0):
        self.url = (url or os.environ.get("IRIS_CONTROLLER_URL") or "http://127.0.0.1:10000").rstrip("/")
        self.token = token if token is not None else os.environ.get("IRIS_TOKEN", "")
        self.timeout = timeout

    def call(self, method, request=None):
        """One unary RPC: `method` is the ControllerService method name ("GetJobStatus")."""
        body = json.dumps(request or {}).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(
            f"{self.url}/iris.v1.ControllerService/{method}", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                return json.loads(res.read() or b"{}")
        except urllib.error.HTTPError as err:
            payload = _json_or(err.read().decode(errors="replace"), {})
            raise IrisError(payload.get("code", str(err.code)), payload.get("message", err.reason)) from None

    def submit(
        self,
        command,
        name=None,
        cpu=1.0,
        memory=256 * 1024 * 1024,
        replicas=1,
        env=None,
        constraints=None,
        environment=None,
        bundle_id=None,
        max_retries_failure=0,
        priority="interactive",
        parent_job_id=None,
        user=None,
        context=None,
    ):
        """Submits a command job; returns its id.

        Inside a task the job becomes a child of the task's job and inherits its user, env
        (own values win), region/zone constraints and workspace bundle (unless given).
        `environment` is the Environment message in JSON form ({"pip": [...], "setup": [...]}).
        """
        ctx = context if context is not None else iris_ctx()
        own = list(constraints or [])
        own_keys = {c.get("key") for c in own}
        inherited = []
        if ctx:
            inherited = [
                c
                for c in ctx.constraints
                if c.get("key") in INHERITED_CONSTRAINT_KEYS and c.get("key") not in own_keys
            ]
        spec = {
            "name": name or f"py-{int(time.time())}",
            "entrypoint": {"command": {"argv": [str(a) for a in command]}},
            "env": {**(ctx.job_env if ctx else {}), **(env or {})},
            "resources": {"cpuMillicores": int(round(cpu * 1000)), "memoryBytes": memory},
            "replicas": replicas,
            "constraints": inherited + own,
            "maxRetriesFailure": max_retries_failure,
            "bundleId": bundle_id if bundle_id is not None else (ctx.bundle_id if ctx else ""),
            "user": user or (ctx.user if ctx else "") or os.environ.get("USER", ""),
            "parentJobId": parent_job_id or (ctx.job_id if ctx else ""),
            "priority": "PRIORITY_BAND_" + priority.upper(),
        }
        if environment:
            spec["environment"] = environment
        return self.call("LaunchJob", {"spec": spec})["jobId"]

    def status(self, job_id):
        """The job's status (JSON form); `state` is shortened to "RUNNING", "SUCCEEDED", ..."""
        job = self.call("GetJobStatus", {"jobId": job_id}).get("job", {})
        job["state"] = job.get("state", "JOB_STATE_UNSPECIFIED").replace("JOB_STATE_", "")
        return job

    def wait(self, job_id, timeout=None, poll=0.5):
        """Polls until the job ends; returns its status. TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(poll, 0.1)
        while True:
            job = self.status(job_id)
            if job["state"] in TERMINAL_STATES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, poll)

    def logs(self, job_or_task_id, max_lines=10000):
        """Log lines (text only) of a job or task, oldest first."""
        res = self.call("GetTaskLogs", {"id": job_or_task_id, "maxLines": max_lines})
        return [line.get("text", "") for line in res.get("lines", [])]

    def terminate(self, job_id, reason="terminated from Python"):
        return self.call("TerminateJob", {"jobId": job_id, "reason": reason})

    def register_endpoint(self, name, address, metadata=None, context=None):
        """Registers `address` under `name` ("/<user>/...", so others trust it) for this task;
        returns the endpoint id."""
        ctx = context if context is not None else iris_ctx()
        if not ctx:
            raise IrisError("failed_precondition", "register_endpoint needs a task context")
        res = self.call(
            "RegisterEndpoint",
            {
                "name": name,
                "address": address,
                "taskId": ctx.task_id,
                "attemptId": ctx.attempt_id,
                "metadata": metadata or {},
            },
        )
        return res["endpointId"]

    def lookup_endpoint(self, name):
        """Endpoints named exactly `name`: dicts with name, address, taskId, jobId, metadata."""
        return self.call("ListEndpoints", {"prefix": name, "exact": True}).get("endpoints", [])

    def unregister_endpoint(self, endpoint_id):
        self.call("UnregisterEndpoint", {"endpointId": endpoint_id})
