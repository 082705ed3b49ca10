// Issue 4, the built CLI as an analyst and a policy owner run it:
// - failures are one line on stderr and a distinct exit status (64 usage, 66 not found, 69 unreachable,
//   77 auth, 1 anything else): server down, bad or missing token, unknown id, a missing --reason; stdout
//   stays empty; under --json the failure is a JSON object;
// - --version, --help for every command and sub-command, qtype and rcode names in tables,
//   --since/--until on quarantine list, invalid numbers and times refused before anything is sent;
// - `dnswarden replay FILE` on a small labelled JSONL fixture (fixtures/replay/small.jsonl: one benign
//   interactive session of 6 ordinary names, one batch session sending 4 base32 63-character labels)
//   exits 0 and prints the counts; a candidate config changes them.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, closedPort } from '../helpers/upstream.js';
import { query } from '../helpers/dns-client.js';
import { useSharedWarden } from '../helpers/shared-warden.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/src/cli.js');
const REPLAY_FIXTURE = join(ROOT, 'fixtures/replay/small.jsonl');

let cwd: string;
const t = useSharedWarden();

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built CLI with a clean environment (no DNSWARDEN_TOKEN/URL) in a dir without data/admin-token. */
function cli(args: string[]): Promise<Run> {
  return new Promise((ok) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, timeout: 30_000 }, (err, stdout, stderr) => {
      ok({ code: err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1, stdout, stderr });
    });
  });
}

/** One line on stderr, nothing on stdout, the exit status `code` (1 unless said). */
function expectOneLineFailure(r: Run, line: RegExp, code = 1): void {
  expect(r.stdout).toBe('');
  expect(r.stderr.endsWith('\n') && !r.stderr.slice(0, -1).includes('\n'), `stderr: ${JSON.stringify(r.stderr)}`).toBe(true);
  expect(r.stderr.trimEnd()).toMatch(line);
  expect(r.code).toBe(code);
}

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'dnswarden-cli-'));
});

afterAll(async () => {
  if (cwd !== undefined) rmSync(cwd, { recursive: true, force: true });
});

