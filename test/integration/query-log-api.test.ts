// Issue 17 item 3 over real sockets: queries sent over DNS are found by GET /v1/queries (by name suffix, session,
// user, verdict, time) and by `dnswarden queries search` (the built CLI, spawned), in JSON, CSV and JSONL; the
// rows survive a restart (they are on disk); bad parameters are 400 naming the parameter; a viewer may read;
// with query_log.enabled false the endpoint says so. Needs `npm run build` first (the CLI is dist/src/cli.js).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { query } from '../helpers/dns-client.js';
import { startWarden, TEST_SESSION, type Warden } from '../helpers/warden.js';
import { base32Label } from '../helpers/exfil.js';
import { QueryLog } from '../../src/analyst/query-log.js';

const CLI = join(resolve(import.meta.dirname, '../..'), 'dist/src/cli.js');
const VIEWER = 'querylog-viewer-token-0123456789abcdef';
const OTHER = { id: 'other-agent', addresses: ['127.0.0.5/32'], type: 'batch', user: 'etl', role: 'loader' } as const;

let upstream: Upstream;
let warden: Warden;

interface Row { time: string; name: string; qtype: number; session: string; user: string; role: string; session_type: string; result: string; action: string; rule: string; rcode: number; score: number | null }

async function rows(qs: string, token?: string): Promise<Row[]> {
  const r = await warden.admin(`/v1/queries?${qs}`, token === undefined ? {} : { token });
  expect(r.status, r.text).toBe(200);
  return (r.json as { queries: Row[] }).queries;
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((ok) => {
    execFile(process.execPath, [CLI, ...args, '--url', warden.adminUrl, '--token', warden.adminToken], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, timeout: 20_000 }, (err, stdout, stderr) => {
      ok({ code: err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1, stdout, stderr });
    });
  });
}

