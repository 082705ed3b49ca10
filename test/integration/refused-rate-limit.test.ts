// REFUSED answers over UDP are rate-limited per source prefix (server.refused_rate_limit, RRL-style): a
// flood from a source without a session gets its budget of full answers, then every 2nd a minimal TC=1
// slip and nothing else, all counted. Real UDP sockets from loopback addresses without a session.
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeReply, encodeQuery, query, type DnsReply } from '../helpers/dns-client.js';
import { metricValue, startWarden, type Warden } from '../helpers/warden.js';

const NO_UPSTREAM = [{ address: '127.0.0.1:9' }]; // every query here is refused: no upstream is asked

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function limited(w: Warden): Promise<{ slipped: number; dropped: number }> {
  const text = await w.app.metricsText();
  return { slipped: metricValue(text, 'dnswarden_refused_limited_total', { action: 'slipped' }) ?? 0, dropped: metricValue(text, 'dnswarden_refused_limited_total', { action: 'dropped' }) ?? 0 };
}

/** Sends `count` queries from `bind` as fast as the socket takes them; collects replies until the server has decided all. */
async function flood(w: Warden, bind: string, count: number): Promise<{ replies: DnsReply[]; sentBytes: number; elapsedMs: number }> {
  const sock: Socket = createSocket('udp4');
  cleanups.push(() => new Promise<void>((ok) => sock.close(() => ok())));
  const replies: DnsReply[] = [];
  sock.on('message', (raw) => replies.push(decodeReply(raw)));
  await new Promise<void>((ok) => sock.bind({ address: bind, port: 0 }, () => ok()));
  const before = await limited(w);
  let sentBytes = 0;
  const started = Date.now();
  for (let i = 0; i < count; i++) {
    const q = encodeQuery({ id: i, name: `rrl-${i}.example.com`, type: 'A' });
    sentBytes += q.length;
    await new Promise<void>((ok) => sock.send(q, w.dns.port, w.dns.address, () => ok()));
  }
  const elapsedMs = Date.now() - started;
  // Every query is either answered (a reply arrives) or counted as dropped.
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const now = await limited(w);
    if (replies.length + now.dropped - before.dropped >= count) break;
    await new Promise((ok) => setTimeout(ok, 50));
  }
  return { replies, sentBytes, elapsedMs };
}

describe('REFUSED rate limit over UDP', () => {
  it('past the per-prefix budget slips every 2nd refusal as a minimal TC=1 reply and drops the rest', async () => {
    const w = await startWarden({ upstreams: NO_UPSTREAM, server: { refused_rate_limit: { per_second: 5, slip: 2 } } });
    cleanups.push(() => w.close());
    const COUNT = 300;
    const { replies, sentBytes, elapsedMs } = await flood(w, '127.0.0.2', COUNT);

    const full = replies.filter((r) => !r.tc);
    const slips = replies.filter((r) => r.tc);
    // The budget: 5 at once, 5 more per second the flood lasted.
    expect(full.length).toBeGreaterThanOrEqual(5);
    expect(full.length).toBeLessThanOrEqual(5 + Math.ceil((elapsedMs / 1000 + 1) * 5));
    for (const r of full) {
      expect(r.rcode).toBe('REFUSED');
      expect(r.edes.map((e) => e.code)).toEqual([18]);
    }
    // A slip: REFUSED, TC=1, the question and nothing else (no OPT, so no EDE text), never bigger than its query.
    for (const r of slips) {
      expect(r.rcode).toBe('REFUSED');
      expect(r.question?.name).toBe(`rrl-${r.id}.example.com`);
      expect(r.opt).toBeUndefined();
      expect(r.answers.length + r.authorities.length + r.additionals.length).toBe(0);
      expect(r.size).toBeLessThan(encodeQuery({ id: r.id, name: `rrl-${r.id}.example.com`, type: 'A' }).length);
    }
    const counted = await limited(w);
    expect(counted.slipped).toBe(slips.length);
    expect(counted.slipped + counted.dropped).toBe(COUNT - full.length);
    expect(Math.abs(counted.slipped - counted.dropped)).toBeLessThanOrEqual(full.length + 1); // every 2nd slips
    // Far from amplifying: the flood got back less than it sent.
    const receivedBytes = replies.reduce((sum, r) => sum + r.size, 0);
    expect(receivedBytes).toBeLessThan(sentBytes);
  }, 60_000);

  it('another source prefix keeps its own budget; TCP is not limited', async () => {
    const w = await startWarden({ upstreams: NO_UPSTREAM, server: { refused_rate_limit: { per_second: 2, slip: 2 } } });
    cleanups.push(() => w.close());
    await flood(w, '127.0.0.2', 50); // exhausts 127.0.0.0/24
    const flooded = await limited(w);
    expect(flooded.dropped).toBeGreaterThan(0);
    // 127.0.1.2 is another /24: a full REFUSED with its EDE text.
    const other = await query({ server: w.dns, transport: 'udp', name: 'other.example.com', type: 'A', bind: '127.0.1.2' });
    expect(other.tc).toBe(false);
    expect(other.edes.map((e) => e.code)).toEqual([18]);
    // Over TCP the source is proven by the handshake: the same exhausted prefix gets full answers.
    for (let i = 0; i < 5; i++) {
      const r = await query({ server: w.dns, transport: 'tcp', name: `tcp-${i}.example.com`, type: 'A', bind: '127.0.0.2' });
      expect(r.rcode).toBe('REFUSED');
      expect(r.edes.map((e) => e.code)).toEqual([18]);
    }
    expect(await limited(w)).toEqual(flooded);
  }, 60_000);

  it('is on by default, and per_second: 0 turns it off', async () => {
    const on = await startWarden({ upstreams: NO_UPSTREAM });
    cleanups.push(() => on.close());
    expect(on.app.config.server.refused_rate_limit).toMatchObject({ per_second: 20, slip: 2, ipv4_prefix: 24, ipv6_prefix: 56 });
    await flood(on, '127.0.0.2', 200);
    expect((await limited(on)).dropped).toBeGreaterThan(0);

    const off = await startWarden({ upstreams: NO_UPSTREAM, server: { refused_rate_limit: { per_second: 0 } } });
    cleanups.push(() => off.close());
    const { replies } = await flood(off, '127.0.0.2', 200);
    expect(replies.filter((r) => !r.tc && r.rcode === 'REFUSED')).toHaveLength(200);
    expect(await limited(off)).toEqual({ slipped: 0, dropped: 0 });
  }, 60_000);
});