describe('CLI failures are one line and a non-zero exit', () => {
  it('server down', async () => {
    const port = await closedPort();
    const r = await cli(['quarantine', 'list', '--url', `http://127.0.0.1:${port}`, '--token', 'x'.repeat(20)]);
    expectOneLineFailure(r, new RegExp(`^dnswarden: cannot reach dnswarden at http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`), 69);
  });

  it('bad token', async () => {
    const r = await cli(['quarantine', 'list', '--url', t.warden.adminUrl, '--token', `${t.warden.adminToken}-bad`]);
    expectOneLineFailure(r, /^dnswarden: 401 ERR_UNAUTHORIZED missing or unknown bearer token/, 77);
    expect(r.stderr).not.toContain('DNSWARDEN_TOKEN'); // a token was given: the hint would mislead
  });

  it('no token at all (no --token, no $DNSWARDEN_TOKEN, no data/admin-token)', async () => {
    const r = await cli(['sessions', 'list', '--url', t.warden.adminUrl]);
    expectOneLineFailure(r, /^dnswarden: 401 ERR_UNAUTHORIZED .*; no token was found: pass --token, set DNSWARDEN_TOKEN, or run where data\/admin-token is$/, 77);
  });

  it('unknown quarantine id: show, release and confirm', async () => {
    const common = ['--url', t.warden.adminUrl, '--token', t.warden.adminToken];
    expectOneLineFailure(await cli(['quarantine', 'show', 'qr-does-not-exist', ...common]), /^dnswarden: 404 ERR_NOT_FOUND no quarantine with id "qr-does-not-exist"$/, 66);
    expectOneLineFailure(await cli(['quarantine', 'release', 'qr-does-not-exist', '--reason', 'r', ...common]), /^dnswarden: 404 ERR_NOT_FOUND no quarantine with id "qr-does-not-exist"$/, 66);
    expectOneLineFailure(await cli(['quarantine', 'confirm', 'qr-does-not-exist', '--reason', 'r', '--deny', ...common]), /^dnswarden: 404 ERR_NOT_FOUND no quarantine with id "qr-does-not-exist"$/, 66);
  });

  it('unknown session id', async () => {
    const r = await cli(['sessions', 'show', 'no-such-session', '--url', t.warden.adminUrl, '--token', t.warden.adminToken]);
    expectOneLineFailure(r, /^dnswarden: 404 ERR_NOT_FOUND no session with id "no-such-session"$/, 66);
  });

  it('a decision without --reason is refused before anything is sent', async () => {
    const r = await cli(['quarantine', 'release', 'qr-x', '--url', t.warden.adminUrl, '--token', t.warden.adminToken]);
    expectOneLineFailure(r, /^dnswarden: quarantine release: --reason is required$/, 64);
  });

  it('usage mistakes are refused before anything is sent (64): invalid numbers and times, unknown options, a missing sub-command', async () => {
    const common = ['--url', t.warden.adminUrl, '--token', t.warden.adminToken];
    expectOneLineFailure(await cli(['sessions', 'queries', 'test-local', '--limit', 'abc', ...common]), /^dnswarden: --limit: expected a whole number from 1 on, got "abc"$/, 64);
    expectOneLineFailure(await cli(['audit', '--limit', '-5', ...common]), /^dnswarden: /, 64);
    expectOneLineFailure(await cli(['audit', '--limit', '1.5', ...common]), /^dnswarden: --limit: expected a whole number from 1 on, got "1\.5"$/, 64);
    expectOneLineFailure(await cli(['quarantine', 'list', '--since', 'yesterday', ...common]), /^dnswarden: --since: expected an ISO 8601 time, epoch ms or an age such as 30m, 24h, 7d; got "yesterday"$/, 64);
    expectOneLineFailure(await cli(['quarantine', 'list', '--until', '12x', ...common]), /^dnswarden: --until: /, 64);
    expectOneLineFailure(await cli(['quarantine', 'list', '--frob', ...common]), /^dnswarden: Unknown option '--frob'/, 64);
    expectOneLineFailure(await cli(['quarantine', ...common]), /^dnswarden: quarantine: a sub-command is required; see dnswarden quarantine --help$/, 64);
    expectOneLineFailure(await cli(['quarantine', 'bless', 'qr-1', ...common]), /^dnswarden: unknown command "quarantine bless"; see dnswarden quarantine --help$/, 64);
    // A state the server refuses (400) is a usage mistake too.
    expectOneLineFailure(await cli(['quarantine', 'list', '--state', 'pending', ...common]), /^dnswarden: 400 ERR_BAD_REQUEST state must be open, released or confirmed$/, 64);
  });

  it('--json: a failure is one JSON object on stderr with its code and exit status; stdout stays empty', async () => {
    const port = await closedPort();
    const down = await cli(['sessions', 'list', '--json', '--url', `http://127.0.0.1:${port}`, '--token', 'x'.repeat(20)]);
    expect(down.stdout).toBe('');
    expect(down.code).toBe(69);
    expect(JSON.parse(down.stderr)).toEqual({ error: { code: 'ERR_UNREACHABLE', message: expect.stringMatching(/^cannot reach dnswarden at .*ECONNREFUSED/), exit: 69 } });
    const missing = await cli(['quarantine', 'show', 'qr-nope', '--json', '--url', t.warden.adminUrl, '--token', t.warden.adminToken]);
    expect(missing.code).toBe(66);
    expect(JSON.parse(missing.stderr)).toEqual({ error: { code: 'ERR_NOT_FOUND', message: '404 ERR_NOT_FOUND no quarantine with id "qr-nope"', exit: 66, status: 404 } });
    const usage = await cli(['audit', '--limit', 'x', '--json']);
    expect(usage.code).toBe(64);
    expect(JSON.parse(usage.stderr)).toMatchObject({ error: { code: 'ERR_USAGE', exit: 64 } });
  });

  it('the failures left no trace in the audit log', async () => {
    const res = await t.warden.admin('/v1/audit');
    expect((res.json as { audit: unknown[] }).audit).toEqual([]);
  });
});

