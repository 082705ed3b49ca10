// Issue 17 with the built CLI as a user runs it (`dnswarden serve --config FILE`): the console is served from the
// built package (dist/console) under its CSP; queries answered just before a SIGTERM are in the query log after a
// restart (the writer thread finishes the last batch before the process exits), and `dnswarden queries search`
// finds them. Needs `npm run build` first.
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, freePort, startUpstream, type Upstream } from '../helpers/upstream.js';
import { CLI, exited, spawnServe } from '../helpers/serve-process.js';
import { query } from '../helpers/dns-client.js';

const TOKEN = 'process-querylog-admin-token-0123456789';
let upstream: Upstream;
let dir: string;
let configPath: string;
let dnsPort: number;
let adminPort: number;
let child: ChildProcess | undefined;
let output = '';

async function waitAdmin(timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child !== undefined && child.exitCode !== null) throw new Error(`serve exited with ${child.exitCode}:\n${output}`);
    try {
      if ((await fetch(`http://127.0.0.1:${adminPort}/healthz`, { signal: AbortSignal.timeout(500) })).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
  throw new Error(`admin listener not up within ${timeoutMs} ms:\n${output}`);
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((ok) => {
    execFile(process.execPath, [CLI, ...args, '--url', `http://127.0.0.1:${adminPort}`, '--token', TOKEN], { timeout: 20_000 }, (err, stdout, stderr) => {
      ok({ code: err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-qlog-process-'));
  configPath = join(dir, 'dnswarden.yaml');
  dnsPort = await freePort();
  adminPort = await freePort();
  writeFileSync(configPath, stringify({
    listen: { dns: [`127.0.0.1:${dnsPort}`], admin: `127.0.0.1:${adminPort}` },
    admin: { token: TOKEN },
    storage: { dir: join(dir, 'data') },
    upstreams: [{ address: upstream.hostPort, timeout_ms: 1000 }],
    sessions: { static: [{ id: 'proc-qlog', addresses: ['127.0.0.1/32'], type: 'batch', user: 'proc-user', role: 'tester' }] },
    logging: { level: 'warn' },
  }));
});

afterAll(async () => {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited(child, 5000).catch(() => undefined);
  }
  await upstream?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('dnswarden serve: the console and the query log', () => {
  it('serves the built console under /ui/ with its CSP', async () => {
    child = spawnServe(configPath, dir, (t) => void (output += t));
    await waitAdmin();
    const shell = await fetch(`http://127.0.0.1:${adminPort}/ui/quarantines/qr-x`);
    expect(shell.status).toBe(200);
    expect(shell.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(await shell.text()).toContain('/ui/assets/app.js');
    const js = await fetch(`http://127.0.0.1:${adminPort}/ui/assets/app.js`);
    expect(js.status).toBe(200);
    expect((await js.text()).length).toBeGreaterThan(10_000);
  });

  it('keeps queries answered just before a SIGTERM, found after a restart by `queries search`', async () => {
    for (let i = 0; i < 20; i++) expect((await query({ server: { address: '127.0.0.1', port: dnsPort }, name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR');
    expect((await query({ server: { address: '127.0.0.1', port: dnsPort }, name: FIXTURE.a.name, type: 'AAAA' })).rcode).not.toBe('REFUSED');
    child!.kill('SIGTERM'); // at once: the rows are still in the buffer (written once a second)
    expect((await exited(child!, 15_000)).code).toBe(0);
    child = spawnServe(configPath, dir, (t) => void (output += t));
    await waitAdmin();
    const r = await cli(['queries', 'search', '--session', 'proc-qlog', '--format', 'jsonl']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { name: string; qtype: number; count: number; user: string });
    expect(rows.reduce((n, x) => n + (x.qtype === 1 ? x.count : 0), 0)).toBe(20);
    expect(rows.some((x) => x.qtype === 28)).toBe(true);
    expect(rows.every((x) => x.name === FIXTURE.a.name && x.user === 'proc-user')).toBe(true);
  });
});
