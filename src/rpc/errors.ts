/**
 * The one translation of Iris errors (src/errors.ts) to Connect codes, and the interceptor that
 * applies it to every call served by serveRpc: handlers throw domain errors, never ConnectError.
 * @module
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  AlreadyExistsError,
  ConfigError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
  UnimplementedError,
} from "../errors.ts";

/** Error classes and the code each maps to (subclasses map like their class). */
const CODES: readonly [abstract new (...args: never[]) => Error, Code][] = [
  [InvalidArgumentError, Code.InvalidArgument],
  [ConfigError, Code.InvalidArgument],
  [NotFoundError, Code.NotFound],
  [AlreadyExistsError, Code.AlreadyExists],
  [FailedPreconditionError, Code.FailedPrecondition],
  [ResourceExhaustedError, Code.ResourceExhausted],
  [PermissionDeniedError, Code.PermissionDenied],
  [UnauthenticatedError, Code.Unauthenticated],
  [UnavailableError, Code.Unavailable],
  [UnimplementedError, Code.Unimplemented],
  [DeadlineExceededError, Code.DeadlineExceeded],
];

/**
 * Maps any error to a ConnectError: an Iris error to its code with its message, a ConnectError
 * as it is (e.g. from a call to another server), anything else to `internal` with its message.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  for (const [cls, code] of CODES) {
    if (err instanceof cls) return new ConnectError(err.message, code, undefined, undefined, err);
  }
  const message = err instanceof Error ? err.message : String(err);
  return new ConnectError(message, Code.Internal, undefined, undefined, err);
}

/**
 * Maps what a handler throws to Connect codes ({@linkcode toConnectError}), for unary calls and
 * for errors raised while a server stream is produced.
 */
export const errorInterceptor: Interceptor = (next) => async (req) => {
  let res;
  try {
    res = await next(req);
  } catch (err) {
    throw toConnectError(err);
  }
  if (!res.stream) return res;
  const messages = res.message;
  return {
    ...res,
    message: (async function* () {
      try {
        yield* messages;
      } catch (err) {
        throw toConnectError(err);
      }
    })(),
  };
};

/**
 * A request gate (run before the body is read) whose errors are mapped like a handler's; a
 * synchronous gate stays synchronous.
 */
export function mappedGate<C>(
  gate: ((ctx: C) => void | Promise<void>) | undefined,
): ((ctx: C) => void | Promise<void>) | undefined {
  if (!gate) return undefined;
  return (ctx) => {
    try {
      const r = gate(ctx);
      return r instanceof Promise
        ? r.catch((err) => {
          throw toConnectError(err);
        })
        : r;
    } catch (err) {
      throw toConnectError(err);
    }
  };
}
