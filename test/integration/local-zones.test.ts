// Issue 16 part A over real sockets: local zones answered authoritatively (AA, SOA in authority for
// NXDOMAIN/NODATA, wildcards, $INCLUDE, CNAME chains inside and out of the zone, delegations forwarded),
// never scored; a bad zone file at start and at reload; response policy zones (each action, order,
// PASSTHRU, reload when the file changes); the produced RPZ; the DoH canary. dig and the tests' own
// client against an in-process server with a real NSD upstream.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { parseConfig } from '../../src/ops/config.js';
import { dig } from '../helpers/dig.js';
import { query, type SoaData } from '../helpers/dns-client.js';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { metricValue, startWarden } from '../helpers/warden.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CORP = { name: 'corp.example', file: join(ROOT, 'fixtures/zones/local/corp.example.zone') };
const THREAT = { name: 'threat.rpz', file: join(ROOT, 'fixtures/rpz/threat.rpz') };
const SECOND = { name: 'second.rpz', file: join(ROOT, 'fixtures/rpz/second.rpz') };

let upstream: Upstream;
let dir: string;
beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-zones-'));
});
afterAll(async () => {
  await upstream?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

/** Polls `check` until it holds or `timeoutMs` passes (generous: the suite runs under CPU load). */
async function eventually(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(await check(), 'condition not reached in time').toBe(true);
}

/** A zone whose CNAMEs leave it for the upstream's fixture zone. */
const OUT_ZONE = `$ORIGIN out.example.
$TTL 600
@ SOA ns hostmaster 5 3600 600 86400 60
@ NS ns
ns A 10.1.0.1
www CNAME ${FIXTURE.a.name}.
deny CNAME dns.google.
`;

describe('local zones', () => {
  it('answers from the zone with AA, echoing the question; the upstream never sees it; never scored', async () => {
    const warden = await startWarden({ zones: [CORP] }, { upstream });
    onTestFinished(() => warden.close());
    const before = await upstream.queryCount();
    const r = await query({ server: warden.dns, name: 'Git.Corp.Example', type: 'A' });
    expect(r.rcode).toBe('NOERROR');
    expect(r.aa).toBe(true);
    expect(r.question?.name).toBe('Git.Corp.Example');
    expect(r.answers.map((a) => [a.name.toLowerCase(), a.type, a.ttl, a.data])).toEqual([['git.corp.example', 'A', 120, '10.20.0.5']]);
    expect(r.opt).toBeDefined(); // EDNS in, EDNS out

    const d = await dig({ server: warden.dns, name: 'wiki.corp.example', type: 'A' });
    expect(d.status).toBe('NOERROR');
    expect(d.flags).toContain('aa');
    expect(d.answers.map((a) => a.data)).toEqual(['10.20.0.6']);

    // MX with in-zone glue in the additional section.
    const mx = await query({ server: warden.dns, name: 'corp.example', type: 'MX' });
    expect(mx.answers.map((a) => a.data)).toEqual([{ preference: 10, exchange: 'mail.corp.example' }]);
    expect(mx.additionals.filter((a) => a.type !== 'OPT').map((a) => [a.name, a.type])).toEqual([['mail.corp.example', 'A'], ['mail.corp.example', 'AAAA']]);

    expect(await upstream.queryCount()).toBe(before);
    const metrics = await warden.app.metricsText();
    expect(metricValue(metrics, 'dnswarden_local_answers_total', { zone: 'corp.example', rcode: 'NOERROR' })).toBe(3);
    // Not judged: no verdict, no score observed.
    expect(metricValue(metrics, 'dnswarden_verdicts_total', { action: 'answer', rule: 'none', mode: 'enforce', session_type: 'interactive' })).toBe(0);
    expect(metricValue(metrics, 'dnswarden_score_count', { session_type: 'interactive' })).toBe(0);
    const history = await warden.admin('/v1/sessions/test-local/queries');
    expect(JSON.stringify(history.json)).toContain('"rule":"local_zone"');
  });

  it('NXDOMAIN and NODATA carry the zone SOA in authority with TTL min(SOA TTL, MINIMUM)', async () => {
    const warden = await startWarden({ zones: [CORP] }, { upstream });
    onTestFinished(() => warden.close());
    const nx = await query({ server: warden.dns, name: 'nope.corp.example', type: 'A' });
    expect(nx.rcode).toBe('NXDOMAIN');
    expect(nx.aa).toBe(true);
    expect(nx.answers).toEqual([]);
    expect(nx.authorities.map((a) => [a.name, a.type, a.ttl])).toEqual([['corp.example', 'SOA', 300]]);
    expect((nx.authorities[0]!.data as SoaData).serial).toBe(2026120601);

    const nodata = await query({ server: warden.dns, name: 'git.corp.example', type: 'AAAA', transport: 'tcp' });
    expect(nodata.rcode).toBe('NOERROR');
    expect(nodata.aa).toBe(true);
    expect(nodata.answers).toEqual([]);
    expect(nodata.authorities.map((a) => a.type)).toEqual(['SOA']);

    const d = await dig({ server: warden.dns, name: 'nope.corp.example', type: 'A' });
    expect(d.status).toBe('NXDOMAIN');
    expect(d.flags).toContain('aa');
    expect(d.stdout).toMatch(/AUTHORITY SECTION:\ncorp\.example\.\s+300\s+IN\s+SOA/);
  });

  it('wildcards, $INCLUDE (with and without an origin), in-zone CNAME chains, an empty non-terminal', async () => {
    const warden = await startWarden({ zones: [CORP] }, { upstream });
    onTestFinished(() => warden.close());
    const w = await query({ server: warden.dns, name: 'anything.apps.corp.example', type: 'A' });
    expect(w.aa).toBe(true);
    expect(w.answers.map((a) => [a.name, a.data])).toEqual([['anything.apps.corp.example', '10.20.1.1']]);
    const wt = await dig({ server: warden.dns, name: 'x.y.apps.corp.example', type: 'TXT' });
    expect(wt.answers.map((a) => a.data)).toEqual(['"wildcard"']);

    expect((await query({ server: warden.dns, name: 'inc-host.corp.example', type: 'A' })).answers.map((a) => a.data)).toEqual(['10.20.4.4']);
    expect((await query({ server: warden.dns, name: 'www.other.corp.example', type: 'A' })).answers.map((a) => a.data)).toEqual(['10.20.5.6']);

    const chain = await query({ server: warden.dns, name: 'chain1.corp.example', type: 'A' });
    expect(chain.aa).toBe(true);
    expect(chain.answers.map((a) => [a.name, a.type, a.data])).toEqual([
      ['chain1.corp.example', 'CNAME', 'chain2.corp.example'],
      ['chain2.corp.example', 'CNAME', 'api.corp.example'],
      ['api.corp.example', 'CNAME', 'git.corp.example'],
      ['git.corp.example', 'A', '10.20.0.5'],
    ]);
    const ent = await query({ server: warden.dns, name: 'empty.nonterminal.corp.example', type: 'A' });
    expect(ent.rcode).toBe('NOERROR'); // exists (something is below it), no data
    expect(ent.answers).toEqual([]);
  });

  it('a CNAME out of the zone is resolved through the normal path (judged) and appended; a blocked target blocks', async () => {
    const file = join(dir, 'out.zone');
    writeFileSync(file, OUT_ZONE);
    const warden = await startWarden({ zones: [{ name: 'out.example', file }] }, { upstream });
    onTestFinished(() => warden.close());
    const r = await query({ server: warden.dns, name: 'www.out.example', type: 'A' });
    expect(r.rcode).toBe('NOERROR');
    expect(r.answers.map((a) => [a.name, a.type, a.data])).toEqual([
      ['www.out.example', 'CNAME', FIXTURE.a.name],
      [FIXTURE.a.name, 'A', FIXTURE.a.address],
    ]);
    const d = await dig({ server: warden.dns, name: 'www.out.example', type: 'A', tcp: true });
    expect(d.answers.map((a) => a.type)).toEqual(['CNAME', 'A']);
    // The target is judged like any query: a denied target is blocked with the deny list's EDE.
    const blocked = await query({ server: warden.dns, name: 'deny.out.example', type: 'A' });
    expect(blocked.rcode).toBe('NXDOMAIN');
    expect(blocked.ede?.code).toBe(17);
    const metrics = await warden.app.metricsText();
    expect(metricValue(metrics, 'dnswarden_verdicts_total', { action: 'nxdomain', rule: 'deny_list', mode: 'enforce', session_type: 'interactive' })).toBe(1);
  });

  it('a name below a delegation inside the zone is forwarded as usual', async () => {
    const file = join(dir, 'deleg.zone');
    // dnswarden.test delegated from a local parent zone: the upstream's data answers.
    writeFileSync(file, `$ORIGIN test.\n$TTL 60\n@ SOA ns hm 1 3600 600 86400 60\n@ NS ns\nns A 10.0.0.1\ndnswarden NS ns1.dnswarden\nlocal A 10.0.0.2\n`);
    const warden = await startWarden({ zones: [{ name: 'test', file }] }, { upstream });
    onTestFinished(() => warden.close());
    const r = await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A' });
    expect(r.aa).toBe(false);
    expect(r.answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
    const local = await query({ server: warden.dns, name: 'local.test', type: 'A' });
    expect(local.aa).toBe(true);
  });

  it('a local answer too big for UDP is truncated (TC=1) and whole over TCP', async () => {
    const file = join(dir, 'big.zone');
    const txt = Array.from({ length: 8 }, (_, i) => `big TXT "${String(i).repeat(200)}"`).join('\n');
    writeFileSync(file, `$ORIGIN big.example.\n$TTL 60\n@ SOA ns hm 1 3600 600 86400 60\n@ NS ns\nns A 10.0.0.1\n${txt}\n`);
    const warden = await startWarden({ zones: [{ name: 'big.example', file }] }, { upstream });
    onTestFinished(() => warden.close());
    const udp = await query({ server: warden.dns, name: 'big.big.example', type: 'TXT', edns: false });
    expect(udp.tc).toBe(true);
    expect(udp.answers).toEqual([]);
    expect(udp.size).toBeLessThanOrEqual(512);
    const tcp = await query({ server: warden.dns, name: 'big.big.example', type: 'TXT', transport: 'tcp' });
    expect(tcp.tc).toBe(false);
    expect(tcp.answers).toHaveLength(8);
    const d = await dig({ server: warden.dns, name: 'big.big.example', type: 'TXT', args: ['+bufsize=512'] });
    expect(d.truncatedRetry).toBe(true);
    expect(d.answers).toHaveLength(8);
  });

  it('a quarantined session is gated before local zones', async () => {
    const warden = await startWarden({ zones: [CORP] }, { upstream });
    onTestFinished(() => warden.close());
    const quarantineExfil = ['mzxw6ytboi3tqnbrgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmr', 'kfvgs4tfmvxgk3tufzqxg43pn5xw4zlsmfwgs3temvzhs5dfnzsxg2lpnzsxa7q', 'gezdgnbvgy3tqojqgezdgnbvgy3tqojqgezdgnbvgy3tqojqgezdgnbvgy3tqoj', 'onswg4tfoqqgk3tdn5sgkzbanfxca3dbmjswy4zaorxsa5dimuqgc5dumfrwwzl'];
    for (const [i, label] of quarantineExfil.entries()) await query({ server: warden.dns, name: `${label}.x${i}.exfil.dnswarden.test`, type: 'TXT' });
    const r = await query({ server: warden.dns, name: 'git.corp.example', type: 'A' });
    expect(r.rcode).toBe('NXDOMAIN');
    expect(r.ede?.text).toMatch(/^session quarantined/);
  });
});

describe('zone files that do not load', () => {
  it('a broken zone file fails the start with file:line and the config field', async () => {
    const bad = join(ROOT, 'fixtures/zones/local/bad/unknown-type.zone');
    await expect(startWarden({ zones: [{ name: 'corp.example', file: bad }] }, { upstream })).rejects.toThrow(/zones\[0\]\.file: .*unknown-type\.zone:\d+: unknown record type/);
  });

  it('a broken file at reload keeps the old zones and counts config_reloads_total{result="error"}', async () => {
    const file = join(dir, 'reload.zone');
    writeFileSync(file, OUT_ZONE.replace('out.example', 'corp.example').replace(/www CNAME.*\n/, 'git A 10.99.0.1\n'));
    const warden = await startWarden({ zones: [{ name: 'corp.example', file }] }, { upstream });
    onTestFinished(() => warden.close());
    expect((await query({ server: warden.dns, name: 'git.corp.example', type: 'A' })).answers.map((a) => a.data)).toEqual(['10.99.0.1']);

    writeFileSync(file, '$ORIGIN corp.example.\n$TTL 60\n@ SOA ns hm 1 3600 600 86400 60\n@ NS ns\ngit A 999.0.0.1\n');
    const raw = { ...warden.config, zones: [{ name: 'corp.example', file }] };
    await expect(warden.app.reload(parseConfig(raw))).rejects.toThrow(/zones\[0\]\.file: .*reload\.zone:5: /);
    expect(metricValue(await warden.app.metricsText(), 'dnswarden_config_reloads_total', { result: 'error' })).toBe(1);
    expect((await query({ server: warden.dns, name: 'git.corp.example', type: 'A' })).answers.map((a) => a.data)).toEqual(['10.99.0.1']);

    writeFileSync(file, '$ORIGIN corp.example.\n$TTL 60\n@ SOA ns hm 2 3600 600 86400 60\n@ NS ns\ngit A 10.99.0.2\n');
    await warden.app.reload(parseConfig(raw));
    expect((await query({ server: warden.dns, name: 'git.corp.example', type: 'A' })).answers.map((a) => a.data)).toEqual(['10.99.0.2']);
  });
});

describe('response policy zones', () => {
  it('each action: NXDOMAIN, NODATA, DROP as REFUSED, local data — all with EDE 17 naming the zone; counted per zone', async () => {
    const warden = await startWarden({ policy: { rpz: [THREAT] } }, { upstream });
    onTestFinished(() => warden.close());
    const before = await upstream.queryCount();
    const nx = await query({ server: warden.dns, name: 'bad.example', type: 'A' });
    expect(nx.rcode).toBe('NXDOMAIN');
    expect(nx.ede?.code).toBe(17);
    expect(nx.ede?.text).toMatch(/^rpz: threat\.rpz: bad\.example \(/);
    const below = await dig({ server: warden.dns, name: 'a.b.bad.example', type: 'A' });
    expect(below.status).toBe('NXDOMAIN');
    expect(below.ede?.code).toBe(17);
    expect(below.ede?.text).toContain('threat.rpz: *.bad.example');

    const nodata = await query({ server: warden.dns, name: 'empty.example', type: 'A' });
    expect(nodata.rcode).toBe('NOERROR');
    expect(nodata.answers).toEqual([]);
    expect(nodata.ede?.code).toBe(17);

    const drop = await query({ server: warden.dns, name: 'sink.example', type: 'A', timeoutMs: 3000 });
    expect(drop.rcode).toBe('REFUSED'); // answered, never dropped: an agent must not wait out a timeout
    expect(drop.ede?.code).toBe(17);
    expect(drop.ede?.text).toContain('threat.rpz');

    const local = await query({ server: warden.dns, name: 'x.walled.example', type: 'A' });
    expect(local.rcode).toBe('NOERROR');
    expect(local.answers.map((a) => [a.name, a.type, a.data])).toEqual([['x.walled.example', 'A', '10.9.9.9']]);
    expect(local.ede?.code).toBe(17);
    const localTxt = await dig({ server: warden.dns, name: 'y.walled.example', type: 'TXT' });
    expect(localTxt.answers.map((a) => a.data)).toEqual(['"walled garden"']);

    expect(await upstream.queryCount()).toBe(before); // nothing left
    const metrics = await warden.app.metricsText();
    expect(metricValue(metrics, 'dnswarden_rpz_hits_total', { zone: 'threat.rpz', action: 'nxdomain' })).toBe(2);
    expect(metricValue(metrics, 'dnswarden_rpz_hits_total', { zone: 'threat.rpz', action: 'nodata' })).toBe(1);
    expect(metricValue(metrics, 'dnswarden_rpz_hits_total', { zone: 'threat.rpz', action: 'drop' })).toBe(1);
    expect(metricValue(metrics, 'dnswarden_rpz_hits_total', { zone: 'threat.rpz', action: 'local' })).toBe(2);
    expect(metricValue(metrics, 'dnswarden_verdicts_total', { action: 'nxdomain', rule: 'rpz', mode: 'enforce', session_type: 'interactive' })).toBe(6);
  });

  it('PASSTHRU skips the later zones and the deny lists, and the name is still scored and forwarded', async () => {
    const file = join(dir, 'pass.rpz');
    writeFileSync(file, `$TTL 60\n@ SOA localhost. hm.localhost. 1 3600 600 604800 300\n@ NS localhost.\n${FIXTURE.a.name} CNAME rpz-passthru.\n`);
    const second = join(dir, 'second.rpz');
    writeFileSync(second, `$TTL 60\n@ SOA localhost. hm.localhost. 1 3600 600 604800 300\n@ NS localhost.\n${FIXTURE.a.name} CNAME .\n${FIXTURE.txt.name} CNAME .\n`);
    const warden = await startWarden({ policy: { rpz: [{ name: 'pass', file }, { name: 'later', file: second }], deny: [FIXTURE.zone] } }, { upstream });
    onTestFinished(() => warden.close());
    const r = await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A' });
    expect(r.rcode).toBe('NOERROR');
    expect(r.answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
    // The second zone decides a name the first has no trigger for (first match wins, in order).
    const txt = await query({ server: warden.dns, name: FIXTURE.txt.name, type: 'TXT' });
    expect(txt.rcode).toBe('NXDOMAIN');
    expect(txt.ede?.text).toContain('later:');
    const metrics = await warden.app.metricsText();
    // Judged by the score (rule none), not by a list.
    expect(metricValue(metrics, 'dnswarden_verdicts_total', { action: 'answer', rule: 'none', mode: 'enforce', session_type: 'interactive' })).toBe(1);
    expect(metricValue(metrics, 'dnswarden_verdicts_total', { action: 'nxdomain', rule: 'deny_list', mode: 'enforce', session_type: 'interactive' })).toBe(0);
  });

  it('several zones in order: the first match wins (the fixtures: second.rpz passes bad.example before threat.rpz blocks it)', async () => {
    const warden = await startWarden({ policy: { rpz: [SECOND, THREAT] } }, { upstream });
    onTestFinished(() => warden.close());
    // bad.example passes (second.rpz), so it is forwarded: the upstream has no such name → its own NXDOMAIN, no EDE 17.
    const passed = await query({ server: warden.dns, name: 'bad.example', type: 'A' });
    expect(passed.ede?.code).not.toBe(17);
    const blocked = await query({ server: warden.dns, name: 'later.example', type: 'A' });
    expect(blocked.ede?.text).toContain('second.rpz');
    const threat = await query({ server: warden.dns, name: 'x.bad.example', type: 'A' });
    expect(threat.ede?.text).toContain('threat.rpz');
  });

  it('is reloaded when its file changes; a broken file keeps the previous zones and is counted', async () => {
    const file = join(dir, 'live.rpz');
    const head = '$TTL 60\n@ SOA localhost. hm.localhost. 1 3600 600 604800 300\n@ NS localhost.\n';
    writeFileSync(file, `${head}one.example CNAME .\n`);
    const warden = await startWarden({ policy: { rpz: [{ name: 'live', file }] } }, { upstream });
    onTestFinished(() => warden.close());
    expect((await query({ server: warden.dns, name: 'one.example', type: 'A' })).ede?.code).toBe(17);
    expect((await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR');

    writeFileSync(file, `${head}one.example CNAME .\n${FIXTURE.a.name} CNAME rpz-drop.\n`);
    await eventually(async () => (await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A' })).rcode === 'REFUSED');

    writeFileSync(file, `${head}two.example CNAME nonsense\n(\n`);
    await eventually(async () => metricValue(await warden.app.metricsText(), 'dnswarden_rpz_reloads_total', { result: 'error' }) === 1);
    expect((await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A' })).rcode).toBe('REFUSED');
    expect(metricValue(await warden.app.metricsText(), 'dnswarden_rpz_reloads_total', { result: 'ok' })).toBe(1);
  });

  it('local data that is a CNAME is followed (upstream or a local zone) and appended, with EDE 17', async () => {
    const file = join(dir, 'redirect.rpz');
    writeFileSync(file, `$TTL 60\n@ SOA localhost. hm.localhost. 1 3600 600 604800 300\n@ NS localhost.\ngo.example CNAME ${FIXTURE.a.name}.\n*.lz.example CNAME git.corp.example.\n`);
    const warden = await startWarden({ zones: [CORP], policy: { rpz: [{ name: 'redirect', file }] } }, { upstream });
    onTestFinished(() => warden.close());
    const r = await query({ server: warden.dns, name: 'go.example', type: 'A' });
    expect(r.rcode).toBe('NOERROR');
    expect(r.aa).toBe(false);
    expect(r.answers.map((a) => [a.name, a.type, a.data])).toEqual([['go.example', 'CNAME', FIXTURE.a.name], [FIXTURE.a.name, 'A', FIXTURE.a.address]]);
    expect(r.ede?.code).toBe(17);
    expect(r.ede?.text).toContain('redirect: go.example');
    const d = await dig({ server: warden.dns, name: 'x.lz.example', type: 'A' });
    expect(d.status).toBe('NOERROR');
    expect(d.answers.map((a) => [a.type, a.data])).toEqual([['CNAME', 'git.corp.example.'], ['A', '10.20.0.5']]);
    expect(d.ede?.code).toBe(17);
  });

  it('observe mode: a trigger is counted and logged as would-block, the query is answered from upstream', async () => {
    const file = join(dir, 'observe.rpz');
    writeFileSync(file, `$TTL 60\n@ SOA localhost. hm.localhost. 1 3600 600 604800 300\n@ NS localhost.\n${FIXTURE.a.name} CNAME .\n`);
    const warden = await startWarden({ policy: { mode: 'observe', rpz: [{ name: 'obs', file }] } }, { upstream });
    onTestFinished(() => warden.close());
    const r = await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A' });
    expect(r.rcode).toBe('NOERROR');
    expect(r.answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
    const metrics = await warden.app.metricsText();
    expect(metricValue(metrics, 'dnswarden_verdicts_total', { action: 'nxdomain', rule: 'rpz', mode: 'observe', session_type: 'interactive' })).toBe(1);
    expect(metricValue(metrics, 'dnswarden_rpz_hits_total', { zone: 'obs', action: 'nxdomain' })).toBe(1);
  });

  it('a reload (SIGHUP) re-reads the policy zones: a broken one keeps them, a good one replaces them, a new order applies', async () => {
    const a = join(dir, 'hup-a.rpz');
    const b = join(dir, 'hup-b.rpz');
    const head = '$TTL 60\n@ SOA localhost. hm.localhost. 1 3600 600 604800 300\n@ NS localhost.\n';
    writeFileSync(a, `${head}both.example CNAME .\n`);
    writeFileSync(b, `${head}both.example CNAME *.\n`);
    const warden = await startWarden({ policy: { rpz: [{ name: 'a', file: a }] } }, { upstream });
    onTestFinished(() => warden.close());
    expect((await query({ server: warden.dns, name: 'both.example', type: 'A' })).rcode).toBe('NXDOMAIN');
    const withB = (order: string[]) => parseConfig({ ...warden.config, policy: { rpz: order.map((n) => ({ name: n, file: n === 'a' ? a : b })) } });
    const broken = join(dir, 'hup-broken.rpz');
    writeFileSync(broken, `${head}x.example CNAME\n`);
    await expect(warden.app.reload(parseConfig({ ...warden.config, policy: { rpz: [{ name: 'broken', file: broken }] } }))).rejects.toThrow(/policy\.rpz\[0\]\.file: .*hup-broken\.rpz:4: /);
    expect((await query({ server: warden.dns, name: 'both.example', type: 'A' })).rcode).toBe('NXDOMAIN');
    await warden.app.reload(withB(['b', 'a']));
    const nodata = await query({ server: warden.dns, name: 'both.example', type: 'A' });
    expect(nodata.rcode).toBe('NOERROR');
    expect(nodata.ede?.text).toContain('b: both.example');
    const metrics = await warden.app.metricsText();
    expect(metricValue(metrics, 'dnswarden_config_reloads_total', { result: 'error' })).toBe(1);
    expect(metricValue(metrics, 'dnswarden_rpz_hits_total', { zone: 'b', action: 'nodata' })).toBe(1);
  });

  it('a broken policy zone file fails the start naming policy.rpz[i].file and file:line', async () => {
    const file = join(dir, 'broken.rpz');
    writeFileSync(file, '$TTL 60\n@ SOA localhost. hm.localhost. 1 3600 600 604800 300\nx.example BOGUS .\n');
    await expect(startWarden({ policy: { rpz: [THREAT, { name: 'broken', file }] } }, { upstream })).rejects.toThrow(/policy\.rpz\[1\]\.file: .*broken\.rpz:3: unknown record type/);
  });
});

describe('the DoH canary', () => {
  it('use-application-dns.net is NXDOMAIN while deny_public_resolvers is on, forwarded when off', async () => {
    const on = await startWarden({}, { upstream });
    onTestFinished(() => on.close());
    const r = await dig({ server: on.dns, name: 'use-application-dns.net', type: 'A' });
    expect(r.status).toBe('NXDOMAIN');
    expect(r.ede?.code).toBe(17);
    const off = await startWarden({ policy: { deny_public_resolvers: false } }, { upstream });
    onTestFinished(() => off.close());
    const before = await upstream.queryCount();
    const fwd = await query({ server: off.dns, name: 'use-application-dns.net', type: 'A' });
    expect(fwd.ede?.code).not.toBe(17);
    expect(await upstream.queryCount()).toBeGreaterThan(before);
  });
});