let before: number;
beforeAll(async () => {
  upstream = await startUpstream();
  warden = await startWarden({
    admin: { tokens: [{ name: 'vera', kind: 'viewer', token: VIEWER }] },
    sessions: { static: [{ ...TEST_SESSION, addresses: [...TEST_SESSION.addresses] }, { ...OTHER, addresses: [...OTHER.addresses] }] },
  }, { upstream });
  before = Date.now() - 1;
  expect((await query({ server: warden.dns, bind: '127.0.0.1', name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR');
  expect((await query({ server: warden.dns, bind: '127.0.0.5', name: FIXTURE.a.name, type: 'AAAA' })).rcode).not.toBe('REFUSED');
  const blocked = await query({ server: warden.dns, bind: '127.0.0.5', name: `${base32Label('qlog')}.exfil-qlog.test`, type: 'TXT' });
  expect(blocked.rcode).toBe('NXDOMAIN');
});

afterAll(async () => {
  await warden?.close();
  await upstream?.stop();
});

describe('GET /v1/queries', () => {
  it('finds a name and the names under it, newest first, with who asked and what became of it', async () => {
    const parent = FIXTURE.a.name.split('.').slice(1).join('.');
    const found = await rows(`name=${parent}`);
    expect(found.map((r) => [r.session, r.qtype])).toEqual([['other-agent', 28], [TEST_SESSION.id, 1]]);
    expect(found[1]).toMatchObject({ name: FIXTURE.a.name, user: TEST_SESSION.user, role: TEST_SESSION.role, session_type: 'interactive', result: 'answered', action: 'answer', rcode: 0 });
    expect(Date.parse(found[1]!.time)).toBeGreaterThanOrEqual(before);
    expect(await rows(`name=x${parent}`)).toEqual([]); // whole labels only
  });

  it('filters by session, user, verdict and time, and a viewer may read it', async () => {
    expect((await rows('session=other-agent')).length).toBe(2);
    expect((await rows('user=etl&verdict=blocked')).map((r) => [r.name.split('.').slice(1).join('.'), r.rule, r.rcode])).toEqual([['exfil-qlog.test', 'threshold', 3]]);
    const [blocked] = await rows('verdict=threshold');
    expect(blocked!.score).toBeGreaterThan(0.7);
    expect(await rows(`until=${before}`)).toEqual([]);
    expect((await rows(`since=${new Date(before).toISOString()}&limit=1`, VIEWER)).length).toBe(1);
  });

  it('GET /v1/overview sums the last hour per minute and names the most blocked registrable domains', async () => {
    const r = await warden.admin('/v1/overview', { token: VIEWER });
    expect(r.status).toBe(200);
    const o = r.json as { queries: number; blocked: number; per_minute: { queries: number; blocked: number }[]; top_blocked_domains: { domain: string; count: number }[]; sessions_live: number; query_log: boolean };
    expect(o.query_log).toBe(true);
    expect(o.queries).toBe(3);
    expect(o.blocked).toBe(1);
    expect(o.per_minute.reduce((s, m) => s + m.queries, 0)).toBe(3);
    expect(o.top_blocked_domains).toEqual([{ domain: 'exfil-qlog.test', count: 1 }]);
    expect(o.sessions_live).toBe(2);
  });

  it('exports CSV and JSONL', async () => {
    const csv = await warden.admin('/v1/queries?session=other-agent&format=csv');
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    const lines = csv.text.trim().split('\r\n');
    expect(lines[0]).toBe('time,name,qtype,session,user,role,session_type,result,action,rule,rcode,score,count,last_time');
    expect(lines).toHaveLength(3);
    const jsonl = await warden.admin('/v1/queries?session=other-agent&format=jsonl');
    const parsed = jsonl.text.trim().split('\n').map((l) => JSON.parse(l) as Row);
    expect(parsed.map((r) => r.session)).toEqual(['other-agent', 'other-agent']);
  });

  it('refuses bad parameters with 400 naming them, and needs a token', async () => {
    for (const [qs, word] of [['limit=0', 'limit'], ['limit=abc', 'limit'], ['since=yesterday', 'since'], ['format=xml', 'format'], ['name=a%20b', 'name']] as const) {
      const r = await warden.admin(`/v1/queries?${qs}`);
      expect(r.status, qs).toBe(400);
      expect(r.text).toContain(word);
    }
    expect((await warden.admin('/v1/queries', { token: null })).status).toBe(401);
  });

  it('`dnswarden queries search` prints a table, CSV and JSONL', async () => {
    expect(existsSync(CLI)).toBe(true);
    const table = await cli(['queries', 'search', '--user', 'etl']);
    expect(table.stderr).toBe('');
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^TIME\s+SESSION\s+USER\s+RESULT\s+RULE\s+SCORE\s+QTYPE\s+NAME/);
    expect(table.stdout).toContain('other-agent');
    expect(table.stdout).toContain('exfil-qlog.test');
    const csv = await cli(['queries', 'search', '--session', TEST_SESSION.id, '--format', 'csv']);
    expect(csv.code).toBe(0);
    expect(csv.stdout).toContain(`,${FIXTURE.a.name},1,${TEST_SESSION.id},`);
    const jsonl = await cli(['queries', 'search', '--name', 'exfil-qlog.test', '--format', 'jsonl']);
    expect(jsonl.stdout.trim().split('\n').map((l) => (JSON.parse(l) as Row).result)).toEqual(['blocked']);
    const bad = await cli(['queries', 'search', '--since', 'never']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('since');
  });

  it('writes the rows to its file within about a second (read by a second handle), and says so when the log is off', async () => {
    const reader = QueryLog.open(warden.storageDir, { maxRows: 1000, maxAgeDays: 30 });
    try {
      await expect.poll(async () => (await reader.search({ user: 'etl' })).length, { timeout: 10_000, interval: 100 }).toBe(2);
    } finally {
      await reader.close();
    }
    const off = await startWarden({ query_log: { enabled: false } }, { upstream });
    try {
      expect((await query({ server: off.dns, bind: '127.0.0.1', name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR');
      const r = await off.admin('/v1/queries');
      expect(r.status).toBe(404);
      expect(r.text).toContain('query_log.enabled');
      expect(existsSync(join(off.storageDir, 'querylog.sqlite'))).toBe(false);
    } finally {
      await off.close();
    }
  });
});
