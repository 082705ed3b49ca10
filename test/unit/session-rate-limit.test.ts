// The per-session token bucket (src/sessions/rate-limit.ts), with the query time passed in: burst, refill at qps,
// per session, no limit when none is configured, a clock step back adds nothing, and the limit read per call.
import { describe, expect, it } from 'vitest';
import { SessionRateLimiter, type RateLimit } from '../../src/sessions/rate-limit.js';

const takeN = (l: SessionRateLimiter, s: { type: 'batch' | 'interactive' | 'scheduled' }, n: number, atMs: number): number => {
  let ok = 0;
  for (let i = 0; i < n; i++) if (l.take(s, atMs)) ok++;
  return ok;
};

describe('SessionRateLimiter', () => {
  it('lets a burst through, then qps a second, per session', () => {
    const limiter = new SessionRateLimiter((type) => (type === 'batch' ? { qps: 10, burst: 20 } : undefined));
    const a = { type: 'batch' as const };
    const b = { type: 'batch' as const };
    expect(takeN(limiter, a, 50, 1000)).toBe(20);
    expect(takeN(limiter, b, 5, 1000)).toBe(5); // another session has its own bucket
    expect(takeN(limiter, a, 50, 1500)).toBe(5); // half a second at 10/s
    expect(takeN(limiter, a, 50, 1600)).toBe(1);
    expect(takeN(limiter, a, 50, 100_000)).toBe(20); // a long quiet spell refills to burst, no more
  });

  it('has no limit for a type without one', () => {
    const limiter = new SessionRateLimiter(() => undefined);
    expect(takeN(limiter, { type: 'interactive' }, 10_000, 0)).toBe(10_000);
  });

  it('adds nothing when the clock steps back, and applies a changed limit at once', () => {
    let limit: RateLimit = { qps: 1, burst: 2 };
    const limiter = new SessionRateLimiter(() => limit);
    const s = { type: 'scheduled' as const };
    expect(takeN(limiter, s, 5, 10_000)).toBe(2);
    expect(takeN(limiter, s, 5, 5_000)).toBe(0); // backwards: no refill
    expect(takeN(limiter, s, 5, 10_999)).toBe(0);
    expect(takeN(limiter, s, 5, 11_000)).toBe(1);
    limit = { qps: 100, burst: 3 };
    expect(takeN(limiter, s, 5, 12_000)).toBe(3); // capped at the new burst
  });
});
