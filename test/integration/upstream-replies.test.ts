// What a misbehaving upstream puts in its replies never reaches the agent as is: TTLs are capped at
// cache.max_ttl_s (a TTL with the top bit set is 0, RFC 2181 §8); a reply truncated over TCP too is a
// failure of that upstream (the agent never gets TC=1 over TCP); records outside the question's bailiwick
// (not the name or its CNAME/DNAME chain; authority/additional not in the chain's zones) are removed, the
// rest forwarded intact even when names were compressed. A real scripted upstream on loopback
// sends hand-built bytes; the agent side is the independent dns2 client over real sockets.
import { afterAll, describe, expect, it } from 'vitest';
import { query, type Transport } from '../helpers/dns-client.js';
import { fakeReply, qnameOf, questionOf, rdata, TYPE, wireName } from '../helpers/fake-reply.js';
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
        authorities: [{ name: 'example.org', type: TYPE.NS, ttl, rdata: { name: 'ns1.example.org' } }],
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

/** RRSIG RDATA (RFC 4034 §3.1) with a signature of junk bytes (nothing here validates), signed by victim.example. */
const FAKE_SIG = Buffer.concat([Buffer.from([0, 1, 13, 2, 0, 0, 1, 44, 0x70, 0, 0, 0, 0x60, 0, 0, 0, 0x12, 0x34]), wireName('victim.example'), Buffer.alloc(64, 7)]);
/** NSEC RDATA: the next owner name (uncompressed, RFC 4034 §4.1.1) and a bitmap with A and RRSIG. */
function nsec(next: string): Buffer {
  return Buffer.concat([wireName(next), Buffer.from([0, 6, 0x40, 0, 0, 0, 0, 0x02])]);
}

