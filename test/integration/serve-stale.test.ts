// Serve-stale (RFC 8767) against a real NSD that is stopped and started again: with every upstream down, an expired
// cached answer no older than max_stale_s is served with answer_ttl_s TTLs and EDE 3 (Stale Answer); a name never
// cached still fails; once the upstream is back a later query gets a fresh answer; past max_stale_s it fails.
import { afterEach, describe, expect, it } from 'vitest';
import { query, type DnsReply } from '../helpers/dns-client.js';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { metricValue, startWarden, type Warden } from '../helpers/warden.js';

const sleep = (ms: number): Promise<void> => new Promise((ok) => setTimeout(ok, ms));
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setUp(serveStale: Record<string, unknown>): Promise<{ upstream: Upstream; warden: Warden }> {
  const upstream = await startUpstream();
  cleanups.push(() => upstream.stop());
  // max_ttl_s 1: answers expire a second after they are cached, so the test need not wait out the zone's TTLs.
  const warden = await startWarden({ cache: { max_ttl_s: 1, servfail_ttl_s: 1, serve_stale: serveStale }, resolver: { total_timeout_ms: 1500 } }, { upstream, upstreamTimeoutMs: 500 });
  cleanups.push(() => warden.close());
  return { upstream, warden };
}

const addresses = (r: DnsReply): unknown[] => r.answers.filter((a) => a.type === 'A').map((a) => a.data);

describe('cache.serve_stale', () => {
  it('serves an expired answer with answer_ttl_s TTLs and EDE 3 while the upstream is down, and a fresh one once it is back', async () => {
    const { upstream, warden } = await setUp({ enabled: true, max_stale_s: 3600, answer_ttl_s: 30 });
    const fresh = await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A' });
    expect(fresh.rcode).toBe('NOERROR');
    expect(fresh.edes).toEqual([]);

    await upstream.pause();
    await sleep(1200); // past the 1 s the answer was cached for

    for (const transport of ['udp', 'tcp'] as const) {
      const stale = await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A', transport, timeoutMs: 5000 });
      expect(stale.rcode).toBe('NOERROR');
      expect(addresses(stale)).toEqual([FIXTURE.a.address]);
      expect(stale.answers.every((a) => a.ttl === 30)).toBe(true);
      expect(stale.edes).toEqual([{ code: 3, text: '' }]);
    }
    // Without EDNS the client gets the stale answer too, with no OPT.
    const plain = await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A', edns: false, timeoutMs: 5000 });
    expect(addresses(plain)).toEqual([FIXTURE.a.address]);
    expect(plain.opt).toBeUndefined();

    // Nothing cached for this one: it fails as before.
    const never = await query({ server: warden.dns, name: FIXTURE.multiA.name, type: 'A', timeoutMs: 5000 });
    expect(never.rcode).toBe('SERVFAIL');
    expect([22, 23]).toContain(never.ede?.code);
    expect(metricValue(await warden.app.metricsText(), 'dnswarden_cache_stale_served_total')).toBeGreaterThanOrEqual(3);

    await upstream.restart();
    // The refresh keeps being tried (after servfail_ttl_s): poll until a query gets the fresh answer.
    const deadline = Date.now() + 15_000;
    let latest: DnsReply | undefined;
    while (Date.now() < deadline) {
      latest = await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A', timeoutMs: 5000 });
      if (latest.edes.length === 0) break;
      await sleep(200);
    }
    expect(latest?.rcode).toBe('NOERROR');
    expect(latest?.edes).toEqual([]);
    expect(addresses(latest!)).toEqual([FIXTURE.a.address]);
    for (const a of latest!.answers) { // a fresh TTL again (capped at cache.max_ttl_s: 1 here), not answer_ttl_s (30)
      expect(a.ttl).toBeLessThanOrEqual(1);
      expect(a.ttl).toBeLessThanOrEqual(FIXTURE.defaultTtl);
    }
    expect(await upstream.queryCount()).toBeGreaterThanOrEqual(1);
  });

  it('does not serve an answer older than max_stale_s past its expiry, and is off by default', async () => {
    const { upstream, warden } = await setUp({ enabled: true, max_stale_s: 1, answer_ttl_s: 30 });
    expect((await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR');
    await upstream.pause();
    await sleep(2500); // expired at 1 s, stale window closed at 2 s
    const late = await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A', timeoutMs: 5000 });
    expect(late.rcode).toBe('SERVFAIL');

    const off = await setUp({});
    expect((await query({ server: off.warden.dns, name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR');
    await off.upstream.pause();
    await sleep(1200);
    const failed = await query({ server: off.warden.dns, name: FIXTURE.a.name, type: 'A', timeoutMs: 5000 });
    expect(failed.rcode).toBe('SERVFAIL');
    expect(metricValue(await off.warden.app.metricsText(), 'dnswarden_cache_stale_served_total')).toBe(0);
  });
});
