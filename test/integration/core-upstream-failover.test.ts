// Issue 2, forwarding: an upstream that is down or silent gives SERVFAIL + EDE 22/23 within the
// resolver's bound (never a client timeout); a dead first upstream fails over to the second; an
// answer that does not match the question is never accepted; each upstream query has a random ID
// and source port; SERVFAIL is cached at most servfail_ttl_s; cached answers outlive the upstream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dns2 from 'dns2';
import { closedPort, FIXTURE, startScriptedUpstream, startUpstream, type ScriptedUpstream, type Upstream } from '../helpers/upstream.js';
import { query, decodeReply, type Transport } from '../helpers/dns-client.js';
import { metricValue, startWarden, type Warden } from '../helpers/warden.js';

const { Packet } = dns2;

let upstream: Upstream;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  upstream = await startUpstream();
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await upstream?.stop();
});

async function warden(partial: Record<string, unknown>): Promise<Warden> {
  const w = await startWarden(partial);
  cleanups.push(() => w.close());
  return w;
}

async function scripted(respond?: Parameters<typeof startScriptedUpstream>[0]): Promise<ScriptedUpstream> {
  const s = await startScriptedUpstream(respond);
  cleanups.push(() => s.stop());
  return s;
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - start };
}

/** A reply to `queryBytes` that answers a different name (what a spoofer or a broken upstream sends). */
function forgedReply(queryBytes: Buffer, opts: { name?: string; idDelta?: number }): Buffer {
  const q = Packet.parse(queryBytes);
  const reply = new Packet();
  Object.assign(reply.header, { id: (q.header.id + (opts.idDelta ?? 0)) & 0xffff, qr: 1, rd: 1, ra: 1 });
  const question = q.questions[0]!;
  const name = opts.name ?? question.name;
  (reply.questions as unknown[]).push({ name, type: question.type, class: question.class });
  (reply.answers as unknown[]).push({ name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: 300, address: '203.0.113.66' });
  return reply.toBuffer();
}

describe('every upstream fails', () => {
  it.each<Transport>(['udp', 'tcp'])('a closed port: SERVFAIL + EDE 22 or 23 over %s, well within total_timeout_ms', async (transport) => {
    const port = await closedPort();
    const w = await warden({ upstreams: [{ address: `127.0.0.1:${port}`, timeout_ms: 500 }], resolver: { total_timeout_ms: 1500 } });
    const { value: reply, ms } = await timed(() => query({ server: w.dns, transport, name: FIXTURE.a.name, type: 'A', timeoutMs: 5000 }));
    expect(reply.rcode).toBe('SERVFAIL');
    expect(reply.answers).toEqual([]);
    expect(reply.ede?.code).toBeOneOf([22, 23]);
    expect(ms).toBeLessThan(1500 + 500);
    const metrics = await w.app.metricsText();
    expect(metricValue(metrics, 'dnswarden_upstream_failures_total', { upstream: `127.0.0.1:${port}` })).toBeGreaterThanOrEqual(1);
  });

  it('a silent upstream (never answers): SERVFAIL + EDE 22/23 after its timeout, not a client timeout', async () => {
    const silent = await scripted();
    const w = await warden({ upstreams: [{ address: silent.hostPort, timeout_ms: 300 }], resolver: { total_timeout_ms: 1000 } });
    const { value: reply, ms } = await timed(() => query({ server: w.dns, name: FIXTURE.a.name, type: 'A', timeoutMs: 5000 }));
    expect(reply.rcode).toBe('SERVFAIL');
    expect(reply.ede?.code).toBeOneOf([22, 23]);
    expect(ms).toBeGreaterThanOrEqual(250);
    expect(ms).toBeLessThan(1000 + 500);
    expect(silent.received.length).toBeGreaterThanOrEqual(1);
  });

  it('two silent upstreams: the total bound holds even though each has its own timeout', async () => {
    const a = await scripted();
    const b = await scripted();
    const w = await warden({
      upstreams: [
        { address: a.hostPort, timeout_ms: 2000 },
        { address: b.hostPort, timeout_ms: 2000 },
      ],
      resolver: { total_timeout_ms: 800 },
    });
    const { value: reply, ms } = await timed(() => query({ server: w.dns, name: FIXTURE.aaaa.name, type: 'AAAA', timeoutMs: 6000 }));
    expect(reply.rcode).toBe('SERVFAIL');
    expect(reply.ede?.code).toBeOneOf([22, 23]);
    expect(ms).toBeLessThan(800 + 500);
  });
});

