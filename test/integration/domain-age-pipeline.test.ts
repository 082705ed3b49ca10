// Issue 3, the domain-age signal wired through the server: with domain_age on, the resolver asks a
// real RDAP server (loopback) for the registrable domain's age within the budget, and the query's
// score carries it — a young domain scores, an old one does not; lookups are counted by source.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../../src/app.js';
import { parseConfig } from '../../src/ops/config.js';
import { query } from '../helpers/dns-client.js';
import { startRdapServer, type RdapServer } from '../helpers/rdap-server.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { metricValue } from '../helpers/warden.js';

// Three days after new-sync-cdn.com's creation date in the RDAP fixture.
const NOW = Date.parse('2026-01-15T09:30:00Z');

let upstream: Upstream;
let rdap: RdapServer;
let app: App;
let dir: string;

beforeAll(async () => {
  upstream = await startUpstream();
  rdap = await startRdapServer();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-age-'));
  app = await startApp(parseConfig({
    listen: { dns: ['127.0.0.1:0'], admin: '127.0.0.1:0' },
    admin: { token: 'domain-age-test-token-0123456789' },
    storage: { dir },
    upstreams: [{ address: upstream.hostPort }],
    sessions: { static: [{ id: 'age-test', addresses: ['127.0.0.1/32'], type: 'interactive', user: 'u', role: 'r' }] },
    // A generous budget: this test is about the wiring, not the deadline (domain-age.test.ts covers that).
    domain_age: { enabled: true, budget_ms: 3000, rdap: { servers: { com: rdap.url } }, whois: { enabled: false } },
    logging: { level: 'silent' },
  }), { nowMs: () => NOW });
});

afterAll(async () => {
  await app?.close();
  await rdap?.close();
  await upstream?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

async function historyScore(name: string): Promise<number | undefined> {
  const res = await fetch(`${app.adminUrl}/v1/sessions/age-test/queries`, { headers: { authorization: 'Bearer domain-age-test-token-0123456789' } });
  const body = (await res.json()) as { queries: { name: string; score?: number }[] };
  return body.queries.find((q) => q.name === name)?.score;
}

describe('domain age in the query path', () => {
  it('scores a 3-day-old domain by its age and an old one not at all, from RDAP, counted', async () => {
    const server = app.dns[0]!;
    await query({ server, name: 'www.new-sync-cdn.com', type: 'A' });
    await query({ server, name: 'www.example.com', type: 'A' });
    // domain_age weight 0.1 × (1 − 3/30) = 0.09; nothing else in a plain name scores.
    expect(await historyScore('www.new-sync-cdn.com')).toBeCloseTo(0.09, 2);
    expect(await historyScore('www.example.com')).toBeUndefined(); // score 0: the prebuilt answer verdict
    expect(rdap.requests.get('new-sync-cdn.com')).toBe(1);
    const metrics = await app.metricsText();
    expect(metricValue(metrics, 'dnswarden_domain_age_lookups_total', { source: 'rdap', result: 'ok' })).toBe(2);
    // The second query for the young domain is answered from the age cache, not RDAP again.
    await query({ server, name: 'api.new-sync-cdn.com', type: 'A' });
    expect(rdap.requests.get('new-sync-cdn.com')).toBe(1);
    expect(await historyScore('api.new-sync-cdn.com')).toBeCloseTo(0.09, 2);
  });
});
