// server.workers: 2, as a user runs it: the built CLI with a config file, a real NSD upstream,
// clients on several loopback addresses. Checks what the mode promises:
// - the kernel steers each source address (UDP packets and TCP connections) to the worker that
//   shardOf() predicts, whatever the source port;
// - one session's exfiltration is judged whole by one worker and quarantined, even when its addresses
//   are steered to different workers (the other worker relays them to the session's owner);
// - a quarantine, a registration, its end and a release made in one worker hold in the other at once;
// - /metrics on the admin worker sums the workers; a worker killed with -9 is restarted and its
//   clients are answered again, by the same worker, with their quarantine still in force.
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

const TOKEN = 'workers-test-admin-token-0123456789';
const HS_SECRET = 'workers-test-registration-secret-0123456789';
const EXFIL = [
  'mzxw6ytboi3tqnbrgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmr.a.exfil.dnswarden.test',
  'kfvgs4tfmvxgk3tufzqxg43pn5xw4zlsmfwgs3temvzhs5dfnzsxg2lpnzsxa7q.b.exfil.dnswarden.test',
];
// Loopback addresses by the worker the kernel program picks for them (shardOf asserts it below).
const ON_1 = '127.0.0.2';
const ON_0 = '127.0.0.3';
const DUAL = ['127.0.0.4', '127.0.0.5']; // one session, one address on each worker; owned by worker 0 (its first address's)
const REGISTERED = '127.0.0.8'; // on worker 1: not the admin worker, which verifies the registration

let upstream: Upstream;
let dir: string;
let child: ChildProcess;
let output = '';
let dns: Server;
let dns6: Server;
let adminUrl: string;
let workerPids: number[];
let configPath: string;
let config: Record<string, any>;

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

/** The first JSON log line with this msg (after `from` characters of output), parsed. */
const logLine = (msg: string, from = 0, timeoutMs = 20_000): Promise<Record<string, unknown>> => waitLogLine(child, () => output, msg, { from, timeoutMs });

const admin = (path: string, init: { method?: string; body?: unknown } = {}): Promise<AdminReply> => adminRequest(adminUrl, TOKEN, path, init);

async function workerQueries(): Promise<[number, number]> {
  const text = (await admin('/metrics')).text;
  return [metricValue(text, 'dnswarden_worker_queries_total', { worker: '0' }) ?? 0, metricValue(text, 'dnswarden_worker_queries_total', { worker: '1' }) ?? 0];
}

const ask = (bind: string, name: string = FIXTURE.a.name, transport: 'udp' | 'tcp' = 'udp') => query({ server: dns, bind, name, type: 'A', transport });

beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-workers-'));
  configPath = join(dir, 'dnswarden.yaml');
  config = {
    listen: { dns: ['127.0.0.1:0', '[::1]:0'], admin: '127.0.0.1:0' },
    admin: { token: TOKEN },
    storage: { dir: join(dir, 'data') },
    upstreams: [{ address: upstream.hostPort }],
    server: { workers: 2 },
    sessions: {
      static: [
        { id: 'agent-on-1', addresses: [`${ON_1}/32`], type: 'scheduled', user: 'ops', role: 'reporter' },
        { id: 'agent-on-0', addresses: [`${ON_0}/32`], type: 'interactive', user: 'dev', role: 'coder' },
        { id: 'dual', addresses: DUAL.map((a) => `${a}/32`), type: 'scheduled', user: 'ops', role: 'reporter' },
        { id: 'v6', addresses: ['::1'], type: 'interactive', user: 'dev', role: 'coder' },
      ],
      signing_keys: [{ kid: 'runtime', alg: 'HS256', secret: HS_SECRET }],
    },
    logging: { level: 'info' },
  };
  writeFileSync(configPath, stringify(config));
  child = spawnServe(configPath, dir, (text) => void (output += text));
  const ready = await logLine('dnswarden ready');
  const [hostPort, hostPort6] = ready['dns'] as string[];
  dns = { address: '127.0.0.1', port: Number(hostPort!.split(':')[1]) };
  expect(hostPort6).toMatch(/^\[::1\]:\d+$/);
  dns6 = { address: '::1', port: Number(hostPort6!.slice(hostPort6!.lastIndexOf(':') + 1)) };
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

