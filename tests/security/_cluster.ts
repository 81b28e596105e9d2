/**
 * An in-process controller with static tokens and one worker holding the worker token, on
 * loopback. Tokens are random per run so a test can grep every output for them.
 * @module
 */
import { type ControllerServer, startController } from "../../src/controller/server.ts";
import { startWorker, type WorkerHandle } from "../../src/worker/mod.ts";
import { type AuthPolicy, hashToken, newToken } from "../../src/auth/mod.ts";
import { ms } from "../../src/time.ts";

/** The tokens of a secured test cluster. */
export interface Tokens {
  alice: string;
  bob: string;
  admin: string;
  worker: string;
}

/** A secured controller plus one worker. Dispose to stop both. */
export interface SecureCluster extends AsyncDisposable {
  readonly controller: ControllerServer;
  readonly worker: WorkerHandle;
  readonly tokens: Tokens;
  /** Controller and worker log lines. */
  readonly logs: string[];
}

/** Fresh random tokens for alice, bob, root (admin) and the worker. */
export function makeTokens(): Tokens {
  return { alice: newToken(), bob: newToken(), admin: newToken(), worker: newToken() };
}

/** The policy for `tokens`: only hashes of the user tokens are kept. */
export function policyFor(tokens: Tokens): AuthPolicy {
  return {
    mode: "token",
    tokens: [
      { sha256: hashToken(tokens.alice), user: "alice", role: "user" },
      { sha256: hashToken(tokens.bob), user: "bob", role: "user" },
      { sha256: hashToken(tokens.admin), user: "root", role: "admin" },
    ],
    workerToken: tokens.worker,
  };
}

/** Starts a secured controller (and a worker unless `worker: false`). */
export async function startSecureCluster(
  options: { rootDir?: string; stateDir?: string } = {},
): Promise<SecureCluster> {
  const tokens = makeTokens();
  const logs: string[] = [];
  const controller = startController({
    auth: policyFor(tokens),
    stateDir: options.stateDir,
    log: (line) => logs.push(line),
    heartbeatInterval: ms(200),
  });
  let worker: WorkerHandle;
  try {
    worker = await startWorker({
      controllerUrl: controller.url,
      workerToken: tokens.worker,
      rootDir: options.rootDir,
      resources: { cpuMillicores: 4000, memoryBytes: 4 * 1024 ** 3 },
      heartbeatInterval: ms(200),
      sampleInterval: ms(100),
      log: (line) => logs.push(line),
    });
    await worker.registered;
  } catch (err) {
    await controller.stop();
    throw err;
  }
  return {
    controller,
    worker,
    tokens,
    logs,
    async [Symbol.asyncDispose]() {
      await worker.stop();
      await controller.stop();
    },
  };
}
