// What a misbehaving upstream puts in its replies never reaches the agent as is: TTLs are capped at
// cache.max_ttl_s (a TTL with the top bit set is 0, RFC 2181 §8); a reply truncated over TCP too is a
// failure of that upstream (the agent never gets TC=1 over TCP). A real scripted upstream on loopback
// sends hand-built bytes; the agent side is the independent dns2 client over real sockets.
import { afterAll, describe, expect, it } from 'vitest';
import { query, type Transport } from '../helpers/dns-client.js';
import { fakeReply, qnameOf, rdata, TYPE } from '../helpers/fake-reply.js';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/upstream.js';
import { metricValue, startWarden, type Warden } from '../helpers/warden.js';

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function scripted(respond: Parameters<typeof startScriptedUpstream>[0]): Promise<ScriptedUpstream> {
  const s = await startScriptedUpstream(respond);
  cleanups.push(() => s.stop());
  return s;
}

async function warden(partial: Record<string, unknown>): Promise<Warden> {
  const w = await startWarden(partial);
  cleanups.push(() => w.close());
  return w;
}

describe('TTLs from the upstream', () => {
  const MAX_TTL = 3600;
  const TTLS: Readonly<Record<string, number>> = {
    'forever.example.org': 2_147_483_647, // the largest legal TTL
    'topbit.example.org': 0x8000_0005, // top bit set: treated as 0 (RFC 2181 §8)
    'short.example.org': 120, // under the cap: passed through
  };

  it('are capped at cache.max_ttl_s, a top-bit TTL is 0, in the answer and the authority section, from the cache too', async () => {
    const upstream = await scripted((q) => {
      const name = qnameOf(q);
      const ttl = TTLS[name]!;
      return fakeReply(q, {
        answers: [{ name, type: TYPE.A, ttl, rdata: rdata.a('192.0.2.77') }],
        authorities: [{ name: 'example.org', type: TYPE.NS, ttl, rdata: rdata.name('ns1.example.org') }],
      });
    });
    const w = await warden({ upstreams: [{ address: upstream.hostPort, timeout_ms: 1000 }], cache: { max_ttl_s: MAX_TTL } });

    for (const via of ['upstream', 'cache'] as const) {
      const forever = await query({ server: w.dns, name: 'forever.example.org', type: 'A' });
      expect(forever.rcode).toBe('NOERROR');
      expect(forever.answers.map((a) => a.data)).toEqual(['192.0.2.77']);
      if (via === 'upstream') expect(forever.answers[0]!.ttl).toBe(MAX_TTL);
      else expect(forever.answers[0]!.ttl).toBeLessThanOrEqual(MAX_TTL);
      expect(forever.authorities[0]!.ttl).toBeLessThanOrEqual(MAX_TTL);

      const topbit = await query({ server: w.dns, name: 'topbit.example.org', type: 'A' });
      expect(topbit.answers[0]!.ttl).toBe(0);
      expect(topbit.authorities[0]!.ttl).toBe(0);

      const short = await query({ server: w.dns, name: 'short.example.org', type: 'A' });
      expect(short.answers[0]!.ttl).toBeLessThanOrEqual(120);
      expect(short.answers[0]!.ttl).toBeGreaterThan(100);
    }
    // forever and short were cached; a TTL of 0 is not cached, so topbit went upstream both times.
    const asked = upstream.received.map((r) => qnameOf(r.bytes));
    expect(asked.filter((n) => n === 'forever.example.org')).toHaveLength(1);
    expect(asked.filter((n) => n === 'short.example.org')).toHaveLength(1);
    expect(asked.filter((n) => n === 'topbit.example.org')).toHaveLength(2);
  });
});

describe('an upstream that sets TC=1 over TCP too', () => {
  /** TC=1 with no records on UDP and on TCP alike: a broken upstream (or one behind a broken middlebox). */
  const alwaysTruncated = (q: Buffer): Buffer => fakeReply(q, { flags: 0x0380 });
  const good = (q: Buffer): Buffer => fakeReply(q, { answers: [{ name: qnameOf(q), type: TYPE.A, rdata: rdata.a('192.0.2.88') }] });

  it.each<Transport>(['tcp', 'udp'])('fails over to the next upstream; the %s client gets its answer without TC', async (transport) => {
    const truncating = await scripted(alwaysTruncated);
    const second = await scripted(good);
    const w = await warden({ upstreams: [{ address: truncating.hostPort, timeout_ms: 1000 }, { address: second.hostPort, timeout_ms: 1000 }] });
    const r = await query({ server: w.dns, transport, name: `tc-${transport}.example.org`, type: 'A' });
    expect(r.rcode).toBe('NOERROR');
    expect(r.tc).toBe(false);
    expect(r.answers.map((a) => a.data)).toEqual(['192.0.2.88']);
    expect(truncating.received.map((q) => q.transport)).toEqual(['udp', 'tcp']); // it was asked over TCP, and failed there
    expect(metricValue(await w.app.metricsText(), 'dnswarden_upstream_failures_total', { upstream: truncating.hostPort, reason: 'malformed' })).toBe(1);
  });

  it.each<Transport>(['tcp', 'udp'])('with no other upstream: SERVFAIL + EDE 23 over %s, never TC=1', async (transport) => {
    const truncating = await scripted(alwaysTruncated);
    const w = await warden({ upstreams: [{ address: truncating.hostPort, timeout_ms: 1000 }] });
    const r = await query({ server: w.dns, transport, name: `tc-only-${transport}.example.org`, type: 'A' });
    expect(r.rcode).toBe('SERVFAIL');
    expect(r.tc).toBe(false);
    expect(r.ede?.code).toBe(23);
  });
});
