// Issue 2: A, AAAA, TXT, MX and CNAME chains answered over UDP and TCP (and IPv6), RFC 7766 TCP
// pipelining with replies matched by ID, and the same answers as `dig` shows them to a person.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { pipelineTcp, query, TcpConnection, encodeQuery, decodeReply, type Transport } from '../helpers/dns-client.js';
import { dig } from '../helpers/dig.js';
import { metricValue, startWarden, TEST_SESSION, type Warden } from '../helpers/warden.js';

let upstream: Upstream;
let warden: Warden;

beforeAll(async () => {
  upstream = await startUpstream();
  warden = await startWarden(
    {
      listen: { dns: ['127.0.0.1:0', '[::1]:0'] },
      sessions: { static: [{ ...TEST_SESSION, addresses: ['127.0.0.1/32', '::1/128'] }] },
    },
    { upstream },
  );
});

afterAll(async () => {
  await warden?.close();
  await upstream?.stop();
});

/** TTL of a fresh or cached answer: at most the zone TTL, and not more than a few seconds below it in this file. */
const ttlNear = (ttl: number) => expect.toSatisfy((t: number) => t <= ttl && t >= ttl - 10, `TTL within [${ttl - 10}, ${ttl}]`);

describe.each<Transport>(['udp', 'tcp'])('answers over %s', (transport) => {
  it('A', async () => {
    const reply = await query({ server: warden.dns, transport, name: FIXTURE.a.name, type: 'A', id: 4242 });
    expect(reply.id).toBe(4242);
    expect(reply.qr).toBe(true);
    expect(reply.tc).toBe(false);
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.question).toEqual({ name: FIXTURE.a.name, type: 'A' });
    expect(reply.answers).toEqual([{ name: FIXTURE.a.name, type: 'A', class: 1, ttl: ttlNear(300), data: FIXTURE.a.address }]);
    expect(reply.decodeErrors).toEqual([]);
  });

  it('AAAA', async () => {
    const reply = await query({ server: warden.dns, transport, name: FIXTURE.aaaa.name, type: 'AAAA' });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.answers).toEqual([{ name: FIXTURE.aaaa.name, type: 'AAAA', class: 1, ttl: ttlNear(300), data: FIXTURE.aaaa.address }]);
  });

  it('an RRset of two A records', async () => {
    const reply = await query({ server: warden.dns, transport, name: FIXTURE.multiA.name, type: 'A' });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.answers.map((r) => r.data).sort()).toEqual([...FIXTURE.multiA.addresses]);
  });

  it('TXT', async () => {
    const reply = await query({ server: warden.dns, transport, name: FIXTURE.txt.name, type: 'TXT' });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.answers).toEqual([{ name: FIXTURE.txt.name, type: 'TXT', class: 1, ttl: ttlNear(300), data: [FIXTURE.txt.text] }]);
  });

  it('MX', async () => {
    const reply = await query({ server: warden.dns, transport, name: FIXTURE.mx.name, type: 'MX' });
    expect(reply.rcode).toBe('NOERROR');
    const exchanges = reply.answers.map((r) => r.data as { preference: number; exchange: string }).sort((a, b) => a.preference - b.preference);
    expect(exchanges).toEqual(FIXTURE.mx.exchanges);
    expect(reply.answers.every((r) => r.type === 'MX' && r.name === FIXTURE.mx.name)).toBe(true);
  });

  it('a chain of three CNAMEs ending in an A', async () => {
    const reply = await query({ server: warden.dns, transport, name: FIXTURE.cnameChain.name, type: 'A' });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.answers.map((r) => [r.type, r.name, r.data])).toEqual([
      ...FIXTURE.cnameChain.links.map(([from, to]) => ['CNAME', from, to]),
      ['A', FIXTURE.cnameChain.target, FIXTURE.cnameChain.address],
    ]);
  });

  it('a name under a private TLD (.internal) through a CNAME', async () => {
    const reply = await query({ server: warden.dns, transport, name: FIXTURE.privateTld.cname, type: 'A' });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.answers.map((r) => [r.type, r.data])).toEqual([
      ['CNAME', FIXTURE.privateTld.name],
      ['A', FIXTURE.privateTld.address],
    ]);
  });

  it('NXDOMAIN with the zone SOA in the authority section', async () => {
    const reply = await query({ server: warden.dns, transport, name: `${transport}-${FIXTURE.nxdomain.name}`, type: 'A' });
    expect(reply.rcode).toBe('NXDOMAIN');
    expect(reply.answers).toEqual([]);
    expect(reply.authorities).toEqual([
      {
        name: FIXTURE.zone,
        type: 'SOA',
        class: 1,
        ttl: ttlNear(FIXTURE.negativeTtl),
        data: { mname: FIXTURE.soa.mname, rname: FIXTURE.soa.rname, serial: FIXTURE.soa.serial, refresh: 3600, retry: 600, expire: 86400, minimum: FIXTURE.soa.minimum },
      },
    ]);
  });

  it('NODATA: NOERROR, no answers, SOA in authority', async () => {
    const reply = await query({ server: warden.dns, transport, name: FIXTURE.nodata.name, type: 'AAAA' });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.answers).toEqual([]);
    expect(reply.authorities.map((r) => [r.type, r.name])).toEqual([['SOA', FIXTURE.zone]]);
  });

  it('echoes the question name exactly as sent (mixed case)', async () => {
    const name = 'WwW.DnsWarden.TeSt';
    const reply = await query({ server: warden.dns, transport, name, type: 'A' });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.question).toEqual({ name, type: 'A' });
    expect(reply.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
  });
});

