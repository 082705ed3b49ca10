// The per-session query rate limit (`policy.session_types.<type>.rate_limit`): a token bucket per session, `burst`
// tokens deep, refilled at `qps` tokens a second. Owns the buckets only: two numbers per session, held in a WeakMap
// keyed by the session object, so a bucket lives exactly as long as its session and memory per session is
// constant whatever it sends. Never answers a query, never counts a metric (the pipeline does both) and never
// reads the clock (the query's time is passed in).
import type { SessionType } from './directory.js';

export interface RateLimit {
  /** Tokens added per second; > 0. */
  readonly qps: number;
  /** Bucket depth: queries that may arrive at once after a quiet spell; ≥ 1. */
  readonly burst: number;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

export class SessionRateLimiter {
  readonly #limitOf: (type: SessionType) => RateLimit | undefined;
  readonly #buckets = new WeakMap<object, Bucket>();

  /** `limitOf`: the limit for a session type now, or undefined for none (read per query: a SIGHUP applies at once). */
  constructor(limitOf: (type: SessionType) => RateLimit | undefined) {
    this.#limitOf = limitOf;
  }

  /** Takes one token from the session's bucket: true if it had one (answer the query), false if over the limit. */
  take(session: { readonly type: SessionType }, atMs: number): boolean {
    const limit = this.#limitOf(session.type);
    if (limit === undefined) return true;
    const bucket = this.#buckets.get(session);
    if (bucket === undefined) {
      this.#buckets.set(session, { tokens: limit.burst - 1, atMs });
      return true;
    }
    // A clock step backwards adds nothing (and takes nothing away).
    const elapsedMs = Math.max(0, atMs - bucket.atMs);
    bucket.tokens = Math.min(limit.burst, bucket.tokens + (elapsedMs * limit.qps) / 1000);
    bucket.atMs = Math.max(bucket.atMs, atMs);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}

// Each config's rate limits, worked out once (not per query): qps 0 is none; burst 0 is ceil(qps), at least 1.
const rateLimitsByConfig = new WeakMap<object, Record<SessionType, RateLimit | undefined>>();
export function rateLimitsOf(types: Readonly<Record<SessionType, { readonly rate_limit: { readonly qps: number; readonly burst: number } }>>): Record<SessionType, RateLimit | undefined> {
  let limits = rateLimitsByConfig.get(types);
  if (limits === undefined) {
    const of = (type: SessionType): RateLimit | undefined => {
      const r = types[type].rate_limit;
      return r.qps > 0 ? { qps: r.qps, burst: r.burst > 0 ? r.burst : Math.max(1, Math.ceil(r.qps)) } : undefined;
    };
    limits = { interactive: of('interactive'), batch: of('batch'), scheduled: of('scheduled') };
    rateLimitsByConfig.set(types, limits);
  }
  return limits;
}
