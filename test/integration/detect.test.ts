// Issue 14 over real sockets, a real NSD upstream behind the server: a secret spread over ten domains of
// unknown age is quarantined by the session-wide information budget (spreading buys nothing), and once a
// domain is blocked for exfiltration-like traffic, the next new name to it is blocked too (sticky), so
// answered and blocked queries of one tunnel do not interleave; past the session type's bytes a minute of new
// labels, a query is blocked whatever its score (the bandwidth cap); known callback services are denied. The
// upstream's query count is what left.
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { base32, hex, prng } from '../../fixtures/corpora/generate.mjs';
import { query } from '../helpers/dns-client.js';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { metricValue, startWarden } from '../helpers/warden.js';

let upstream: Upstream;
beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream?.stop();
});

const session = (type: string) => ({ static: [{ id: 'job-14', addresses: ['127.0.0.1/32'], type, user: 'erin', role: 'etl' }] });

describe('session-wide information budget', () => {
  it('quarantines a secret sent round-robin over ten domains of unknown age before ~1 KB leaves', async () => {
    // sent as fast as the socket goes: the bandwidth cap and the encoded-label budget (which would catch these hex
    // labels first, see below) are lifted here to see the session-wide budget on its own
    const warden = await startWarden({ sessions: session('batch'), policy: { session_types: { batch: { bandwidth_bytes_per_min: 1e9, encoded_volume_budget_bytes: 1e9, total_volume_budget_bytes: 1e9 } } } }, { upstream });
    onTestFinished(() => warden.close());
    const r = prng(1414);
    const before = await upstream.queryCount();
    let quarantinedAt: number | undefined;
    let ede: string | undefined;
    let payload = 0;
    for (let i = 0; i < 600 && quarantinedAt === undefined; i++) {
      // 12 hex chars (6 bytes) a query: far below every per-query rule, and below each domain's own budget
      const chunk = r.bytes(6);
      const reply = await query({ server: warden.dns, name: `${hex(chunk)}.d${i % 10}-spread.test`, type: 'A' });
      if (reply.ede?.code === 15) {
        quarantinedAt = i;
        ede = reply.ede.text;
      } else payload += chunk.length;
    }
    expect(quarantinedAt).toBeDefined();
    expect(ede).toMatch(/^session quarantined \(qr-[0-9a-f]{8}-[0-9a-z]+\): ~\d+ B of unique labels to domains of unknown or young age/);
    const left = (await upstream.queryCount()) - before;
    expect(left).toBe(quarantinedAt); // every answered query went upstream, the quarantining one did not
    expect(payload).toBeLessThan(1024);
    expect(payload).toBeGreaterThan(400); // a benign-sized browsing session is far from it
    // the session stays closed: the next name is blocked without leaving
    const next = await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A' });
    expect(next.ede?.text).toMatch(/^session quarantined/);
    expect(metricValue(await warden.app.metricsText(), 'dnswarden_verdicts_total', { action: 'quarantine', rule: 'accumulation', mode: 'enforce', session_type: 'batch' })).toBe(1);
  }, 60_000);
});

describe('encoded-label budget', () => {
  it('quarantines short base32 labels to one domain before 512 payload bytes leave (counted at the upstream)', async () => {
    const warden = await startWarden({ sessions: session('batch'), policy: { session_types: { batch: { bandwidth_bytes_per_min: 1e9 } } } }, { upstream });
    onTestFinished(() => warden.close());
    const r = prng(1415);
    const before = await upstream.queryCount();
    let quarantinedAt: number | undefined;
    let ede: string | undefined;
    let payload = 0;
    for (let i = 0; i < 400 && quarantinedAt === undefined; i++) {
      const chunk = r.bytes(5 + (i % 6)); // 8–16 base32 chars a query, one label: far below every per-query rule
      const reply = await query({ server: warden.dns, name: `${base32(chunk)}.one-domain.test`, type: 'A' });
      if (reply.ede?.code === 15) {
        quarantinedAt = i;
        ede = reply.ede.text;
      } else payload += chunk.length;
    }
    expect(quarantinedAt).toBeDefined();
    expect(ede).toMatch(/^session quarantined \(qr-[0-9a-f]{8}-[0-9a-z]+\): ~\d+ B of encoded-looking labels \(any domain\)/);
    expect((await upstream.queryCount()) - before).toBe(quarantinedAt); // what left is what the upstream saw
    expect(payload).toBeLessThanOrEqual(512);
    expect(payload).toBeGreaterThan(300);
  }, 60_000);
});

