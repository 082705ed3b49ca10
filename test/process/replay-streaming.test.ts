// The operability issue, item 6: `dnswarden replay` streams its input line by line, so a large log replays in
// bounded memory (the whole file read into one string took 1.6 GB for 1M lines), and it reads dnswarden's own
// log as a server writes it: npm's banner, the `ready` line and the other lifecycle lines are skipped and
// counted, the verdict lines replayed. The built CLI, a real `serve` started by a real `npm start`, a real NSD.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, exited } from '../helpers/serve-process.js';
import { query } from '../helpers/dns-client.js';
import { FIXTURE, freePort, startUpstream, type Upstream } from '../helpers/upstream.js';

let dir: string;
let upstream: Upstream | undefined;
let server: ChildProcess | undefined;

interface Run { readonly code: number; readonly stdout: string; readonly stderr: string }
function run(file: string, args: string[], opts: { input?: string } = {}): Promise<Run> {
  return new Promise((ok) => {
    const child = execFile(file, args, { timeout: 240_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      ok({ code: err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** `dnswarden replay FILE --json` under /usr/bin/time -v: the report and the child's peak RSS in MB. */
async function replayMeasured(file: string): Promise<{ report: { queries: number; sessions: number; blocked: { queries: number } }; rssMb: number }> {
  const r = await run('/usr/bin/time', ['-v', process.execPath, CLI, 'replay', file, '--json']);
  expect(r.code, r.stderr).toBe(0);
  const kb = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  expect(kb, r.stderr).not.toBeNull();
  return { report: JSON.parse(r.stdout) as { queries: number; sessions: number; blocked: { queries: number } }, rssMb: Number(kb![1]) / 1024 };
}

/** `lines` verdict-log lines from 4 interactive sessions resolving 1,200 ordinary names (~330 bytes a line). */
async function writeLog(path: string, lines: number): Promise<void> {
  const out = createWriteStream(path);
  for (let i = 0; i < lines; i++) {
    const line = JSON.stringify({
      level: 20, time: '2026-11-25T08:00:00.000Z', service: 'dnswarden', event: 'verdict', eventId: `e-${i}`, session: `agent-${i % 4}`,
      user: 'u', role: 'r', session_type: 'interactive', name: `${['www', 'api', 'cdn', 'img'][i % 4]}.site${(i * 7919) % 300}.com`, qtype: 'A',
      action: 'answer', rule: 'none', enforced: true, mode: 'enforce', reason: '', ts: 1795600000000 + i * 10, msg: 'query answer',
    });
    if (!out.write(`${line}\n`)) await new Promise<void>((ok) => out.once('drain', () => ok()));
  }
  await new Promise<void>((ok, fail) => out.end((err?: Error | null) => (err ? fail(err) : ok())));
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-replay-stream-'));
});

afterAll(async () => {
  if (server !== undefined && server.exitCode === null) {
    server.kill('SIGKILL');
    await exited(server, 10_000).catch(() => undefined);
  }
  await upstream?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('replay streams a large file in bounded memory', () => {
  it('300,000 lines (~100 MB) peak no higher than 100,000 lines, give or take 64 MB, and under 300 MB; progress on a terminal', async () => {
    const small = join(dir, 'small.jsonl');
    const large = join(dir, 'large.jsonl');
    await writeLog(small, 100_000);
    await writeLog(large, 300_000);
    const s = await replayMeasured(small);
    const l = await replayMeasured(large);
    process.stdout.write(`replay peak RSS: 100,000 lines ${s.rssMb.toFixed(0)} MB, 300,000 lines ${l.rssMb.toFixed(0)} MB\n`);
    expect(s.report).toMatchObject({ queries: 100_000, sessions: 4 });
    expect(l.report).toMatchObject({ queries: 300_000, sessions: 4 });
    // Reading the whole file first peaked at ~560 MB for the large file.
    expect(l.rssMb).toBeLessThan(s.rssMb + 64);
    expect(l.rssMb).toBeLessThan(300);

    // On a terminal, a progress line on stderr every 2 s (`script` gives the CLI a pseudo-terminal).
    const out = join(dir, 'report.txt');
    const tty = await run('/usr/bin/script', ['-qec', `"${process.execPath}" "${CLI}" replay "${large}" > "${out}"`, '/dev/null']);
    expect(tty.code, tty.stdout).toBe(0);
    expect(tty.stdout).toMatch(/\rreplay: \d+ lines read \(\d+ of \d+ MiB\), \d+ queries, 0 skipped…/);
    expect(readFileSync(out, 'utf8')).toMatch(/^300000 queries, 4 sessions;/);
  }, 300_000);

  it('reads stdin with `-`', async () => {
    const lines = [0, 1, 2].map((i) => JSON.stringify({ ts: i, session: 's', qname: `www.site${i}.com`, qtype: 1 })).join('\n');
    const r = await run(process.execPath, [CLI, 'replay', '-', '--json'], { input: `${lines}\n` });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe(''); // no progress line when stderr is not a terminal
    expect(JSON.parse(r.stdout)).toMatchObject({ queries: 3, sessions: 1, skippedLines: 0 });
  });

  it('--session-type gives the sessions whose lines do not say their type; a type that is not one is a usage error', async () => {
    const lines = [JSON.stringify({ ts: 0, session: 's', qname: 'www.site0.com', qtype: 1 }), JSON.stringify({ ts: 1, session: 't', session_type: 'scheduled', qname: 'www.site1.com', qtype: 1 })].join('\n');
    const r = await run(process.execPath, [CLI, 'replay', '-', '--json', '--session-type', 'batch'], { input: `${lines}\n` });
    expect(r.code, r.stderr).toBe(0);
    const types = (JSON.parse(r.stdout) as { perSession: { session: string; type: string }[] }).perSession.map((p) => [p.session, p.type]);
    expect(types).toEqual([['s', 'batch'], ['t', 'scheduled']]);
    const bad = await run(process.execPath, [CLI, 'replay', '-', '--session-type', 'cron'], { input: `${lines}\n` });
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain('--session-type: "cron" is not one of interactive, batch, scheduled');
  });
});

describe('replay reads a real server\'s log', () => {
  it('the log of `npm start` (banner, ready line, verdicts, shutdown) replays: verdicts counted, the rest skipped', async () => {
    upstream = await startUpstream();
    const dnsPort = await freePort();
    const adminPort = await freePort();
    const configPath = join(dir, 'dnswarden.yaml');
    writeFileSync(configPath, stringify({
      listen: { dns: [`127.0.0.1:${dnsPort}`], admin: `127.0.0.1:${adminPort}` },
      admin: { token: 'replay-stream-test-admin-token-0123456789' },
      storage: { dir: join(dir, 'data') },
      upstreams: [{ address: upstream.hostPort }],
      sessions: { static: [{ id: 'nightly-report', addresses: ['127.0.0.1/32'], type: 'scheduled', user: 'ops', role: 'reporter' }] },
      logging: { level: 'info' },
    }));
    // An operator's package.json whose start script runs dnswarden: npm prints its banner into the log.
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'warden-ops', version: '1.0.0', private: true, scripts: { start: `"${process.execPath}" "${CLI}" serve --config "${configPath}"` } }));
    const logPath = join(dir, 'server.log');
    const log = createWriteStream(logPath);
    server = spawn('npm', ['start'], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
    server.stdout!.pipe(log);
    const deadline = Date.now() + 30_000;
    const logText = (): string => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');
    while (!logText().includes('"dnswarden ready"')) {
      if (Date.now() > deadline) throw new Error(`serve did not become ready:\n${logText()}`);
      await new Promise((ok) => setTimeout(ok, 100));
    }
    const dns = { address: '127.0.0.1', port: dnsPort };
    expect((await query({ server: dns, name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR'); // an answer: not logged at info
    const exfil = ['mzxw6ytboi3tqnbrgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmr.a.exfil.dnswarden.test', 'kfvgs4tfmvxgk3tufzqxg43pn5xw4zlsmfwgs3temvzhs5dfnzsxg2lpnzsxa7q.b.exfil.dnswarden.test'];
    // The second in a private type (65399, as tunnels use): logged as TYPE65399, which replay reads back.
    expect((await query({ server: dns, name: exfil[0]!, type: 'TXT' })).rcode).toBe('NXDOMAIN');
    expect((await query({ server: dns, name: exfil[1]!, type: 65399 })).rcode).toBe('NXDOMAIN');
    expect((await query({ server: dns, name: FIXTURE.a.name, type: 'A' })).ede?.text).toMatch(/^session quarantined/);
    process.kill(-server.pid!, 'SIGTERM'); // npm and its child, as Ctrl-C would
    await exited(server, 20_000);
    await new Promise<void>((ok) => (log.writableFinished ? ok() : log.once('finish', () => ok())));

    const text = readFileSync(logPath, 'utf8');
    expect(text).toMatch(/^\n?> warden-ops@1\.0\.0 start/); // npm's banner really is in the log
    const verdictLines = text.split('\n').filter((l) => l.includes('"event":"verdict"')).length;
    const otherLines = text.split('\n').filter((l) => l.trim() !== '' && !l.includes('"event":"verdict"')).length;
    expect(verdictLines).toBe(3);
    expect(text).toContain('"qtype":"TYPE65399"');
    const r = await run(process.execPath, [CLI, 'replay', logPath]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('3 queries, 1 sessions;');
    expect(r.stdout).toContain(`skipped ${otherLines} lines that are neither queries nor verdicts (the first: line `);
    // Under the same (default) policy nothing changes, and the three blocks add up: two by the threshold rule
    // (the second quarantines), one because the session was quarantined.
    expect(r.stdout).toContain('against the logged verdicts (3 lines): newly blocked 0, newly allowed 0');
    expect(r.stdout).toContain('blocked 3 queries: 2 by a rule or list, 1 while the session was quarantined\n');
  }, 120_000);
});