describe('version and help', () => {
  it('--version prints the package version', async () => {
    const r = await cli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^dnswarden \d+\.\d+\.\d+\n$/);
  });

  it('--help works for every command and sub-command (exit 0, usage on stdout, nothing sent)', async () => {
    const cases: [string[], RegExp][] = [
      [['serve', '--help'], /^usage: dnswarden serve \[--config FILE\]/],
      [['check-config', '--help'], /^usage: dnswarden check-config FILE/],
      [['replay', '-h'], /^usage: dnswarden replay FILE\|- /],
      [['quarantine', '--help'], /dnswarden quarantine list .*\n(?:.*\n)*\s+dnswarden quarantine show ID\n(?:.*\n)*\s+dnswarden quarantine confirm ID/],
      [['quarantine', 'list', '--help'], /^usage:\n\s+dnswarden quarantine list \[--state open\|released\|confirmed\].*--since TIME/],
      [['quarantine', 'confirm', '--help'], /^usage:\n\s+dnswarden quarantine confirm ID --reason TEXT/],
      [['sessions', '--help'], /dnswarden sessions list \| show ID \| queries ID/],
      [['sessions', 'queries', 'x', '--help'], /dnswarden sessions list \| show ID \| queries ID \[--limit N\]/],
      [['deny', 'add', '--help'], /dnswarden deny list \| add DOMAIN --reason TEXT/],
      [['audit', '--help'], /dnswarden audit \[--limit N\]/],
      [['--help'], /^usage: dnswarden <command>(?:.*\n)*.*exit status: 0 ok, 1 failure, 2 invalid config, 64 usage, 66 not found, 69 server unreachable, 77 auth/],
    ];
    for (const [args, usage] of cases) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stderr, args.join(' ')).toBe('');
      expect(r.stdout, args.join(' ')).toMatch(usage);
    }
    for (const group of ['quarantine', 'sessions', 'deny', 'audit']) expect((await cli([group, '--help'])).stdout).toContain('common options: --url URL');
  });
});