describe('records outside the question\'s bailiwick', () => {
  const names = (records: ReadonlyArray<{ name: string; type: string }>): string[] => records.map((r) => `${r.name.toLowerCase()} ${r.type}`);

  /** Per query name: what the lying upstream answers (honest records mixed with injected ones). */
  const REPLIES: Readonly<Record<string, (q: Buffer, compress: boolean) => Buffer>> = {
    'www.victim.example': (q, compress) => fakeReply(q, {
      compress,
      answers: [
        { name: 'www.victim.example', type: TYPE.A, rdata: rdata.a('192.0.2.1') },
        { name: 'login.bank.example', type: TYPE.A, rdata: rdata.a('203.0.113.66') }, // injected
      ],
      authorities: [
        { name: 'bank.example', type: TYPE.NS, rdata: { name: 'ns.attacker.example' } }, // injected
        { name: 'victim.example', type: TYPE.NS, rdata: { name: 'ns1.victim.example' } },
      ],
      additionals: [
        { name: 'ns.attacker.example', type: TYPE.A, rdata: rdata.a('203.0.113.67') }, // injected
        // With compression this owner points into the NS record's RDATA above, which moves once the
        // injected records before it are removed.
        { name: 'ns1.victim.example', type: TYPE.A, rdata: rdata.a('192.0.2.53') },
      ],
    }),
    'alias.victim.example': (q, compress) => fakeReply(q, {
      compress,
      answers: [
        { name: 'alias.victim.example', type: TYPE.CNAME, rdata: { name: 'edge.cdn.example' } },
        { name: 'unrelated.example', type: TYPE.A, rdata: rdata.a('203.0.113.68') }, // injected
        { name: 'edge.cdn.example', type: TYPE.A, rdata: rdata.a('192.0.2.2') },
      ],
      authorities: [{ name: 'cdn.example', type: TYPE.NS, rdata: { name: 'ns.cdn.example' } }],
      additionals: [{ name: 'ns.cdn.example', type: TYPE.A, rdata: rdata.a('192.0.2.54') }],
    }),
    'host.old.example': (q, compress) => fakeReply(q, {
      compress,
      answers: [
        { name: 'old.example', type: TYPE.DNAME, rdata: { name: 'new.example' } },
        { name: 'old.example', type: TYPE.RRSIG, rdata: FAKE_SIG }, // the DNAME's signature, owned above the chain
        { name: 'host.old.example', type: TYPE.CNAME, rdata: { name: 'host.new.example' } },
        { name: 'other.new.example', type: TYPE.A, rdata: rdata.a('203.0.113.69') }, // injected: not in the chain
        { name: 'host.new.example', type: TYPE.A, rdata: rdata.a('192.0.2.3') },
      ],
    }),
    'old.example': (q, compress) => fakeReply(q, { compress, answers: [{ name: 'old.example', type: TYPE.DNAME, rdata: { name: 'new.example' } }] }),
    // DNSSEC denial (DO clients): NSEC/NSEC3/RRSIG owned by other names of the zone stay; the injected NS goes.
    'nope.victim.example': (q, compress) => fakeReply(q, {
      compress,
      flags: 0x0183, // NXDOMAIN
      authorities: [
        { name: 'victim.example', type: TYPE.SOA, rdata: rdata.soa('ns1.victim.example', 'hostmaster.victim.example', 300) },
        { name: 'victim.example', type: TYPE.RRSIG, rdata: FAKE_SIG },
        { name: 'mail.victim.example', type: TYPE.NSEC, rdata: nsec('www.victim.example') },
        { name: 'mail.victim.example', type: TYPE.RRSIG, rdata: FAKE_SIG },
        { name: 'bank.example', type: TYPE.NS, rdata: { name: 'ns.attacker.example' } }, // injected
      ],
    }),
    // A wildcard answer's proof: an NSEC from elsewhere in the zone and no SOA at all.
    'any.wild.victim.example': (q, compress) => fakeReply(q, {
      compress,
      answers: [
        { name: 'any.wild.victim.example', type: TYPE.A, rdata: rdata.a('192.0.2.5') },
        { name: 'any.wild.victim.example', type: TYPE.RRSIG, rdata: FAKE_SIG },
      ],
      authorities: [
        { name: 'v.victim.example', type: TYPE.NSEC, rdata: nsec('x.victim.example') },
        { name: 'v.victim.example', type: TYPE.RRSIG, rdata: FAKE_SIG },
      ],
    }),
    'clean.victim.example': (q, compress) => fakeReply(q, {
      compress,
      answers: [{ name: 'clean.victim.example', type: TYPE.A, rdata: rdata.a('192.0.2.4') }],
      authorities: [{ name: 'victim.example', type: TYPE.NS, rdata: { name: 'ns1.victim.example' } }],
      additionals: [{ name: 'ns1.victim.example', type: TYPE.A, rdata: rdata.a('192.0.2.53') }],
    }),
  };

  it.each([false, true])('are removed from every section (compressed names: %s); the rest, OPT and EDE handling included, is intact', async (compress) => {
    const upstream = await scripted((q) => REPLIES[qnameOf(q)]!(q, compress));
    const w = await warden({ upstreams: [{ address: upstream.hostPort, timeout_ms: 1000 }] });
    for (const transport of ['udp', 'tcp'] as const) {
      const www = await query({ server: w.dns, transport, name: 'www.victim.example', type: 'A' });
      expect(www.rcode).toBe('NOERROR');
      expect(www.decodeErrors).toEqual([]);
      expect(names(www.answers)).toEqual(['www.victim.example A']);
      expect(www.answers[0]!.data).toBe('192.0.2.1');
      expect(names(www.authorities)).toEqual(['victim.example NS']);
      expect(String(www.authorities[0]!.data).toLowerCase()).toBe('ns1.victim.example');
      expect(names(www.additionals)).toEqual(['ns1.victim.example A']);
      expect(www.additionals[0]!.data).toBe('192.0.2.53');
      expect(www.opt).toBeDefined();

      const alias = await query({ server: w.dns, transport, name: 'alias.victim.example', type: 'A' });
      expect(alias.decodeErrors).toEqual([]);
      expect(names(alias.answers)).toEqual(['alias.victim.example CNAME', 'edge.cdn.example A']);
      expect(names(alias.authorities)).toEqual(['cdn.example NS']);
      expect(names(alias.additionals)).toEqual(['ns.cdn.example A']);

      const dname = await query({ server: w.dns, transport, name: 'host.old.example', type: 'A' });
      expect(dname.decodeErrors).toEqual([]);
      expect(names(dname.answers)).toEqual(['old.example TYPE39', 'old.example RRSIG', 'host.old.example CNAME', 'host.new.example A']); // 39: DNAME (dns2 has no name for it)
      expect(dname.answers.at(-1)!.data).toBe('192.0.2.3');

      const dnameItself = await query({ server: w.dns, transport, name: 'old.example', type: TYPE.DNAME });
      expect(names(dnameItself.answers)).toEqual(['old.example TYPE39']); // asked for the DNAME: it is the answer

      const nope = await query({ server: w.dns, transport, name: 'nope.victim.example', type: 'A', edns: { do: true } });
      expect(nope.rcode).toBe('NXDOMAIN');
      expect(names(nope.authorities)).toEqual(['victim.example SOA', 'victim.example RRSIG', 'mail.victim.example TYPE47', 'mail.victim.example RRSIG']);
      const wild = await query({ server: w.dns, transport, name: 'any.wild.victim.example', type: 'A', edns: { do: true } });
      expect(names(wild.answers)).toEqual(['any.wild.victim.example A', 'any.wild.victim.example RRSIG']);
      expect(names(wild.authorities)).toEqual(['v.victim.example TYPE47', 'v.victim.example RRSIG']);

      // An honest reply is forwarded as it came (same records, same bytes after the question).
      const clean = await query({ server: w.dns, transport, name: 'clean.victim.example', type: 'A' });
      expect(names(clean.answers)).toEqual(['clean.victim.example A']);
      expect(names(clean.authorities)).toEqual(['victim.example NS']);
      expect(names(clean.additionals)).toEqual(['ns1.victim.example A']);
      if (transport === 'udp') {
        // First time, from the upstream (no TTL aged yet): the records are the upstream's bytes, pointers and all.
        const asked = [...upstream.received].reverse().find((r) => qnameOf(r.bytes) === 'clean.victim.example')!.bytes;
        const sent = REPLIES['clean.victim.example']!(asked, compress);
        const questionEnd = 12 + questionOf(asked).length;
        expect(clean.raw.subarray(questionEnd, clean.raw.length - 11)).toEqual(sent.subarray(questionEnd, sent.length - 11));
      }
    }
    // Counted once per upstream reply (the TCP round came from the cache): 3 in www, 1 each in alias, host.old and nope.
    expect(metricValue(await w.app.metricsText(), 'dnswarden_upstream_records_stripped_total', { upstream: upstream.hostPort })).toBe(6);
  });
});