describe('sticky blocks', () => {
  const tunnel = 'mzxw6ytboi3tqnbrgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmr.kfvgs4tfmvxgk3tufzqxg43pn5xw4zlsmfwgs3temvzhs5dfnzsxg2lpnzsxa7q.exfil.dnswarden.test';

  it('blocks the next new name to a blocked domain (EDE says sticky), however plain it looks, and quarantines as before', async () => {
    const warden = await startWarden({ sessions: session('interactive') }, { upstream });
    onTestFinished(() => warden.close());
    const before = await upstream.queryCount();
    const first = await query({ server: warden.dns, name: tunnel, type: 'TXT' });
    expect(first.ede?.text).toMatch(/^threshold: score /);
    const chunk = await query({ server: warden.dns, name: 'ab12.dnswarden.test', type: 'A' });
    expect(chunk.rcode).toBe('NXDOMAIN');
    expect(chunk.ede?.code).toBe(15);
    expect(chunk.ede?.text).toMatch(/^sticky: new name to dnswarden\.test, blocked \d+ s ago \([0-9a-f]{8}-[0-9a-z]+\)$/);
    const other = await query({ server: warden.dns, name: 'www.example.com', type: 'A' });
    expect(other.rcode).toBe('NOERROR');
    expect((await upstream.queryCount()) - before).toBe(1); // only the other domain's query left
    // interactive quarantines at its 3rd block (the sticky one counted): even the zone's ordinary www is a new name to the blocked domain
    expect((await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A' })).ede?.text).toMatch(/^session quarantined \(qr-[0-9a-f]{8}-[0-9a-z]+\): 3 blocked in window/);
    const metrics = await warden.app.metricsText();
    expect(metricValue(metrics, 'dnswarden_verdicts_total', { action: 'nxdomain', rule: 'sticky', mode: 'enforce', session_type: 'interactive' })).toBe(1);
  }, 60_000);
});

describe('bandwidth cap', () => {
  it('blocks new names past the bytes a minute with an EDE naming the cap and an event id, counted in the verdict metric', async () => {
    // old domains are established (no session-wide budget); a small cap so a few queries reach it
    const warden = await startWarden({ sessions: session('batch'), policy: { session_types: { batch: { bandwidth_bytes_per_min: 100 } } } }, { upstream });
    onTestFinished(() => warden.close());
    const r = prng(1415);
    const before = await upstream.queryCount();
    let capped: { at: number; text: string | undefined } | undefined;
    const sent: string[] = [];
    for (let i = 0; i < 40 && capped === undefined; i++) {
      const name = `${hex(r.bytes(8))}.example.com`;
      const reply = await query({ server: warden.dns, name, type: 'A' });
      if (reply.ede?.code === 15) capped = { at: i, text: reply.ede.text };
      else sent.push(name);
    }
    expect(capped).toBeDefined();
    expect(capped!.text).toMatch(/^bandwidth: ~\d+ B of new labels a minute \(cap 100\) \([0-9a-f]{8}-[0-9a-z]+\)$/);
    expect(capped!.at).toBeGreaterThan(5); // 16 hex chars ≈ 9 B a name
    expect(capped!.at).toBeLessThan(15);
    expect((await upstream.queryCount()) - before).toBe(capped!.at);
    // a name already answered is still answered (from the cache), and the session is not quarantined
    expect((await query({ server: warden.dns, name: sent[0]!, type: 'A' })).ede?.code).not.toBe(15);
    expect((await query({ server: warden.dns, name: `${hex(r.bytes(8))}.example.com`, type: 'A' })).ede?.text).toMatch(/^bandwidth:/);
    const metrics = await warden.app.metricsText();
    expect(metricValue(metrics, 'dnswarden_verdicts_total', { action: 'nxdomain', rule: 'bandwidth', mode: 'enforce', session_type: 'batch' })).toBe(2);
    expect(metricValue(metrics, 'dnswarden_quarantines_raised_total') ?? 0).toBe(0);
  }, 60_000);
});

describe('callback services', () => {
  it('denies an interactsh/Collaborator-style lookup with EDE 17 before anything leaves', async () => {
    const warden = await startWarden({ sessions: session('interactive') }, { upstream });
    onTestFinished(() => warden.close());
    const before = await upstream.queryCount();
    for (const name of ['c58bduhe008dovpvhvugcfemp9yyyyyyn.oast.fun', 'abc.oastify.com', 'x1.dnslog.cn']) {
      const reply = await query({ server: warden.dns, name, type: 'A' });
      expect(reply.rcode, name).toBe('NXDOMAIN');
      expect(reply.ede, name).toEqual({ code: 17, text: expect.stringMatching(/^deny_list: known callback service \(policy\.callback_services\)/) });
    }
    expect(await upstream.queryCount()).toBe(before);
    expect(metricValue(await warden.app.metricsText(), 'dnswarden_verdicts_total', { action: 'nxdomain', rule: 'deny_list', mode: 'enforce', session_type: 'interactive' })).toBe(3);
  }, 60_000);
});
