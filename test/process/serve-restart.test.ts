// Issue 2, the built CLI as a service: `dnswarden serve --config FILE` answers; after kill -9 and a
// restart it answers again and still knows the sessions registered before the crash; SIGHUP
// reloads static sessions from the file, and refuses (counts, logs) an empty or broken one; SIGTERM
// shuts down cleanly.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, freePort, startUpstream, type Upstream } from '../helpers/upstream.js';
import { exited, spawnServe, waitAdmin } from '../helpers/serve-process.js';
import { query, type DnsReply } from '../helpers/dns-client.js';

const ADMIN_TOKEN = 'process-test-admin-token-0123456789';
const HS_SECRET = 'process-test-registration-secret-0123456789';

let upstream: Upstream;
let dir: string;
let configPath: string;
let dnsPort: number;
let adminPort: number;
let child: ChildProcess | undefined;
let output = '';

function writeConfig(staticAddresses: string[]): void {
  const config = {
    listen: { dns: [`127.0.0.1:${dnsPort}`], admin: `127.0.0.1:${adminPort}` },
    admin: { token: ADMIN_TOKEN },
    storage: { dir: join(dir, 'data') },
    upstreams: [{ address: upstream.hostPort, timeout_ms: 1000 }],
    sessions: {
      static: [{ id: 'proc-static', addresses: staticAddresses, type: 'interactive', user: 'tester', role: 'developer' }],
      signing_keys: [{ kid: 'proc-hs', alg: 'HS256', secret: HS_SECRET }],
    },
    logging: { level: 'info' },
  };
  writeFileSync(configPath, stringify(config));
}

function serve(): ChildProcess {
  return spawnServe(configPath, dir, (text) => void (output += text));
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

/** Polls until the server answers `name` NOERROR from `bind` (bounded), returning the reply. */
async function waitAnswering(bind = '127.0.0.1', timeoutMs = 15_000): Promise<DnsReply> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (child !== undefined && child.exitCode !== null) throw new Error(`serve exited with ${child.exitCode}:\n${output}`);
    try {
      const reply = await query({ server: { address: '127.0.0.1', port: dnsPort }, bind, name: FIXTURE.a.name, type: 'A', timeoutMs: 500 });
      if (reply.rcode === 'NOERROR') return reply;
      last = reply.rcode;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`no NOERROR from 127.0.0.1:${dnsPort} (bind ${bind}) within ${timeoutMs} ms; last: ${String(last)}\n${output}`);
}

beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-process-'));
  configPath = join(dir, 'dnswarden.yaml');
  dnsPort = await freePort();
  adminPort = await freePort();
  writeConfig(['127.0.0.1/32']);
});

afterAll(async () => {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited(child, 5000).catch(() => undefined);
  }
  await upstream?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('dnswarden serve', () => {
  it('starts from a config file and answers', async () => {
    child = serve();
    const reply = await waitAnswering();
    expect(reply.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
    const refused = await query({ server: { address: '127.0.0.1', port: dnsPort }, bind: '127.0.0.2', name: FIXTURE.a.name, type: 'A' });
    expect(refused.rcode).toBe('REFUSED');
    await waitAdmin(adminPort, child, () => output); // the admin API starts after the DNS listeners
    const health = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
    expect(health.status).toBe(200);
  });

  it('registers a session through the admin API', async () => {
    const token = await new SignJWT({ sid: 'proc-registered', user: 'bob', role: 'agent', session_type: 'batch', addresses: ['127.0.0.5/32'], exp: Math.floor(Date.now() / 1000) + 3600 })
      .setProtectedHeader({ alg: 'HS256', kid: 'proc-hs' })
      .sign(new TextEncoder().encode(HS_SECRET));
    const res = await fetch(`http://127.0.0.1:${adminPort}/v1/sessions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ token }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    await waitAnswering('127.0.0.5', 3000);
  });

  it('after kill -9 and a restart it answers again', async () => {
    child!.kill('SIGKILL');
    const { signal } = await exited(child!, 5000);
    expect(signal).toBe('SIGKILL');
    await expect(query({ server: { address: '127.0.0.1', port: dnsPort }, transport: 'tcp', name: FIXTURE.a.name, type: 'A', timeoutMs: 500 })).rejects.toThrow();

    child = serve();
    const reply = await waitAnswering();
    expect(reply.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
    await waitAdmin(adminPort, child, () => output); // the later tests read /metrics
    const tcp = await query({ server: { address: '127.0.0.1', port: dnsPort }, transport: 'tcp', name: FIXTURE.cnameChain.name, type: 'A' });
    expect(tcp.answers.at(-1)?.data).toBe(FIXTURE.cnameChain.address);
  });

  it('still knows the session registered before the crash (nothing lost on restart)', async () => {
    const reply = await query({ server: { address: '127.0.0.1', port: dnsPort }, bind: '127.0.0.5', name: FIXTURE.a.name, type: 'A' });
    expect(reply.rcode).toBe('NOERROR');
  });

  it('SIGHUP reloads static sessions from the file without a restart', async () => {
    const before = await query({ server: { address: '127.0.0.1', port: dnsPort }, bind: '127.0.0.6', name: FIXTURE.a.name, type: 'A' });
    expect(before.rcode).toBe('REFUSED');
    writeConfig(['127.0.0.1/32', '127.0.0.6/32']);
    const pid = child!.pid!;
    child!.kill('SIGHUP');
    await waitAnswering('127.0.0.6', 5000);
    expect(child!.pid).toBe(pid);
    expect(child!.exitCode).toBeNull();
    await waitAnswering('127.0.0.1', 2000);
  });

  it('SIGHUP with an empty (truncated) file or a file that does not parse: refused, counted, logged as JSON; nothing falls back to defaults', async () => {
    const reloadErrors = async (): Promise<number> => {
      const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(res.status).toBe(200);
      const line = (await res.text()).split('\n').find((l) => l.startsWith('dnswarden_config_reloads_total{result="error"}'));
      return line === undefined ? 0 : Number(line.split(' ')[1]);
    };
    const failures = (from: number) => output.slice(from).split('\n').filter((l) => l.includes('reload failed'));
    const before = await reloadErrors();
    const cases = ['', '# only a comment survived the write\n', 'listen: [ not yaml\n'];
    for (const [i, text] of cases.entries()) {
      const from = output.length;
      writeFileSync(configPath, text);
      child!.kill('SIGHUP');
      const deadline = Date.now() + 10_000;
      while (failures(from).length === 0 && Date.now() < deadline) await sleep(50);
      const logged = failures(from);
      expect(logged, output.slice(from)).toHaveLength(1);
      const entry = JSON.parse(logged[0]!) as { level: number; msg: string; err: string };
      expect(entry.msg).toBe('reload failed, keeping the running config');
      expect(entry.err).toMatch(i < 2 ? /is empty/ : /not valid YAML/);
      expect(await reloadErrors()).toBe(before + i + 1);
    }
    // The running config stayed: both static addresses still answer, the admin token still works.
    await waitAnswering('127.0.0.6', 5000);
    await waitAnswering('127.0.0.1', 2000);
    expect(child!.exitCode).toBeNull();
    writeConfig(['127.0.0.1/32', '127.0.0.6/32']);
  });

  it('SIGTERM shuts down cleanly (exit 0) within 5 s', async () => {
    child!.kill('SIGTERM');
    const { code } = await exited(child!, 5000);
    expect(code, output).toBe(0);
  });
});