describe('IPv6 listener', () => {
  it('listens on every listen.dns address, [::1] included, UDP and TCP on the same port', async () => {
    expect(warden.app.dns).toHaveLength(2);
    const v6 = warden.app.dns[1]!;
    expect(v6.address).toBe('::1');
    for (const transport of ['udp', 'tcp'] as const) {
      const reply = await query({ server: v6, transport, name: FIXTURE.aaaa.name, type: 'AAAA' });
      expect(reply.rcode).toBe('NOERROR');
      expect(reply.answers.map((r) => r.data)).toEqual([FIXTURE.aaaa.address]);
    }
  });
});

describe('RFC 7766 TCP', () => {
  it('answers several queries pipelined on one connection, each reply matched by ID to its question', async () => {
    const queries = [
      { name: FIXTURE.a.name, type: 'A' },
      { name: FIXTURE.aaaa.name, type: 'AAAA' },
      { name: FIXTURE.txt.name, type: 'TXT' },
      { name: FIXTURE.mx.name, type: 'MX' },
      { name: FIXTURE.cnameChain.name, type: 'A' },
      { name: 'pipelined-nx.dnswarden.test', type: 'A' },
      { name: FIXTURE.bigTxt.name, type: 'TXT' },
      { name: FIXTURE.privateTld.name, type: 'A' },
    ] as const;
    const result = await pipelineTcp(warden.dns, queries);
    expect(result.unmatched).toEqual([]);
    expect(result.arrivalOrder).toHaveLength(queries.length);
    expect(result.replies.map((r) => r.question)).toEqual(queries.map((q) => ({ name: q.name, type: q.type })));
    expect(result.replies.map((r) => r.rcode)).toEqual(['NOERROR', 'NOERROR', 'NOERROR', 'NOERROR', 'NOERROR', 'NXDOMAIN', 'NOERROR', 'NOERROR']);
    expect(result.replies[0]!.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
    expect(result.replies[2]!.answers.map((r) => r.data)).toEqual([[FIXTURE.txt.text]]);
    expect(result.replies[4]!.answers.at(-1)?.data).toBe(FIXTURE.cnameChain.address);
    expect(result.replies[6]!.answers.map((r) => (r.data as string[]).join('')).sort()).toEqual([...FIXTURE.bigTxt.strings]);
    expect(result.replies[7]!.answers.map((r) => r.data)).toEqual([FIXTURE.privateTld.address]);
  });

  it('keeps the connection open for queries sent one after another', async () => {
    const conn = await TcpConnection.open(warden.dns);
    try {
      for (let i = 0; i < 3; i++) {
        const id = 1000 + i;
        conn.send(encodeQuery({ id, name: FIXTURE.a.name, type: 'A' }));
        await conn.until((frames) => frames.length === i + 1, 3000);
        const reply = decodeReply(conn.frames[i]!);
        expect(reply.id).toBe(id);
        expect(reply.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
      }
      expect(conn.closed).toBe(false);
    } finally {
      conn.close();
    }
  });

  it('reassembles a query split across TCP segments (length prefix and body sent apart)', async () => {
    const conn = await TcpConnection.open(warden.dns);
    try {
      const msg = encodeQuery({ id: 777, name: FIXTURE.a.name, type: 'A' });
      const framed = Buffer.concat([Buffer.from([msg.length >> 8, msg.length & 0xff]), msg]);
      conn.send(framed.subarray(0, 1), false);
      await new Promise((ok) => setTimeout(ok, 50));
      conn.send(framed.subarray(1, 9), false);
      await new Promise((ok) => setTimeout(ok, 50));
      conn.send(framed.subarray(9), false);
      await conn.until((frames) => frames.length === 1, 3000);
      const reply = decodeReply(conn.frames[0]!);
      expect(reply.id).toBe(777);
      expect(reply.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
    } finally {
      conn.close();
    }
  });
});

describe('RFC 7766 connection management', () => {
  it('closes a connection left idle for server.tcp_idle_timeout_ms', async () => {
    const w = await startWarden({ server: { tcp_idle_timeout_ms: 300 } }, { upstream });
    try {
      const conn = await TcpConnection.open(w.dns);
      conn.send(encodeQuery({ id: 9, name: FIXTURE.a.name, type: 'A' }));
      await conn.until((frames) => frames.length === 1, 3000);
      const idleMs = await conn.waitClosed(5000);
      expect(conn.closed).toBe(true);
      expect(idleMs).toBeGreaterThanOrEqual(200);
      expect(idleMs).toBeLessThan(2000);
    } finally {
      await w.close();
    }
  });

  it('caps open connections at server.tcp_max_connections; a slot frees when one closes', async () => {
    const w = await startWarden({ server: { tcp_max_connections: 2 } }, { upstream });
    const open: TcpConnection[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const conn = await TcpConnection.open(w.dns);
        open.push(conn);
        conn.send(encodeQuery({ id: 20 + i, name: FIXTURE.a.name, type: 'A' }));
        await conn.until((frames) => frames.length === 1, 3000);
      }
      // The third is closed by the server without an answer.
      const third = await TcpConnection.open(w.dns);
      third.send(encodeQuery({ id: 30, name: FIXTURE.a.name, type: 'A' }));
      await third.waitClosed(3000);
      expect(third.closed).toBe(true);
      expect(third.frames).toEqual([]);
      // The first two still work.
      open[0]!.send(encodeQuery({ id: 21, name: FIXTURE.aaaa.name, type: 'AAAA' }));
      await open[0]!.until((frames) => frames.length === 2, 3000);
      expect(decodeReply(open[0]!.frames[1]!).answers.map((r) => r.data)).toEqual([FIXTURE.aaaa.address]);
      // Free a slot: a new connection is served again.
      open.shift()!.close();
      await new Promise((ok) => setTimeout(ok, 100));
      const reply = await query({ server: w.dns, transport: 'tcp', name: FIXTURE.a.name, type: 'A' });
      expect(reply.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
    } finally {
      for (const c of open) c.close();
      await w.close();
    }
  });
});

describe('per-source TCP cap', () => {
  it('one source holds at most server.tcp_max_connections_per_source; another source still gets in', async () => {
    const w = await startWarden({ server: { tcp_max_connections: 10, tcp_max_connections_per_source: 2 } }, { upstream });
    const open: TcpConnection[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const conn = await TcpConnection.open(w.dns);
        open.push(conn);
        conn.send(encodeQuery({ id: 40 + i, name: FIXTURE.a.name, type: 'A' }));
        await conn.until((frames) => frames.length === 1, 3000);
      }
      const third = await TcpConnection.open(w.dns);
      open.push(third);
      third.send(encodeQuery({ id: 50, name: FIXTURE.a.name, type: 'A' }));
      await third.waitClosed(3000);
      expect(third.frames).toEqual([]);
      // 127.0.0.2 has no session: it is let in (and told REFUSED), its own slots untouched by 127.0.0.1's.
      const other = await TcpConnection.open(w.dns, { bind: '127.0.0.2' });
      open.push(other);
      other.send(encodeQuery({ id: 51, name: FIXTURE.a.name, type: 'A' }));
      await other.until((frames) => frames.length === 1, 3000);
      expect(decodeReply(other.frames[0]!).rcode).toBe('REFUSED');
      expect(metricValue(await w.app.metricsText(), 'dnswarden_tcp_rejected_total')).toBe(1);
    } finally {
      for (const c of open) c.close();
      await w.close();
    }
  });
});

describe('as a person would, with dig', () => {
  it('dig over UDP shows NOERROR and the A record', async () => {
    const out = await dig({ server: warden.dns, name: FIXTURE.a.name, type: 'A' });
    expect(out.exitCode).toBe(0);
    expect(out.status).toBe('NOERROR');
    expect(out.transport).toBe('UDP');
    expect(out.answers.map((a) => [a.name, a.type, a.data])).toEqual([[`${FIXTURE.a.name}.`, 'A', FIXTURE.a.address]]);
  });

  it('dig +tcp follows the CNAME chain', async () => {
    const out = await dig({ server: warden.dns, name: FIXTURE.cnameChain.name, type: 'A', tcp: true });
    expect(out.exitCode).toBe(0);
    expect(out.status).toBe('NOERROR');
    expect(out.transport).toBe('TCP');
    expect(out.answers.map((a) => a.type)).toEqual(['CNAME', 'CNAME', 'CNAME', 'A']);
    expect(out.answers.at(-1)?.data).toBe(FIXTURE.cnameChain.address);
  });

  it('dig MX and TXT', async () => {
    const mx = await dig({ server: warden.dns, name: FIXTURE.mx.name, type: 'MX' });
    expect(mx.status).toBe('NOERROR');
    expect(mx.answers.map((a) => a.data).sort()).toEqual(['10 mx1.dnswarden.test.', '20 mx2.dnswarden.test.']);
    const txt = await dig({ server: warden.dns, name: FIXTURE.txt.name, type: 'TXT', tcp: true });
    expect(txt.status).toBe('NOERROR');
    expect(txt.answers.map((a) => a.data)).toEqual([`"${FIXTURE.txt.text}"`]);
  });
});