describe('server.workers: 2', () => {
  it('starts a supervisor and two worker processes; the test addresses sit where this test assumes', () => {
    expect(workerPids).toHaveLength(2);
    expect(new Set(workerPids).size).toBe(2);
    expect(adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect([ON_1, ON_0, ...DUAL, REGISTERED].map((a) => shardOf(a, 2))).toEqual([1, 0, 0, 1, 1]);
  });

  it('steers every query of one source address to the worker shardOf() predicts, over UDP and TCP', async () => {
    const before = await workerQueries();
    // Each query comes from a fresh socket: a new source port every time, the same address.
    for (let i = 0; i < 12; i++) expect((await ask(ON_1)).answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
    for (let i = 0; i < 7; i++) expect((await ask(ON_0)).rcode).toBe('NOERROR');
    for (let i = 0; i < 3; i++) expect((await ask(ON_1, FIXTURE.a.name, 'tcp')).rcode).toBe('NOERROR');
    const after = await workerQueries();
    expect([after[0] - before[0], after[1] - before[1]]).toEqual([7, 15]);
  });

  it('steers IPv6 clients the same way (the program folds the address into one word)', async () => {
    const before = await workerQueries();
    for (const transport of ['udp', 'tcp'] as const) {
      for (let i = 0; i < 4; i++) expect((await query({ server: dns6, bind: '::1', name: FIXTURE.a.name, type: 'A', transport })).answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
    }
    const after = await workerQueries();
    const delta = [after[0] - before[0], after[1] - before[1]];
    expect(delta[shardOf('::1', 2)]).toBe(8);
    expect(delta[1 - shardOf('::1', 2)]).toBe(0);
  });

  it('a second dnswarden on the same port fails at start and takes no share of the clients', async () => {
    const dir2 = mkdtempSync(join(tmpdir(), 'dnswarden-workers-second-'));
    try {
      for (const workers of [2, 1]) {
        const path = join(dir2, `second-${workers}.yaml`);
        writeFileSync(path, stringify({ ...config, listen: { dns: [`127.0.0.1:${dns.port}`], admin: '127.0.0.1:0' }, server: { workers }, storage: { dir: join(dir2, 'data') } }));
        let out = '';
        const second = spawnServe(path, dir2, (text) => void (out += text));
        const { code } = await exited(second, 15_000);
        expect(code).toBe(1);
        expect(out).toContain(`bind EADDRINUSE 127.0.0.1:${dns.port}`);
      }
    } finally {
      rmSync(dir2, { recursive: true, force: true });
    }
    const before = await workerQueries();
    for (let i = 0; i < 5; i++) expect((await ask(ON_1)).rcode).toBe('NOERROR');
    const after = await workerQueries();
    expect(after[1] - before[1]).toBe(5);
  });

  it('/metrics sums the workers, but not the gauges every worker holds alike', async () => {
    const text = (await admin('/metrics')).text;
    const [w0, w1] = await workerQueries();
    expect(metricValue(text, 'dnswarden_queries_total')).toBe(w0 + w1);
    expect(metricValue(text, 'dnswarden_sessions_live')).toBe(4);
    expect(metricValue(text, 'dnswarden_sessions_quarantined')).toBe(0);
  });

  it('a registration verified by the admin worker is answered at once by the worker that owns the address, and its end too', async () => {
    expect((await ask(REGISTERED)).rcode).toBe('REFUSED');
    const token = await new SignJWT({ sid: 'pod-8', user: 'alice', role: 'researcher', session_type: 'interactive', addresses: [`${REGISTERED}/32`], exp: Math.floor(Date.now() / 1000) + 600 })
      .setProtectedHeader({ alg: 'HS256', kid: 'runtime' })
      .sign(new TextEncoder().encode(HS_SECRET));
    const reg = await admin('/v1/sessions', { method: 'POST', body: { token } });
    expect(reg.status).toBe(201);
    const before = await workerQueries();
    expect((await ask(REGISTERED)).answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
    const after = await workerQueries();
    expect(after[1] - before[1]).toBe(1); // answered by worker 1, which did not see the POST
    // Its history, kept by worker 1, is what the admin worker shows.
    const history = await admin('/v1/sessions/pod-8/queries');
    expect(history.json.queries.map((q: { name: string }) => q.name)).toEqual([FIXTURE.a.name]);
    expect((await admin('/v1/sessions/pod-8', { method: 'DELETE' })).status).toBe(204);
    expect((await ask(REGISTERED)).rcode).toBe('REFUSED');
  });

  it("a session with an address on each worker is judged whole by its owner: a block from one address and one from the other quarantine it", async () => {
    const before = await workerQueries();
    const first = await query({ server: dns, bind: DUAL[0]!, name: EXFIL[0]!, type: 'TXT' });
    expect(first.ede?.text).toMatch(/^threshold:/);
    // Steered to worker 1, relayed to worker 0: its window holds the first block, so this is the second.
    const second = await query({ server: dns, bind: DUAL[1]!, name: EXFIL[1]!, type: 'TXT' });
    expect(second.ede?.text).toMatch(/^session quarantined \(qr-/);
    const after = await workerQueries();
    expect([after[0] - before[0], after[1] - before[1]]).toEqual([2, 0]);
    for (const address of DUAL) {
      const held = await ask(address);
      expect(held.rcode).toBe('NXDOMAIN');
      expect(held.ede).toEqual({ code: 15, text: expect.stringMatching(/^session quarantined \(qr-/) });
    }
    expect((await ask(ON_0)).rcode).toBe('NOERROR'); // other sessions are not touched

    const open = await admin('/v1/quarantines?state=open');
    expect(open.json.quarantines).toHaveLength(1);
    const q = open.json.quarantines[0];
    expect(q.session.id).toBe('dual');
    expect(q.trigger.name).toBe(EXFIL[1]);
    const shown = await admin(`/v1/quarantines/${q.id}`);
    expect(shown.json.quarantine.evidence.recent.map((e: { name: string }) => e.name)).toContain(EXFIL[0]);
    expect(metricValue((await admin('/metrics')).text, 'dnswarden_sessions_quarantined')).toBe(1);

    const release = await admin(`/v1/quarantines/${q.id}/release`, { method: 'POST', body: { reason: 'workers test' } });
    expect(release.status).toBe(200);
    for (const address of DUAL) expect((await ask(address)).answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
  });

  it('a worker killed with -9 is restarted on the running config (not the file, broken since); its clients are answered by it again, their quarantine still in force', async () => {
    // Quarantine agent-on-1 (worker 1), then kill worker 1.
    await query({ server: dns, bind: ON_1, name: EXFIL[0]!, type: 'TXT' });
    expect((await query({ server: dns, bind: ON_1, name: EXFIL[1]!, type: 'TXT' })).ede?.text).toMatch(/^session quarantined/);
    // Raised by worker 1, known at once to the admin worker.
    expect((await admin('/v1/sessions/agent-on-1')).json.session.quarantine).toMatch(/^qr-/);
    writeFileSync(configPath, 'listen: [ this is not a config\n'); // edited, no SIGHUP yet
    const from = output.length;
    process.kill(workerPids[1]!, 'SIGKILL');
    const restarted = await logLine('worker restarted and ready', from);
    expect(restarted['worker']).toBe(1);
    expect(restarted['pid']).not.toBe(workerPids[1]);
    workerPids[1] = restarted['pid'] as number;

    const held = await ask(ON_1);
    expect(held.ede?.text).toMatch(/^session quarantined \(qr-/);
    const before = await workerQueries();
    expect((await ask(ON_0)).rcode).toBe('NOERROR');
    const after = await workerQueries();
    expect(after[0] - before[0]).toBe(1);
    expect((await ask(REGISTERED)).rcode).toBe('REFUSED'); // worker 1 answers, on the config it had
    writeFileSync(configPath, stringify(config));
  });

  it('SIGHUP reaches every worker: a new static session is answered by its worker; a bad file changes nothing', async () => {
    const NEW = '127.0.0.9';
    expect((await ask(NEW)).rcode).toBe('REFUSED');
    config['sessions'].static.push({ id: 'added', addresses: [`${NEW}/32`], type: 'batch', user: 'ops', role: 'etl' });
    writeFileSync(configPath, stringify(config));
    let from = output.length;
    child.kill('SIGHUP');
    // Each worker logs its own reload, at its own pace (a loaded machine may schedule one seconds later):
    // wait for the second line (bounded), then for any unexpected third, and count.
    const reloaded = () => output.slice(from).split('\n').filter((l) => l.includes('"msg":"config reloaded"'));
    const reloadDeadline = Date.now() + 20_000;
    while (reloaded().length < 2 && Date.now() < reloadDeadline) await sleep(50);
    await sleep(200);
    expect(reloaded(), output.slice(from)).toHaveLength(2);
    const before = await workerQueries();
    expect((await ask(NEW)).answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
    const after = await workerQueries();
    const owner = shardOf(NEW, 2) as 0 | 1;
    expect(after[owner] - before[owner]).toBe(1);

    const reloadErrors = async (): Promise<number> => metricValue((await admin('/metrics')).text, 'dnswarden_config_reloads_total', { result: 'error' }) ?? 0;
    const errorsBefore = await reloadErrors();
    writeFileSync(configPath, 'server: { workers: "two" }\n');
    from = output.length;
    child.kill('SIGHUP');
    const deadline = Date.now() + 20_000;
    while (!output.slice(from).includes('reload failed') && Date.now() < deadline) await sleep(50);
    const failed = output.slice(from).split('\n').filter((l) => l.includes('reload failed'));
    expect(failed).toHaveLength(1); // said once, by the supervisor, as JSON
    expect(JSON.parse(failed[0]!)).toMatchObject({ role: 'supervisor', msg: 'reload failed, keeping the running config', err: expect.stringMatching(/^server\.workers/) });
    // counted by every worker, as each counts its reloads (the admin worker's /metrics sums them)
    const countDeadline = Date.now() + 20_000;
    while ((await reloadErrors()) < errorsBefore + 2 && Date.now() < countDeadline) await sleep(50);
    expect(await reloadErrors()).toBe(errorsBefore + 2);
    expect((await ask(NEW)).rcode).toBe('NOERROR');
    writeFileSync(configPath, stringify(config));
  });

  it('SIGTERM stops the supervisor and every worker', async () => {
    child.kill('SIGTERM');
    expect((await exited(child, 15_000)).code).toBe(0);
    for (const pid of workerPids) expect(() => process.kill(pid, 0)).toThrow();
  });
});

describe('server.workers: 2, supervisor killed with -9', () => {
  it('its workers notice and exit, leaving the port free', async () => {
    const dir2 = mkdtempSync(join(tmpdir(), 'dnswarden-workers-orphan-'));
    let out = '';
    const path = join(dir2, 'dnswarden.yaml');
    writeFileSync(path, stringify({ ...config, storage: { dir: join(dir2, 'data') } }));
    const proc = spawnServe(path, dir2, (text) => void (out += text));
    try {
      const deadline = Date.now() + 20_000;
      while (!out.includes('"msg":"dnswarden ready"') && Date.now() < deadline) await sleep(50);
      const ready = JSON.parse(out.split('\n').find((l) => l.includes('"msg":"dnswarden ready"'))!) as { worker_pids: number[] };
      proc.kill('SIGKILL');
      await exited(proc, 5000);
      const gone = Date.now() + 10_000;
      const alive = () => ready.worker_pids.filter((pid) => { try { process.kill(pid, 0); return true; } catch { return false; } });
      while (alive().length > 0 && Date.now() < gone) await sleep(50);
      expect(alive()).toEqual([]);
    } finally {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      rmSync(dir2, { recursive: true, force: true });
    }
  });
});
