// Issue 4, the built CLI as an analyst and a policy owner run it:
// - failures are one line on stderr and a non-zero exit: server down, bad or missing token, unknown id,
//   a missing --reason; stdout stays empty;
// - `dnswarden replay FILE` on a small labelled JSONL fixture (fixtures/replay/small.jsonl: one benign
//   interactive session of 6 ordinary names, one batch session sending 4 base32 63-character labels)
//   exits 0 and prints the counts; a candidate config changes them.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closedPort } from '../helpers/upstream.js';
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

/** One line on stderr, nothing on stdout, exit 1. */
function expectOneLineFailure(r: Run, line: RegExp): void {
  expect(r.stdout).toBe('');
  expect(r.stderr.endsWith('\n') && !r.stderr.slice(0, -1).includes('\n'), `stderr: ${JSON.stringify(r.stderr)}`).toBe(true);
  expect(r.stderr.trimEnd()).toMatch(line);
  expect(r.code).toBe(1);
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
    expectOneLineFailure(r, new RegExp(`^dnswarden: cannot reach dnswarden at http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
  });

  it('bad token', async () => {
    const r = await cli(['quarantine', 'list', '--url', t.warden.adminUrl, '--token', `${t.warden.adminToken}-bad`]);
    expectOneLineFailure(r, /^dnswarden: 401 ERR_UNAUTHORIZED missing or unknown bearer token/);
  });

  it('no token at all (no --token, no $DNSWARDEN_TOKEN, no data/admin-token)', async () => {
    const r = await cli(['sessions', 'list', '--url', t.warden.adminUrl]);
    expectOneLineFailure(r, /^dnswarden: 401 ERR_UNAUTHORIZED /);
  });

  it('unknown quarantine id: show, release and confirm', async () => {
    const common = ['--url', t.warden.adminUrl, '--token', t.warden.adminToken];
    expectOneLineFailure(await cli(['quarantine', 'show', 'qr-does-not-exist', ...common]), /^dnswarden: 404 ERR_NOT_FOUND no quarantine with id "qr-does-not-exist"$/);
    expectOneLineFailure(await cli(['quarantine', 'release', 'qr-does-not-exist', '--reason', 'r', ...common]), /^dnswarden: 404 ERR_NOT_FOUND no quarantine with id "qr-does-not-exist"$/);
    expectOneLineFailure(await cli(['quarantine', 'confirm', 'qr-does-not-exist', '--reason', 'r', '--deny', ...common]), /^dnswarden: 404 ERR_NOT_FOUND no quarantine with id "qr-does-not-exist"$/);
  });

  it('unknown session id', async () => {
    const r = await cli(['sessions', 'show', 'no-such-session', '--url', t.warden.adminUrl, '--token', t.warden.adminToken]);
    expectOneLineFailure(r, /^dnswarden: 404 ERR_NOT_FOUND no session with id "no-such-session"$/);
  });

  it('a decision without --reason is refused before anything is sent', async () => {
    const r = await cli(['quarantine', 'release', 'qr-x', '--url', t.warden.adminUrl, '--token', t.warden.adminToken]);
    expectOneLineFailure(r, /^dnswarden: quarantine release: --reason is required$/);
  });

  it('the failures left no trace in the audit log', async () => {
    const res = await t.warden.admin('/v1/audit');
    expect((res.json as { audit: unknown[] }).audit).toEqual([]);
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
    expect(r.stdout).toMatch(/\n {2}sessions quarantined {6}0 \(0%\)\n\nexfil: 1 sessions, 4 queries\n/);
    expect(r.stdout).toMatch(/exfil: 1 sessions, 4 queries\n(?:.*\n){3} {2}sessions quarantined {6}1 \(100\.000%\)\n/);
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
    expectOneLineFailure(r, /^dnswarden: .*ENOENT.*missing\.jsonl/);
  });
});
