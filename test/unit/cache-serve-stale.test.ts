// Serve-stale in the cache (src/dns/cache.ts) with a scripted next resolver and a clock the test moves: stale
// entries count against max_entries (the LRU bound holds, the least recently used stale entries go first), a
// failure is never remembered over a stale entry, the failure recheck window answers at once, and stale is off
// by default.
import { describe, expect, it } from 'vitest';
import { CachingResolver, type CacheConfig } from '../../src/dns/cache.js';
import type { Resolution, Resolver } from '../../src/dns/upstream.js';
import { decodeQuery, type Query, type Reply } from '../../src/dns/wire.js';
import { createMetrics } from '../../src/ops/telemetry.js';
import { WardenError } from '../../src/errors.js';

function query(name: string): Query {
  const labels = name.split('.').map((l) => Buffer.from(l));
  const packet = Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels.flatMap((l) => [Buffer.from([l.length]), l]), Buffer.from([0, 0, 1, 0, 1])]);
  const d = decodeQuery(packet, { address: '127.0.0.1', port: 1, transport: 'udp' }, 0, 1232);
  if (!d.ok) throw new Error(d.reason);
  return d.query;
}

const reply = (ttl: number): Reply => ({ rcode: 0, flags: 0x8180, tc: false, answerCount: 1, authorityCount: 0, additionalCount: 0, body: '', ttlOffsets: '', edeOptions: '', cacheTtlSec: ttl, addresses: [], strippedRecords: 0 });

class Scripted implements Resolver {
  up = true;
  asked = 0;
  resolve(): Promise<Resolution> {
    this.asked++;
    return Promise.resolve(this.up ? { ok: true, reply: reply(10), via: 'upstream', ageSec: 0 } : { ok: false, error: new WardenError('ERR_NO_UPSTREAM', 'down'), ede: 23 });
  }
}

function setUp(maxEntries: number, enabled = true): { cache: CachingResolver; next: Scripted; clock: { ms: number } } {
  const clock = { ms: 1_000_000 };
  const next = new Scripted();
  const config: CacheConfig = { max_entries: maxEntries, max_ttl_s: 86_400, negative_max_ttl_s: 3600, servfail_ttl_s: 3, serve_stale: { enabled, max_stale_s: 100, answer_ttl_s: 30 } };
  return { cache: new CachingResolver(next, config, createMetrics(), () => clock.ms), next, clock };
}

describe('serve-stale in the cache', () => {
  it('serves an expired answer when the next resolver fails, answers at once within servfail_ttl_s, then tries again', async () => {
    const { cache, next, clock } = setUp(10);
    expect((await cache.resolve(query('a.example.com'))).ok).toBe(true);
    next.up = false;
    clock.ms += 11_000; // expired
    const stale = await cache.resolve(query('a.example.com'));
    expect(stale).toMatchObject({ ok: true, via: 'cache', staleTtlSec: 30 });
    expect(next.asked).toBe(2);
    clock.ms += 1000;
    expect(cache.resolve(query('a.example.com'))).toMatchObject({ ok: true, staleTtlSec: 30 }); // synchronous: not asked
    expect(next.asked).toBe(2);
    clock.ms += 3000; // the recheck window has passed: asked again, still down, still stale
    expect(await cache.resolve(query('a.example.com'))).toMatchObject({ ok: true, staleTtlSec: 30 });
    expect(next.asked).toBe(3);
    next.up = true;
    clock.ms += 3000;
    const fresh = await cache.resolve(query('a.example.com'));
    expect(fresh.ok && fresh.staleTtlSec).toBeUndefined();
    expect(next.asked).toBe(4);
    clock.ms += 111_000; // past max_stale_s after the fresh answer expired
    next.up = false;
    expect((await cache.resolve(query('a.example.com'))).ok).toBe(false);
  });

  it('keeps max_entries with stale entries in it: the least recently used go first', async () => {
    const { cache, next, clock } = setUp(5);
    for (let i = 0; i < 5; i++) await cache.resolve(query(`n${i}.example.com`));
    clock.ms += 11_000; // all five are stale now
    for (let i = 5; i < 1000; i++) await cache.resolve(query(`n${i}.example.com`));
    expect(cache.size).toBe(5);
    next.up = false;
    clock.ms += 11_000;
    expect((await cache.resolve(query('n0.example.com'))).ok).toBe(false); // evicted long ago
    expect(await cache.resolve(query('n999.example.com'))).toMatchObject({ ok: true, staleTtlSec: 30 });
    expect(cache.size).toBe(5);
  });

  it('is off unless enabled', async () => {
    const { cache, next, clock } = setUp(10, false);
    await cache.resolve(query('a.example.com'));
    next.up = false;
    clock.ms += 11_000;
    expect((await cache.resolve(query('a.example.com'))).ok).toBe(false);
  });
});
