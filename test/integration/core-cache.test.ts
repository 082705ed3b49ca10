// Issue 2, cache: a hit never reaches the upstream (counted by the upstream itself, NSD's stats),
// TTLs are served decremented, NXDOMAIN/NODATA are cached (RFC 2308), the key holds name (case-
// insensitive), type and DO bit, identical in-flight queries are coalesced, and the cache is bounded.
import { describe, expect, it } from 'vitest';
import { FIXTURE } from '../helpers/upstream.js';
import { query, udpBurst } from '../helpers/dns-client.js';
import { metricValue, startWarden } from '../helpers/warden.js';
import { useSharedWarden } from '../helpers/shared-warden.js';

const t = useSharedWarden();

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

/** Runs `fn` and returns how many queries reached the upstream meanwhile. */
async function upstreamQueriesDuring(fn: () => Promise<unknown>): Promise<number> {
  const before = await t.upstream.queryCount();
  await fn();
  return (await t.upstream.queryCount()) - before;
}

describe('cache hits', () => {
  it('the first query reaches the upstream once; four repeats over UDP and TCP do not reach it at all', async () => {
    const metricsBefore = await t.warden.app.metricsText();
    const first = await upstreamQueriesDuring(() => query({ server: t.warden.dns, name: FIXTURE.a.name, type: 'A' }));
    expect(first).toBe(1);
    const repeats = await upstreamQueriesDuring(async () => {
      for (const transport of ['udp', 'tcp', 'udp', 'tcp'] as const) {
        const reply = await query({ server: t.warden.dns, transport, name: FIXTURE.a.name, type: 'A' });
        expect(reply.rcode).toBe('NOERROR');
        expect(reply.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
      }
    });
    expect(repeats).toBe(0);
    const metricsAfter = await t.warden.app.metricsText();
    expect(metricValue(metricsAfter, 'dnswarden_cache_hits_total')! - (metricValue(metricsBefore, 'dnswarden_cache_hits_total') ?? 0)).toBe(4);
    expect(metricValue(metricsAfter, 'dnswarden_cache_misses_total')! - (metricValue(metricsBefore, 'dnswarden_cache_misses_total') ?? 0)).toBe(1);
    expect(metricValue(metricsAfter, 'dnswarden_cache_entries')).toBeGreaterThanOrEqual(1);
  });

  it('the cache key ignores name case (RFC 4343) but the reply echoes the case asked', async () => {
    await query({ server: t.warden.dns, name: FIXTURE.txt.name, type: 'TXT' });
    const n = await upstreamQueriesDuring(async () => {
      const reply = await query({ server: t.warden.dns, name: FIXTURE.txt.name.toUpperCase(), type: 'TXT' });
      expect(reply.question?.name).toBe(FIXTURE.txt.name.toUpperCase());
      expect(reply.answers.map((r) => r.data)).toEqual([[FIXTURE.txt.text]]);
    });
    expect(n).toBe(0);
  });

  it('the cache key holds the query type and the DO bit', async () => {
    await query({ server: t.warden.dns, name: FIXTURE.aaaa.name, type: 'AAAA', edns: { do: false } });
    expect(await upstreamQueriesDuring(() => query({ server: t.warden.dns, name: FIXTURE.aaaa.name, type: 'AAAA', edns: { do: false } }))).toBe(0);
    expect(await upstreamQueriesDuring(() => query({ server: t.warden.dns, name: FIXTURE.aaaa.name, type: 'AAAA', edns: { do: true } }))).toBe(1);
    expect(await upstreamQueriesDuring(() => query({ server: t.warden.dns, name: FIXTURE.aaaa.name, type: 'AAAA', edns: { do: true } }))).toBe(0);
    expect(await upstreamQueriesDuring(() => query({ server: t.warden.dns, name: FIXTURE.aaaa.name, type: 'TXT' }))).toBe(1);
  });

  it('coalesces identical queries in flight: 20 at once reach the upstream once, all answered', async () => {
    const n = await upstreamQueriesDuring(async () => {
      const replies = await udpBurst(t.warden.dns, Array.from({ length: 20 }, () => ({ name: FIXTURE.cnameChain.name, type: 'A' })));
      expect(replies.map((r) => r.answers.at(-1)?.data)).toEqual(Array(20).fill(FIXTURE.cnameChain.address));
    });
    expect(n).toBe(1);
  });
});

describe('TTLs', () => {
  it('serves cached answers with the TTL decremented by the time spent in the cache', async () => {
    const first = await query({ server: t.warden.dns, name: FIXTURE.multiA.name, type: 'A' });
    expect(first.answers.map((r) => r.ttl)).toEqual([300, 300]);
    await sleep(2200);
    const second = await query({ server: t.warden.dns, name: FIXTURE.multiA.name, type: 'A' });
    for (const ttl of second.answers.map((r) => r.ttl)) {
      expect(ttl).toBeLessThanOrEqual(298);
      expect(ttl).toBeGreaterThanOrEqual(296);
    }
  });

  it('a TTL-5 record counts down, then expires and is fetched again', async () => {
    const first = await query({ server: t.warden.dns, name: FIXTURE.shortTtl.name, type: 'A' });
    expect(first.answers).toEqual([expect.objectContaining({ data: FIXTURE.shortTtl.address, ttl: 5 })]);
    await sleep(2100);
    const n = await upstreamQueriesDuring(async () => {
      const mid = await query({ server: t.warden.dns, name: FIXTURE.shortTtl.name, type: 'A' });
      expect(mid.answers[0]!.ttl).toBeGreaterThanOrEqual(2);
      expect(mid.answers[0]!.ttl).toBeLessThanOrEqual(3);
    });
    expect(n).toBe(0);
    await sleep(3500);
    const refetch = await upstreamQueriesDuring(async () => {
      const late = await query({ server: t.warden.dns, name: FIXTURE.shortTtl.name, type: 'A' });
      expect(late.answers).toEqual([expect.objectContaining({ data: FIXTURE.shortTtl.address, ttl: expect.toBeOneOf([4, 5]) })]);
    });
    expect(refetch).toBe(1);
  }, 30_000);
});

describe('negative caching (RFC 2308)', () => {
  it('NXDOMAIN is cached: the repeat does not reach the upstream, and its SOA TTL counts down', async () => {
    const name = `cached-${FIXTURE.nxdomain.name}`;
    const first = await upstreamQueriesDuring(async () => {
      const reply = await query({ server: t.warden.dns, name, type: 'A' });
      expect(reply.rcode).toBe('NXDOMAIN');
      expect(reply.authorities.map((r) => [r.type, r.ttl])).toEqual([['SOA', FIXTURE.negativeTtl]]);
    });
    expect(first).toBe(1);
    await sleep(1200);
    const again = await upstreamQueriesDuring(async () => {
      for (const transport of ['udp', 'tcp'] as const) {
        const reply = await query({ server: t.warden.dns, transport, name, type: 'A' });
        expect(reply.rcode).toBe('NXDOMAIN');
        expect(reply.authorities).toHaveLength(1);
        expect(reply.authorities[0]!.type).toBe('SOA');
        expect(reply.authorities[0]!.ttl).toBeLessThanOrEqual(FIXTURE.negativeTtl - 1);
        expect(reply.authorities[0]!.ttl).toBeGreaterThanOrEqual(FIXTURE.negativeTtl - 5);
      }
    });
    expect(again).toBe(0);
  });

  it('NODATA is cached', async () => {
    await query({ server: t.warden.dns, name: FIXTURE.nodata.name, type: 'AAAA' });
    const n = await upstreamQueriesDuring(async () => {
      const reply = await query({ server: t.warden.dns, name: FIXTURE.nodata.name, type: 'AAAA' });
      expect(reply.rcode).toBe('NOERROR');
      expect(reply.answers).toEqual([]);
      expect(reply.authorities.map((r) => r.type)).toEqual(['SOA']);
    });
    expect(n).toBe(0);
  });

  it('caps the negative TTL at cache.negative_max_ttl_s', async () => {
    const capped = await startWarden({ cache: { negative_max_ttl_s: 1 } }, { upstream: t.upstream });
    try {
      const name = `capped-${FIXTURE.nxdomain.name}`;
      await query({ server: capped.dns, name, type: 'A' });
      await sleep(1600);
      const before = await t.upstream.queryCount();
      const reply = await query({ server: capped.dns, name, type: 'A' });
      expect(reply.rcode).toBe('NXDOMAIN');
      expect((await t.upstream.queryCount()) - before).toBe(1);
    } finally {
      await capped.close();
    }
  });
});

describe('bounds', () => {
  it('holds at most cache.max_entries entries, evicting the least recently used', async () => {
    const small = await startWarden({ cache: { max_entries: 2 } }, { upstream: t.upstream });
    try {
      const names = [FIXTURE.a.name, FIXTURE.txt.name, FIXTURE.privateTld.name];
      for (const name of names) await query({ server: small.dns, name, type: 'A' });
      expect(metricValue(await small.app.metricsText(), 'dnswarden_cache_entries')).toBe(2);
      // The first name was evicted by the third: asking again reaches the upstream.
      const before = await t.upstream.queryCount();
      await query({ server: small.dns, name: names[0]!, type: 'A' });
      expect((await t.upstream.queryCount()) - before).toBe(1);
    } finally {
      await small.close();
    }
  });

  it('keeps a positive answer no longer than cache.max_ttl_s', async () => {
    const capped = await startWarden({ cache: { max_ttl_s: 1 } }, { upstream: t.upstream });
    try {
      await query({ server: capped.dns, name: FIXTURE.a.name, type: 'A' });
      await sleep(1600);
      const before = await t.upstream.queryCount();
      const reply = await query({ server: capped.dns, name: FIXTURE.a.name, type: 'A' });
      expect(reply.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
      expect((await t.upstream.queryCount()) - before).toBe(1);
    } finally {
      await capped.close();
    }
  });
});
