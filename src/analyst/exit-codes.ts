// The CLI's exit statuses (sysexits.h numbers, so scripts can tell a typo from a server that is down) and
// the error that carries one. Owns the mapping from a failure to its status; never prints or exits itself.
import { WardenError } from '../errors.js';

export const EXIT = {
  ok: 0,
  /** Anything else: a conflict, a server error, a malformed replay line. */
  failure: 1,
  /** The config file does not validate (check-config, serve, replay --config). */
  config: 2,
  /** The command line is wrong: unknown command or option, a missing argument, an invalid number or time. */
  usage: 64,
  /** What was named does not exist: an unknown quarantine, session or domain; a missing input file. */
  notFound: 66,
  /** The server cannot be reached (or answered 502/503/504). */
  unavailable: 69,
  /** No token, a wrong token, or a token whose kind may not do this. */
  auth: 77,
} as const;

/** A CLI failure with its exit status and, for --json, a stable code (the server's error code when it sent one). */
export class CliError extends Error {
  constructor(
    readonly errorCode: string,
    message: string,
    readonly exit: number,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** A command-line mistake: exit 64. */
export const usageError = (message: string): CliError => new CliError('ERR_USAGE', message, EXIT.usage);

/** The exit status and the --json error code for anything a command threw. */
export function exitOf(err: unknown): { exit: number; code: string } {
  if (err instanceof CliError) return { exit: err.exit, code: err.errorCode };
  if (err instanceof WardenError) {
    if (err.code === 'ERR_CONFIG') return { exit: EXIT.config, code: err.code };
    if (err.code === 'ERR_NOT_FOUND') return { exit: EXIT.notFound, code: err.code };
    if (err.code === 'ERR_UNAUTHORIZED' || err.code === 'ERR_FORBIDDEN') return { exit: EXIT.auth, code: err.code };
    return { exit: EXIT.failure, code: err.code };
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (code.startsWith('ERR_PARSE_ARGS')) return { exit: EXIT.usage, code: 'ERR_USAGE' }; // node:util parseArgs
    if (code === 'ENOENT' || code === 'EISDIR') return { exit: EXIT.notFound, code };
    if (code === 'EACCES' || code === 'EPERM') return { exit: EXIT.auth, code };
    return { exit: EXIT.failure, code };
  }
  return { exit: EXIT.failure, code: 'ERR_INTERNAL' };
}
