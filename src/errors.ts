/**
 * Iris error classes. Code throws these; src/rpc/errors.ts maps them to Connect codes where
 * handlers meet the wire (its interceptor), and nowhere else.
 * Messages say the action, the rule broken and the actual value, without a trailing period.
 * @module
 */
import { ConnectError } from "@connectrpc/connect";

/** Base of every Iris error. */
export class IrisError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A request or flag is malformed; `field` names the offending field. */
export class InvalidArgumentError extends IrisError {
  readonly field: string;
  constructor(field: string, message: string, options?: ErrorOptions) {
    super(`${field}: ${message}`, options);
    this.field = field;
  }
}

/** A configuration file is invalid; `path` is the YAML path ("scale_groups.tpu.max_slices"). */
export class ConfigError extends IrisError {
  readonly path: string;
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(path ? `${path}: ${message}` : message, options);
    this.path = path;
  }
}

/** The named thing does not exist. */
export class NotFoundError extends IrisError {}

/** The request conflicts with current state (e.g. a running job of the same name). */
export class AlreadyExistsError extends IrisError {}

/** The operation is not allowed in the current state. */
export class FailedPreconditionError extends IrisError {}

/** Too much: a size limit or a rate limit. */
export class ResourceExhaustedError extends IrisError {}

/** Base of platform (cloud, ssh, local VM) failures. */
export class PlatformError extends IrisError {
  /** True when retrying later may succeed. */
  readonly retryable: boolean = false;
}

/** Quota or capacity is exhausted in a zone: try another zone or wait. */
export class QuotaExhaustedError extends PlatformError {
  override readonly retryable = true;
}

/** The platform is temporarily unreachable: retry with backoff. */
export class PlatformUnavailableError extends PlatformError {
  override readonly retryable = true;
}

/** The platform resource does not exist. */
export class ResourceNotFoundError extends PlatformError {}

/** The caller may not do this (an auth rule, or a cloud API refusing the credentials). */
export class PermissionDeniedError extends IrisError {}

/** The caller did not prove who it is (no token, or an unknown one). */
export class UnauthenticatedError extends IrisError {}

/** Temporarily unable to serve: nothing was changed; retry later. */
export class UnavailableError extends IrisError {}

/** This server does not offer the operation. */
export class UnimplementedError extends IrisError {}

/** The operation ran past its time limit and was stopped. */
export class DeadlineExceededError extends IrisError {}

/** A one-line description of an error for CLI output and logs. */
export function describeError(err: unknown): string {
  if (err instanceof ConnectError) return err.rawMessage || err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
