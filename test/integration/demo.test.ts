// Issue 4, item 8: `npm run demo` (node dist/examples/demo.js after the build) ends by itself, within a
// time bound, and its output shows the benign answers, the block with its EDE text, the quarantine
// with its evidence and where to look next; it leaves no temp store behind. Stdout is a pipe here, so
// the output must carry no colour codes.
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const DEMO = join(ROOT, 'dist/examples/demo.js');
const TIME_BOUND_MS = 30_000;

const demoDirs = (): string[] => readdirSync(tmpdir()).filter((d) => d.startsWith('dnswarden-demo-'));

let run: { code: number | null; signal: string | null; stdout: string; stderr: string; ms: number };
let leftBehind: string[];

beforeAll(async () => {
  const before = new Set(demoDirs());
  const started = Date.now();
  run = await new Promise((ok) => {
    execFile(process.execPath, [DEMO], { cwd: ROOT, timeout: TIME_BOUND_MS, killSignal: 'SIGKILL', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' } }, (err, stdout, stderr) => {
      const e = err as { code?: unknown; signal?: string | null } | null;
      ok({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : null, signal: e?.signal ?? null, stdout, stderr, ms: Date.now() - started });
    });
  });
  leftBehind = demoDirs().filter((d) => !before.has(d));
}, TIME_BOUND_MS + 5000);

describe('npm run demo', () => {
  it('ends by itself within the time bound, exit 0, nothing on stderr', () => {
    expect(run.signal, run.stdout).toBeNull();
    expect(run.stderr).toBe('');
    expect(run.code, run.stdout).toBe(0);
    expect(run.ms).toBeLessThan(TIME_BOUND_MS);
  });

  it('shows the benign session answered', () => {
    expect(run.stdout).toMatch(/^ {2}A {4}www\.demo\.test +NOERROR +192\.0\.2\.10$/m);
    expect(run.stdout).toMatch(/^ {2}TXT {2}_config\.demo\.test +NOERROR +"feature_flags=on; region=eu-1"$/m);
  });

  it('shows the exfiltration blocked with its EDE text (rule, score, signals, event id)', () => {
    expect(run.stdout).toMatch(/^ {2}TXT {2}[a-z2-7]{12}…\(63\)\.attacker\.test +NXDOMAIN +EDE 15 \(Blocked\): threshold: score \d\.\d\d: .*name_length.* \([0-9a-f]{8}-[0-9a-z]+\)$/m);
  });

  it('shows the quarantine: in the EDE, for every later query of that session, and with its evidence from the admin API', () => {
    const m = /EDE 15 \(Blocked\): session quarantined \((qr-[0-9a-f]{8}-[0-9a-z]+)\): /.exec(run.stdout);
    expect(m).not.toBeNull();
    const id = m![1]!;
    expect(run.stdout).toContain(`A    www.demo.test                            NXDOMAIN  EDE 15 (Blocked): session quarantined (${id})`);
    expect(run.stdout).toContain(`3. The quarantine with its evidence, as an analyst sees it (GET /v1/quarantines/${id})`);
    expect(run.stdout).toMatch(new RegExp(`^ {2}id {9}${id}$`, 'm'));
    expect(run.stdout).toMatch(/^ {2}state {6}open$/m);
    expect(run.stdout).toMatch(/^ {2}session {4}nightly-etl {2}user etl-bot {2}role data-pipeline {2}type batch {2}127\.0\.0\.2\/32$/m);
    expect(run.stdout).toMatch(/^ {2}domains {4}attacker\.test$/m);
    for (const signal of ['label_entropy', 'char_class', 'name_length', 'qtype']) expect(run.stdout).toMatch(new RegExp(`^ {4}${signal} +\\d\\.\\d\\d +\\d\\.\\d\\d +\\S`, 'm'));
    expect(run.stdout).toMatch(/^ {4}\d\d:\d\d:\d\d\.\d{3} nxdomain +threshold +\d\.\d\d +[a-z2-7]{12}…\(63\)\.attacker\.test$/m);
  });

  it('other sessions carry on, and nothing reached the attacker\'s nameserver', () => {
    expect(run.stdout).toMatch(/^ {2}A {4}www\.demo\.test +NOERROR +192\.0\.2\.10 {3}← from "local": other sessions carry on$/m);
    expect(run.stdout).toContain("the attacker's nameserver received 0 of these queries");
  });

  it('shows the metrics that counted it and where to look next', () => {
    expect(run.stdout).toMatch(/^ {2}dnswarden_quarantines_raised_total\{session_type="batch"\} 1$/m);
    expect(run.stdout).toMatch(/^ {2}dnswarden_sessions_quarantined 1$/m);
    expect(run.stdout).toContain('node dist/src/cli.js quarantine show <id>');
    expect(run.stdout).toContain('http://127.0.0.1:9153/metrics');
  });

  it('prints no colour codes when stdout is not a terminal, and removes its temp store', () => {
    expect(run.stdout).not.toContain('\x1b[');
    expect(leftBehind).toEqual([]);
  });
});
