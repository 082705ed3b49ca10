// server.workers: 2 with every peer event held 400 ms in the supervisor (a test-only hook) before it
// reaches the other worker: what the admin API answers must already hold in the worker that owns the
// address. Without the acknowledged publish (the API answering before the other workers applied the
// change), a query right after a DELETE's 204 is still answered, right after a POST's 201 refused, and
// right after a release still blocked — deterministically, not only under load.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardOf } from '../../src/fleet/shard.js';
import { adminRequest, exited, spawnServe, waitLogLine, type AdminReply } from '../helpers/serve-process.js';
import { query, type Server } from '../helpers/dns-client.js';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { metricValue } from '../helpers/warden.js';

const TOKEN = 'workers-ack-test-admin-token-0123456789';
const HS_SECRET = 'workers-ack-test-registration-secret-0123456789';
const DELAY_MS = 400; // under the 1 s bound: the API waits it out
const EXFIL = [
  'mzxw6ytboi3tqnbrgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmr.a.exfil.dnswarden.test',
  'kfvgs4tfmvxgk3tufzqxg43pn5xw4zlsmfwgs3temvzhs5dfnzsxg2lpnzsxa7q.b.exfil.dnswarden.test',
];
const ON_1 = '127.0.0.2'; // a static session on worker 1
const REGISTERED = '127.0.0.8'; // on worker 1: not the admin worker, which handles the API

let upstream: Upstream;
let dir: string;
let child: ChildProcess;
let output = '';
let dns: Server;
let adminUrl: string;
let workerPids: number[];

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

const logLine = (msg: string, timeoutMs = 20_000): Promise<Record<string, unknown>> => waitLogLine(child, () => output, msg, { timeoutMs });

const admin = (path: string, init: { method?: string; body?: unknown } = {}): Promise<AdminReply> => adminRequest(adminUrl, TOKEN, path, init);

const ask = (bind: string, name: string = FIXTURE.a.name) => query({ server: dns, bind, name, type: 'A' });

beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-workers-ack-'));
  const configPath = join(dir, 'dnswarden.yaml');
  writeFileSync(configPath, stringify({
    listen: { dns: ['127.0.0.1:0'], admin: '127.0.0.1:0' },
    admin: { token: TOKEN },
    storage: { dir: join(dir, 'data') },
    upstreams: [{ address: upstream.hostPort }],
    server: { workers: 2 },
    sessions: {
      static: [{ id: 'agent-on-1', addresses: [`${ON_1}/32`], type: 'scheduled', user: 'ops', role: 'reporter' }],
      signing_keys: [{ kid: 'runtime', alg: 'HS256', secret: HS_SECRET }],
    },
    logging: { level: 'info' },
  }));
  // The serve process inherits the environment at spawn; no other test in this file's process reads it.
  process.env['DNSWARDEN_TEST_PEER_EVENT_DELAY_MS'] = String(DELAY_MS);
  try {
    child = spawnServe(configPath, dir, (text) => void (output += text));
  } finally {
    delete process.env['DNSWARDEN_TEST_PEER_EVENT_DELAY_MS'];
  }
  const ready = await logLine('dnswarden ready');
  dns = { address: '127.0.0.1', port: Number((ready['dns'] as string[])[0]!.split(':')[1]) };
  adminUrl = ready['admin'] as string;
  workerPids = ready['worker_pids'] as number[];
});

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) {
    child.kill('SIGKILL');
    await exited(child, 5000).catch(() => undefined);
  }
  for (const pid of workerPids ?? []) { try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ } }
  await upstream?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('server.workers: 2, admin API changes acknowledged by every worker', () => {
  it('the test addresses sit on worker 1, not the admin worker', () => {
    expect([ON_1, REGISTERED].map((a) => shardOf(a, 2))).toEqual([1, 1]);
  });

  it('right after a registration\'s 201 its owner answers it, right after its 204 the owner refuses it (3 rounds)', async () => {
    for (let round = 0; round < 3; round++) {
      expect((await ask(REGISTERED)).rcode).toBe('REFUSED');
      const token = await new SignJWT({ sid: `ack-${round}`, user: 'alice', role: 'researcher', session_type: 'interactive', addresses: [`${REGISTERED}/32`], exp: Math.floor(Date.now() / 1000) + 600 })
        .setProtectedHeader({ alg: 'HS256', kid: 'runtime' })
        .sign(new TextEncoder().encode(HS_SECRET));
      const startedAt = Date.now();
      expect((await admin('/v1/sessions', { method: 'POST', body: { token } })).status).toBe(201);
      const tookMs = Date.now() - startedAt;
      expect((await ask(REGISTERED)).answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
      // The API waited for the held relay: the answer came after it, not before.
      expect(tookMs).toBeGreaterThanOrEqual(DELAY_MS - 50);
      expect((await admin(`/v1/sessions/ack-${round}`, { method: 'DELETE' })).status).toBe(204);
      expect((await ask(REGISTERED)).rcode).toBe('REFUSED');
    }
  });

  it('right after a release\'s 200 the worker that raised the quarantine answers the session again', async () => {
    await query({ server: dns, bind: ON_1, name: EXFIL[0]!, type: 'TXT' });
    expect((await query({ server: dns, bind: ON_1, name: EXFIL[1]!, type: 'TXT' })).ede?.text).toMatch(/^session quarantined/);
    // Raised by worker 1 while answering (no query waited); the admin worker learns it after the held relay.
    let id: string | undefined;
    for (const deadline = Date.now() + 10_000; id === undefined && Date.now() < deadline; await sleep(50)) {
      id = (await admin('/v1/sessions/agent-on-1')).json.session.quarantine ?? undefined;
    }
    expect(id).toMatch(/^qr-/);
    expect((await ask(ON_1)).rcode).toBe('NXDOMAIN');
    expect((await admin(`/v1/quarantines/${id}/release`, { method: 'POST', body: { reason: 'ack test' } })).status).toBe(200);
    expect((await ask(ON_1)).answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
  });

  it('no change waited past the bound here', async () => {
    const text = (await admin('/metrics')).text;
    expect(metricValue(text, 'dnswarden_worker_sync_timeouts_total', { kind: 'session.drop' }) ?? 0).toBe(0);
    expect(output).not.toContain('did not confirm a change in time');
  });

  it('a worker that does not confirm (stopped) cannot hang the API: it answers after the ~1 s bound, counted and logged', async () => {
    const token = await new SignJWT({ sid: 'ack-stopped', user: 'alice', role: 'researcher', session_type: 'interactive', addresses: [`${REGISTERED}/32`], exp: Math.floor(Date.now() / 1000) + 600 })
      .setProtectedHeader({ alg: 'HS256', kid: 'runtime' })
      .sign(new TextEncoder().encode(HS_SECRET));
    process.kill(workerPids[1]!, 'SIGSTOP'); // alive and connected, so waited for, but silent
    let tookMs: number;
    try {
      const startedAt = Date.now();
      expect((await admin('/v1/sessions', { method: 'POST', body: { token } })).status).toBe(201);
      tookMs = Date.now() - startedAt;
    } finally {
      process.kill(workerPids[1]!, 'SIGCONT');
    }
    // The held relay (400 ms) plus the 1 s bound, then the answer; generous upper bound for a loaded machine.
    expect(tookMs).toBeGreaterThanOrEqual(DELAY_MS + 900);
    expect(tookMs).toBeLessThan(10_000);
    expect(output).toContain('"msg":"workers did not confirm a change in time; answering anyway"');
    const text = (await admin('/metrics')).text;
    expect(metricValue(text, 'dnswarden_worker_sync_timeouts_total', { kind: 'session.put' })).toBe(1);
    // Worker 1 applies the late event once it runs again: the session is answered there.
    let rcode = '';
    for (const deadline = Date.now() + 10_000; rcode !== 'NOERROR' && Date.now() < deadline; await sleep(50)) rcode = (await ask(REGISTERED)).rcode;
    expect(rcode).toBe('NOERROR');
  });
});
