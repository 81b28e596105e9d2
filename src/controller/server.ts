/**
 * Starts a controller: the Controller loop plus its RPC server (and the dashboard, when given)
 * on one port. Used by `iris controller serve`, LocalController and tests.
 * @module
 */
import { Accounts, ACCOUNTS_FILE } from "./accounts.ts";
import type { GetAutoscalerStatusResponse } from "../rpc/gen/iris/v1/controller_pb.ts";
import { type ConnectionLimits, serveRpc, workerClient } from "../rpc/mod.ts";
import {
  authGate,
  type AuthPolicy,
  controllerRule,
  NO_AUTH,
  type RateLimit,
  rateLimitInterceptor,
} from "../auth/mod.ts";
import { Controller, type ControllerOptions } from "./controller.ts";
import { type BundleStorage, controllerRoutes } from "./service.ts";
import { StateStore, type StateStoreOptions } from "./store.ts";
import { unpackBackupFiles } from "./backup.ts";
import { TransactionLog } from "./transactions.ts";

/** Options for {@linkcode startController}. */
export interface StartControllerOptions extends ControllerOptions {
  /** @default "127.0.0.1" */
  host?: string;
  /** 0 picks a free port. @default 0 */
  port?: number;
  bundles?: BundleStorage;
  /** The cluster's bundle size limit, told to clients and workers. @default 64 MiB */
  maxBundleBytes?: number;
  autoscalerStatus?: () => GetAutoscalerStatusResponse;
  /** Serves non-RPC paths (the dashboard). */
  fallback?: (req: Request) => Response | Promise<Response>;
  /** The URL tasks and workers should use, when it differs from the listen address. */
  advertiseUrl?: string;
  version?: string;
  /**
   * Directory for durable state (`controller.sqlite3`). Jobs are loaded from it before serving
   * and written after every mutation. Without it, state lives in memory only.
   */
  stateDir?: string;
  /** SQLite durability level for the state file. @default "FULL" */
  stateSynchronous?: StateStoreOptions["synchronous"];
  /**
   * Move rows of the state that do not parse to its quarantine table (with the rest of their
   * job) instead of refusing to start. @default false
   */
  stateSkipCorruptRows?: boolean;
  /** Start from an incomplete state (lost or corrupt WAL) with a warning. @default false */
  stateAcceptLoss?: boolean;
  /** Who may call the API; with tokens, workers are called with the worker token. @default none */
  auth?: AuthPolicy;
  /** Per-client limit on LaunchJob (by user, else peer address). @default none */
  launchRateLimit?: RateLimit;
  /** Largest accepted request body. @default 64 MiB */
  maxRequestBytes?: number;
  /** Header, request (body) and idle timeouts, per-client connection cap (serveRpc's defaults). */
  connectionLimits?: ConnectionLimits;
}

/** A running controller. Dispose it to stop. */
export interface ControllerServer extends AsyncDisposable {
  readonly url: string;
  readonly controller: Controller;
  stop(): Promise<void>;
}

/** Starts the controller and its server; resolves once it listens. */
export function startController(options: StartControllerOptions = {}): ControllerServer {
  // A backup copied into the state dir by hand still carries its side files: write them first.
  const unpacked = options.stateDir ? unpackBackupFiles(options.stateDir) : [];
  if (unpacked.length) options.log?.(`restored ${unpacked.join(", ")} from the backup`);
  const store = options.stateDir
    ? StateStore.open(options.stateDir, {
      synchronous: options.stateSynchronous,
      skipCorruptRows: options.stateSkipCorruptRows,
      acceptStateLoss: options.stateAcceptLoss,
    })
    : undefined;
  let controller: Controller;
  try {
    const auth = options.auth ?? NO_AUTH;
    const workerToken = auth.mode === "token" ? auth.workerToken : "";
    controller = new Controller({
      ...options,
      store,
      // Budgets set at run time persist in the state dir (docs/durability.md).
      accounts: new Accounts(
        options.userBudgets ?? [],
        options.stateDir ? `${options.stateDir}/${ACCOUNTS_FILE}` : undefined,
      ),
      transactions: options.transactions ??
        new TransactionLog({ dir: options.stateDir, log: options.log }),
      // Task logs go to files under the state dir (docs/durability.md).
      logs: {
        ...options.logs,
        dir: options.logs?.dir ?? (options.stateDir ? `${options.stateDir}/logs` : undefined),
      },
      workerClientFactory: options.workerClientFactory ??
        (workerToken ? (address) => workerClient(address, { token: workerToken }) : undefined),
    });
  } catch (err) {
    store?.close();
    throw err;
  }
  let server;
  try {
    server = serveRpc(
      controllerRoutes({
        controller,
        bundles: options.bundles,
        maxBundleBytes: options.maxBundleBytes,
        autoscalerStatus: options.autoscalerStatus,
        version: options.version,
        auth: options.auth,
      }),
      {
        hostname: options.host ?? "127.0.0.1",
        port: options.port ?? 0,
        fallback: options.fallback,
        readMaxBytes: options.maxRequestBytes,
        ...options.connectionLimits,
        requestGate: authGate(options.auth ?? NO_AUTH, controllerRule, (token) => {
          const now = controller.clock.now();
          const slice = controller.accounts.enrolments.sliceOf(token, now);
          if (slice !== undefined) return { user: `enrol:${slice}`, role: "enrolment" };
          const k = controller.accounts.principalForKey(token, now);
          return k && { user: k.user, role: k.role, keyId: k.keyId };
        }),
        interceptors: options.launchRateLimit
          ? [rateLimitInterceptor(["LaunchJob"], options.launchRateLimit)]
          : [],
      },
    );
  } catch (err) {
    store?.close();
    throw err;
  }
  controller.url = options.advertiseUrl ?? server.url;
  controller.start();
  controller.log(`controller listening on ${server.url}`);
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      await controller.stop();
      await server.shutdown();
      store?.close();
    })();
    return stopped;
  };
  return { url: server.url, controller, stop, [Symbol.asyncDispose]: stop };
}
