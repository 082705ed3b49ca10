// One error taxonomy with stable codes. Expected results (refused, blocked, upstream SERVFAIL)
// are values elsewhere; a WardenError means a fault or invalid input that a boundary maps once.

export type ErrorCode =
  | 'ERR_CONFIG'
  | 'ERR_WIRE_FORMAT'
  | 'ERR_UPSTREAM_TIMEOUT'
  | 'ERR_UPSTREAM_MISMATCH'
  | 'ERR_UPSTREAM_NETWORK'
  | 'ERR_NO_UPSTREAM'
  | 'ERR_BAD_TOKEN'
  | 'ERR_BAD_SIGNATURE'
  | 'ERR_UNKNOWN_KEY'
  | 'ERR_TOKEN_EXPIRED'
  | 'ERR_TOKEN_REVOKED'
  | 'ERR_BAD_CLAIMS'
  | 'ERR_SESSION_CONFLICT'
  | 'ERR_FLEET_UNAVAILABLE'
  | 'ERR_UNAUTHORIZED'
  | 'ERR_FORBIDDEN'
  | 'ERR_NOT_FOUND'
  | 'ERR_BAD_REQUEST'
  | 'ERR_STORE'
  | 'ERR_INTERNAL';

export class WardenError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A config value that does not validate; `path` is the YAML path, e.g. `upstreams[1].address`. */
export class ConfigError extends WardenError {
  constructor(
    readonly path: string,
    readonly detail: string,
  ) {
    super('ERR_CONFIG', path === '' ? detail : `${path}: ${detail}`);
  }
}

export class UpstreamTimeoutError extends WardenError {
  constructor(
    readonly upstream: string,
    readonly timeoutMs: number,
  ) {
    super('ERR_UPSTREAM_TIMEOUT', `${upstream} did not answer within ${timeoutMs} ms`);
  }
}

export function assertNever(value: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(value)}`);
}

/** The message of anything thrown, for one log line. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
