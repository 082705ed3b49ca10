// Issue 2, admin HTTP: /healthz is open, everything else needs the bearer token; /metrics is
// Prometheus text with the documented names, counts what happened, and never carries a session id,
// address or domain name as a label value.
import { describe, expect, it } from 'vitest';
import { FIXTURE } from '../helpers/upstream.js';
import { query } from '../helpers/dns-client.js';
import { metricValue, TEST_SESSION } from '../helpers/warden.js';
import { useSharedWarden } from '../helpers/shared-warden.js';

const t = useSharedWarden();

const METRIC_NAMES = [
  'dnswarden_queries_total',
  'dnswarden_malformed_total',
  'dnswarden_cache_hits_total',
  'dnswarden_cache_misses_total',
  'dnswarden_cache_entries',
  'dnswarden_upstream_duration_seconds',
  'dnswarden_upstream_failures_total',
  'dnswarden_sessions_live',
] as const;

describe('access', () => {
  it('a request target URL() cannot read ("//", "//[") is a 400, and the server keeps answering', async () => {
    const { request } = await import('node:http');
    const { hostname, port } = new URL(t.warden.adminUrl);
    for (const path of ['//', '//[']) {
      const status = await new Promise<number>((ok, fail) => {
        const req = request({ host: hostname, port, path, method: 'GET' }, (res) => { res.resume(); ok(res.statusCode ?? 0); });
        req.on('error', fail);
        req.end();
      });
      expect(status, path).toBe(400);
    }
    expect((await t.warden.admin('/healthz', { token: null })).status).toBe(200);
  });

  it('/healthz answers without a token', async () => {
    const res = await t.warden.admin('/healthz', { token: null });
    expect(res.status).toBe(200);
  });

  it('/metrics without a token is 401, with a wrong token 401, with the token 200', async () => {
    expect((await t.warden.admin('/metrics', { token: null })).status).toBe(401);
    expect((await t.warden.admin('/metrics', { token: `${t.warden.adminToken}x` })).status).toBe(401);
    const ok = await t.warden.admin('/metrics');
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toMatch(/^text\/plain/);
  });

  it('a token in another scheme or case-mangled is refused', async () => {
    const res = await fetch(`${t.warden.adminUrl}/metrics`, { headers: { authorization: `Basic ${t.warden.adminToken}` } });
    expect(res.status).toBe(401);
    await res.body?.cancel();
  });

  it('an unknown path with the token is 404; without the token it is 401 (nothing leaks)', async () => {
    expect((await t.warden.admin('/v1/nope')).status).toBe(404);
    expect((await t.warden.admin('/v1/nope', { token: null })).status).toBe(401);
  });

  it('the admin listener is where app.adminUrl says, on loopback', () => {
    expect(t.warden.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(t.warden.adminToken).toBe((t.warden.config['admin'] as { token: string }).token);
  });
});

describe('/metrics', () => {
  it('has every documented metric name', async () => {
    const res = await t.warden.admin('/metrics');
    for (const name of METRIC_NAMES) expect(res.text, name).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
  });

  it('counts queries by transport, qtype and rcode', async () => {
    const before = await t.warden.app.metricsText();
    const count = (text: string, labels: Record<string, string>) => metricValue(text, 'dnswarden_queries_total', labels) ?? 0;
    await query({ server: t.warden.dns, transport: 'udp', name: FIXTURE.a.name, type: 'A' });
    await query({ server: t.warden.dns, transport: 'udp', name: FIXTURE.a.name, type: 'A' });
    await query({ server: t.warden.dns, transport: 'tcp', name: FIXTURE.txt.name, type: 'TXT' });
    await query({ server: t.warden.dns, transport: 'udp', name: `metrics-${FIXTURE.nxdomain.name}`, type: 'AAAA' });
    await query({ server: t.warden.dns, transport: 'udp', bind: '127.0.0.2', name: FIXTURE.a.name, type: 'A' });
    const after = (await t.warden.admin('/metrics')).text;
    expect(count(after, { transport: 'udp', qtype: 'A', rcode: 'NOERROR' }) - count(before, { transport: 'udp', qtype: 'A', rcode: 'NOERROR' })).toBe(2);
    expect(count(after, { transport: 'tcp', qtype: 'TXT', rcode: 'NOERROR' }) - count(before, { transport: 'tcp', qtype: 'TXT', rcode: 'NOERROR' })).toBe(1);
    expect(count(after, { transport: 'udp', qtype: 'AAAA', rcode: 'NXDOMAIN' }) - count(before, { transport: 'udp', qtype: 'AAAA', rcode: 'NXDOMAIN' })).toBe(1);
    expect(count(after, { transport: 'udp', qtype: 'A', rcode: 'REFUSED' }) - count(before, { transport: 'udp', qtype: 'A', rcode: 'REFUSED' })).toBe(1);
  });

  it('observes upstream latency per upstream and counts live sessions', async () => {
    await query({ server: t.warden.dns, name: FIXTURE.mx.name, type: 'MX' });
    const text = await t.warden.app.metricsText();
    expect(metricValue(text, 'dnswarden_upstream_duration_seconds_count', { upstream: t.upstream.hostPort })).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'dnswarden_sessions_live')).toBe(1);
  });

  it('app.metricsText() and GET /metrics show the same metric families', async () => {
    const http = (await t.warden.admin('/metrics')).text;
    const inProcess = await t.warden.app.metricsText();
    const families = (t: string) => [...t.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]).sort();
    expect(families(inProcess)).toEqual(families(http));
  });

  it('never carries a domain name, session id, user or client address as a label value', async () => {
    await query({ server: t.warden.dns, name: FIXTURE.cnameChain.name, type: 'A' });
    const text = (await t.warden.admin('/metrics')).text;
    const labelValues = [...text.matchAll(/^[a-z_]+\{([^}]*)\}/gm)].flatMap((m) => [...m[1]!.matchAll(/="([^"]*)"/g)].map((v) => v[1]!));
    const forbidden = [FIXTURE.zone, 'dnswarden.test', TEST_SESSION.id, TEST_SESSION.user, '127.0.0.2'];
    expect(labelValues.filter((v) => forbidden.some((f) => v.includes(f)))).toEqual([]);
    // The only address-like label value allowed is a configured upstream.
    expect(labelValues.filter((v) => /\d+\.\d+\.\d+\.\d+/.test(v) && v !== t.upstream.hostPort)).toEqual([]);
  });
});