describe('the total bound', () => {
  it('holds when the upstream answers TC=1 over UDP late and then never answers over TCP', async () => {
    // UDP: a truncated reply after 400 ms; TCP: silence. The retry over TCP must fit in what is
    // left of the budget, not start a fresh per-upstream timeout.
    const slowTc = await scripted(async (q, transport) => {
      if (transport === 'tcp') return undefined;
      await sleep(400);
      const reply = Buffer.from(q);
      reply[2] = 0x83; // QR, opcode 0, TC, RD
      reply[3] = 0x80; // RA, NOERROR
      return reply;
    });
    const w = await warden({ upstreams: [{ address: slowTc.hostPort, timeout_ms: 1000 }], resolver: { total_timeout_ms: 700 } });
    const { value: reply, ms } = await timed(() => query({ server: w.dns, name: FIXTURE.hugeTxt.name, type: 'TXT', timeoutMs: 5000 }));
    expect(reply.rcode).toBe('SERVFAIL');
    expect(reply.ede?.code).toBeOneOf([22, 23]);
    expect(slowTc.received.map((r) => r.transport)).toContain('tcp');
    expect(ms).toBeLessThan(700 + 300);
  });
});

describe('failover', () => {
  it('first upstream dead (closed port): answered by the second', async () => {
    const port = await closedPort();
    const w = await warden({
      upstreams: [
        { address: `127.0.0.1:${port}`, timeout_ms: 500 },
        { address: upstream.hostPort, timeout_ms: 1000 },
      ],
    });
    for (const transport of ['udp', 'tcp'] as const) {
      const reply = await query({ server: w.dns, transport, name: FIXTURE.cnameChain.name, type: 'A', timeoutMs: 5000 });
      expect(reply.rcode).toBe('NOERROR');
      expect(reply.answers.at(-1)?.data).toBe(FIXTURE.cnameChain.address);
    }
  });

  it('first upstream silent: answered by the second after the first one\'s timeout', async () => {
    const silent = await scripted();
    const w = await warden({
      upstreams: [
        { address: silent.hostPort, timeout_ms: 300 },
        { address: upstream.hostPort, timeout_ms: 1000 },
      ],
      resolver: { total_timeout_ms: 2500 },
    });
    const { value: reply, ms } = await timed(() => query({ server: w.dns, name: FIXTURE.mx.name, type: 'MX', timeoutMs: 5000 }));
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.answers).toHaveLength(2);
    expect(ms).toBeLessThan(2500);
    expect(silent.received.length).toBeGreaterThanOrEqual(1);
  });

  it('never accepts an answer for another name or with another ID; the honest second upstream answers', async () => {
    const wrongName = await scripted((q) => forgedReply(q, { name: 'evil.example' }));
    const wrongId = await scripted((q) => forgedReply(q, { idDelta: 1 }));
    for (const liar of [wrongName, wrongId]) {
      const w = await warden({
        upstreams: [
          { address: liar.hostPort, timeout_ms: 300 },
          { address: upstream.hostPort, timeout_ms: 1000 },
        ],
      });
      const reply = await query({ server: w.dns, name: FIXTURE.a.name, type: 'A', timeoutMs: 5000 });
      expect(reply.rcode).toBe('NOERROR');
      expect(reply.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
      expect(liar.received.length).toBeGreaterThanOrEqual(1);
    }
  });

  it('with only a lying upstream: SERVFAIL, never the forged address', async () => {
    const liar = await scripted((q) => forgedReply(q, { name: 'evil.example' }));
    const w = await warden({ upstreams: [{ address: liar.hostPort, timeout_ms: 300 }], resolver: { total_timeout_ms: 1000 } });
    const reply = await query({ server: w.dns, name: FIXTURE.a.name, type: 'A', timeoutMs: 5000 });
    expect(reply.rcode).toBe('SERVFAIL');
    expect(reply.answers).toEqual([]);
    expect(reply.ede?.code).toBeOneOf([22, 23]);
  });
});