describe('tables and filters', () => {
  it('sessions queries: qtype and rcode by name', async () => {
    const dns = t.warden.dns;
    expect((await query({ server: dns, name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR');
    expect((await query({ server: dns, name: FIXTURE.txt.name, type: 'TXT' })).rcode).toBe('NOERROR');
    expect((await query({ server: dns, name: `missing.${FIXTURE.zone}`, type: 'AAAA' })).rcode).toBe('NXDOMAIN');
    const r = await cli(['sessions', 'queries', 'test-local', '--url', t.warden.adminUrl, '--token', t.warden.adminToken]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ {2}A {6}NOERROR .* www\.dnswarden\.test\n/);
    expect(r.stdout).toMatch(/ {2}TXT {4}NOERROR .* txt\.dnswarden\.test\n/);
    expect(r.stdout).toMatch(/ {2}AAAA {3}NXDOMAIN .* missing\.dnswarden\.test\n/);
  });

  it('quarantine list --since/--until select by the time the quarantine was raised', async () => {
    const dns = t.warden.dns;
    const exfil = ['mzxw6ytboi3tqnbrgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmr', 'kfvgs4tfmvxgk3tufzqxg43pn5xw4zlsmfwgs3temvzhs5dfnzsxg2lpnzsxa7q', 'nbswy3dpeb3w64tmmqqgc3tzebxwk5dimvzca3lfonzwcz3ffzsxi2lhnfyxg4q', 'orsxg5bamrqxiyjamfxgiidnn5zgkideorqxiyjannqw4zlsnrxxezlnebzwk4q'];
    for (let i = 0; i < exfil.length; i++) {
      const reply = await query({ server: dns, name: `${exfil[i]}.x${i}.exfil.${FIXTURE.zone}`, type: 'TXT' });
      if (reply.ede?.text.startsWith('session quarantined') === true) break;
    }
    const common = ['--url', t.warden.adminUrl, '--token', t.warden.adminToken, '--json'];
    const list = async (...args: string[]): Promise<unknown[]> => {
      const r = await cli(['quarantine', 'list', ...args, ...common]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { quarantines: unknown[] }).quarantines;
    };
    expect(await list()).toHaveLength(1);
    expect(await list('--since', '1h')).toHaveLength(1);
    expect(await list('--until', '1h')).toHaveLength(0); // raised less than an hour ago
    expect(await list('--since', '2000-01-01T00:00:00Z', '--until', new Date(Date.now() + 3_600_000).toISOString())).toHaveLength(1);
    expect(await list('--since', String(Date.now() + 3_600_000))).toHaveLength(0);
    // The trigger's query type by name in the table.
    const [q] = (await list()) as { id: string }[];
    const show = await cli(['quarantine', 'show', q!.id, '--url', t.warden.adminUrl, '--token', t.warden.adminToken]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/\ntrigger {4}\S+\.exfil\.dnswarden\.test \(TXT\) {2}rule /);
  });
});

describe('dnswarden replay', () => {
  it('prints the counts for the fixture log under the embedded default policy (exit 0)', async () => {
    const r = await cli(['replay', REPLAY_FIXTURE]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('10 queries, 2 sessions; modes: interactive enforce, batch enforce, scheduled enforce (replay simulates enforcement)');
    const verdictsAt = lines.indexOf('verdicts (action/rule):');
    const verdicts = Object.fromEntries(lines.slice(verdictsAt + 1, lines.indexOf('', verdictsAt)).map((l) => {
      const [key, n] = l.trim().split(/\s+/);
      return [key, Number(n)];
    }));
    // benign: 6 answered; exfil: blocked by the threshold, quarantined on the second block (batch:
    // quarantine_after_blocks 2), then the remaining 2 refused as the session is quarantined.
    expect(verdicts).toEqual({ 'answer/none': 6, 'nxdomain/threshold': 1, 'quarantine/threshold': 1, 'nxdomain/quarantined': 2 });
    expect(r.stdout).toContain('benign: 1 sessions, 6 queries\n  queries blocked           0 (0%): 0 by a rule or list, 0 while quarantined\n');
    // The blocked figures add up: the two refused after the quarantine count too.
    expect(r.stdout).toContain('exfil: 1 sessions, 4 queries\n  queries blocked           4 (100.000%): 2 by a rule or list, 2 while quarantined\n');
    expect(r.stdout).toContain('\nblocked 4 queries: 2 by a rule or list, 2 while the session was quarantined\n');
    expect(r.stdout).toMatch(/\n {2}sessions quarantined {6}0 \(0%\)\n {2}highest budget accounts {3}one domain \d+ B, .*repeats \d+ B\n\nexfil: 1 sessions, 4 queries\n/);
    expect(r.stdout).toMatch(/exfil: 1 sessions, 4 queries\n(?:.*\n){3} {2}sessions quarantined {6}1 \(100\.000%\)\n {2}highest budget accounts /);
    expect(r.stdout).toMatch(/^ {2}base32-l63 +1\/1 \| /m);
  });

  it('--json: the same figures as data', async () => {
    const r = await cli(['replay', REPLAY_FIXTURE, '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as {
      queries: number; sessions: number; verdicts: Record<string, number>;
      benign: { queries: number; blockedQueries: number; sessionsQuarantined: number };
      exfil: { queries: number; sessionsWithBlock: number; sessionsQuarantined: number };
      perSession: { session: string; type: string; firstBlockAt?: number; quarantineAt?: number }[];
    };
    expect(report).toMatchObject({ queries: 10, sessions: 2 });
    expect(report.benign).toMatchObject({ queries: 6, blockedQueries: 0, sessionsQuarantined: 0 });
    expect(report.exfil).toMatchObject({ queries: 4, sessionsWithBlock: 1, sessionsQuarantined: 1 });
    const exfil = report.perSession.find((s) => s.session === 'exfil-1');
    expect(exfil).toMatchObject({ type: 'batch', firstBlockAt: 1, quarantineAt: 2 });
    expect(report.perSession.find((s) => s.session === 'dev-1')?.firstBlockAt).toBeUndefined();
  });

  it('under a candidate config (batch block_at 0.99) the counts change: nothing blocked', async () => {
    const candidate = join(cwd, 'candidate.yaml');
    writeFileSync(candidate, stringify({ policy: { session_types: { batch: { block_at: 0.99 } } } }));
    const r = await cli(['replay', REPLAY_FIXTURE, '--config', candidate, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as { verdicts: Record<string, number>; exfil: { sessionsQuarantined: number } };
    expect(report.verdicts).toEqual({ 'answer/none': 10 });
    expect(report.exfil.sessionsQuarantined).toBe(0);
  });

  it('a malformed line: one line naming the line number, non-zero exit', async () => {
    const bad = join(cwd, 'bad.jsonl');
    writeFileSync(bad, '{"ts":1,"session":"s","qname":"example.com","qtype":1}\n{"ts":2,"session":"s","qtype":1}\n');
    expectOneLineFailure(await cli(['replay', bad]), /^dnswarden: line 2: qname: /);
  });

  it('a missing file: one line, non-zero exit', async () => {
    const r = await cli(['replay', join(cwd, 'missing.jsonl')]);
    expectOneLineFailure(r, /^dnswarden: .*ENOENT.*missing\.jsonl/, 66);
  });
});