describe('what goes on the wire to the upstream', () => {
  async function sequentialQueries(w: Warden, count: number, prefix: string): Promise<void> {
    for (let i = 0; i < count; i++) await query({ server: w.dns, id: 11 + i, name: `${prefix}${i}.${FIXTURE.zone}`, type: 'A', timeoutMs: 3000 });
  }
  /** The first UDP query the upstream saw for each name, in the order asked. */
  function firstPerName(up: ScriptedUpstream, count: number, prefix: string) {
    const udp = up.received.filter((r) => r.transport === 'udp');
    return Array.from({ length: count }, (_, i) => udp.find((r) => decodeReply(r.bytes).question?.name === `${prefix}${i}.${FIXTURE.zone}`)!);
  }

  it('queries_per_socket: 1 — a random query ID and a fresh source port per upstream query, the question as asked', async () => {
    const silent = await scripted();
    const w = await warden({ upstreams: [{ address: silent.hostPort, timeout_ms: 100 }], resolver: { total_timeout_ms: 300, queries_per_socket: 1 }, cache: { servfail_ttl_s: 0 } });
    await sequentialQueries(w, 6, 'q');
    const sent = firstPerName(silent, 6, 'q');
    expect(sent.every((r) => r !== undefined)).toBe(true);
    // IDs: not the client's (query i asked with ID 11 + i). A random ID equals its client's by chance with
    // probability 1/65536, so one match in six is allowed (two or more: ~4·10⁻⁹); a resolver that copied
    // the client's ID would match all six.
    expect(sent.filter((r, i) => r.id === 11 + i).length).toBeLessThanOrEqual(1);
    // All different, but for a chance collision (~2·10⁻⁴ for one pair among six draws).
    expect(new Set(sent.map((r) => r.id)).size).toBeGreaterThanOrEqual(5);
    // Source ports: random per query (a collision among 6 draws from ~28k ports is ~0.05 %).
    expect(new Set(sent.map((r) => r.sourcePort)).size).toBeGreaterThanOrEqual(5);
  });

  it('by default a source port carries queries_per_socket queries, then a fresh random port takes over', async () => {
    const honest = await scripted((q) => forgedReply(q, {}));
    const w = await warden({ upstreams: [{ address: honest.hostPort, timeout_ms: 1000 }], resolver: { queries_per_socket: 4 } });
    await sequentialQueries(w, 12, 'r');
    const ports = firstPerName(honest, 12, 'r').map((r) => r.sourcePort);
    const groups = [ports.slice(0, 4), ports.slice(4, 8), ports.slice(8, 12)];
    for (const g of groups) expect(new Set(g).size).toBe(1);
    expect(new Set(groups.map((g) => g[0])).size).toBe(3);
    expect(new Set(firstPerName(honest, 12, 'r').map((r) => r.id)).size).toBeGreaterThanOrEqual(11);
  });

  it('a reply that matches nothing in flight is ignored and its port is given up at once', async () => {
    let forged = 0;
    const spoofedFirst = await scripted(async (q) => {
      // The first query gets only what a spoofer's guess looks like: the right question, a wrong ID.
      if (forged++ === 0) return forgedReply(q, { idDelta: 7 });
      return forgedReply(q, {});
    });
    const w = await warden({ upstreams: [{ address: spoofedFirst.hostPort, timeout_ms: 300 }], resolver: { total_timeout_ms: 1000 } });
    const first = await query({ server: w.dns, name: `s0.${FIXTURE.zone}`, type: 'A', timeoutMs: 3000 });
    // The forged reply was the only one for that attempt: it must not be taken.
    expect(first.rcode).toBe('SERVFAIL');
    expect(metricValue(await w.app.metricsText(), 'dnswarden_upstream_failures_total', { upstream: spoofedFirst.hostPort, reason: 'mismatch' })).toBeGreaterThanOrEqual(1);
    const second = await query({ server: w.dns, name: `s1.${FIXTURE.zone}`, type: 'A', timeoutMs: 3000 });
    expect(second.rcode).toBe('NOERROR');
    expect(second.answers.map((r) => r.data)).toEqual(['203.0.113.66']);
    const [a, b] = firstPerName(spoofedFirst, 2, 's');
    expect(a!.sourcePort).not.toBe(b!.sourcePort);
  });

  it('at most 8 queries in flight share a source port', async () => {
    const slow = await scripted(async (q) => {
      await sleep(200);
      return forgedReply(q, {});
    });
    const w = await warden({ upstreams: [{ address: slow.hostPort, timeout_ms: 2000 }], resolver: { total_timeout_ms: 3000 } });
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => query({ server: w.dns, name: `c${i}.${FIXTURE.zone}`, type: 'A', timeoutMs: 5000 })));
    expect(replies.map((r) => r.rcode)).toEqual(Array(20).fill('NOERROR'));
    const perPort = new Map<number, number>();
    for (const r of slow.received) perPort.set(r.sourcePort, (perPort.get(r.sourcePort) ?? 0) + 1);
    expect(slow.received).toHaveLength(20);
    expect(Math.max(...perPort.values())).toBeLessThanOrEqual(8);
    expect(perPort.size).toBeGreaterThanOrEqual(3);
  });
});

describe('upstream going away and coming back', () => {
  it('serves cached answers while the upstream is down, SERVFAILs new names, and recovers after servfail_ttl_s', async () => {
    const own = await startUpstream();
    cleanups.push(() => own.stop());
    const w = await warden({ upstreams: [{ address: own.hostPort, timeout_ms: 300 }], resolver: { total_timeout_ms: 800 }, cache: { servfail_ttl_s: 1 } });
    const cached = await query({ server: w.dns, name: FIXTURE.a.name, type: 'A' });
    expect(cached.rcode).toBe('NOERROR');

    await own.pause();
    const stillCached = await query({ server: w.dns, name: FIXTURE.a.name, type: 'A', timeoutMs: 3000 });
    expect(stillCached.rcode).toBe('NOERROR');
    expect(stillCached.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
    const fresh = await query({ server: w.dns, name: FIXTURE.txt.name, type: 'TXT', timeoutMs: 3000 });
    expect(fresh.rcode).toBe('SERVFAIL');
    expect(fresh.ede?.code).toBeOneOf([22, 23]);

    await own.restart();
    await sleep(1300); // servfail_ttl_s: 1
    const recovered = await query({ server: w.dns, name: FIXTURE.txt.name, type: 'TXT', timeoutMs: 3000 });
    expect(recovered.rcode).toBe('NOERROR');
    expect(recovered.answers.map((r) => r.data)).toEqual([[FIXTURE.txt.text]]);
  });
});
