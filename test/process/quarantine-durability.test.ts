// Issue 3: a quarantine is written to the store before its blocking answer leaves, so a kill -9
// the instant that answer arrives loses nothing: after a restart the session is still quarantined,
// with its evidence, until an analyst releases it. The built CLI, a config file, a real NSD.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exited, spawnServe } from '../helpers/serve-process.js';
import { base32Label } from '../helpers/exfil.js';
import { query } from '../helpers/dns-client.js';
import { FIXTURE, freePort, startUpstream, type Upstream } from '../helpers/upstream.js';

const TOKEN = 'durability-test-admin-token-0123456789';
const HS_SECRET = 'durability-test-registration-secret-0123456789';
const EXFIL = [
  'mzxw6ytboi3tqnbrgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmr.a.exfil.dnswarden.test',
  'kfvgs4tfmvxgk3tufzqxg43pn5xw4zlsmfwgs3temvzhs5dfnzsxg2lpnzsxa7q.b.exfil.dnswarden.test',
];

let upstream: Upstream;
let dir: string;
let configPath: string;
let dnsPort: number;
let adminPort: number;
let child: ChildProcess | undefined;
let output = '';

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

function serve(): ChildProcess {
  output = ''; // a restart's readiness is read from its own output
  return spawnServe(configPath, dir, (text) => void (output += text));
}

async function waitReady(): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (output.includes('"dnswarden ready"')) return;
    if (child?.exitCode !== null && child?.exitCode !== undefined) throw new Error(`serve exited:\n${output}`);
    await sleep(50);
  }
  throw new Error(`serve did not become ready:\n${output}`);
}

async function killHard(): Promise<void> {
  if (child === undefined || child.exitCode !== null) return;
  const exited = new Promise((ok) => child!.once('exit', ok));
  child.kill('SIGKILL');
  await exited;
}

async function stopGracefully(): Promise<void> {
  if (child === undefined || child.exitCode !== null) return;
  child.kill('SIGTERM');
  expect(await exited(child, 15_000)).toEqual({ code: 0, signal: null });
}

const auth = { authorization: `Bearer ${TOKEN}` };
async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
    method, headers: { ...auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) };
}

/** Two exfiltration-shaped queries: a scored block, then the quarantine. Returns its id. */
async function raiseQuarantine(seed: string): Promise<string> {
  const server = { address: '127.0.0.1', port: dnsPort };
  const first = await query({ server, name: `${base32Label(`${seed}-1`)}.a.exfil.dnswarden.test`, type: 'TXT' });
  expect(first.ede?.text).toMatch(/^threshold:/);
  const second = await query({ server, name: `${base32Label(`${seed}-2`)}.b.exfil.dnswarden.test`, type: 'TXT' });
  const id = /^session quarantined \((qr-[^)]+)\)/.exec(second.ede?.text ?? '')?.[1];
  expect(id, second.ede?.text).toBeDefined();
  return id!;
}

async function expectBlockedBy(id: string, bind?: string): Promise<void> {
  const benign = await query({ server: { address: '127.0.0.1', port: dnsPort }, ...(bind !== undefined ? { bind } : {}), name: FIXTURE.a.name, type: 'A' });
  expect(benign.rcode).toBe('NXDOMAIN');
  expect(benign.ede).toEqual({ code: 15, text: `session quarantined (${id})` });
}

beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-durable-'));
  configPath = join(dir, 'dnswarden.yaml');
  dnsPort = await freePort();
  adminPort = await freePort();
  writeFileSync(configPath, stringify({
    listen: { dns: [`127.0.0.1:${dnsPort}`], admin: `127.0.0.1:${adminPort}` },
    admin: { token: TOKEN },
    storage: { dir: join(dir, 'data') },
    upstreams: [{ address: upstream.hostPort }],
    sessions: {
      static: [{ id: 'nightly-report', addresses: ['127.0.0.1/32'], type: 'scheduled', user: 'ops', role: 'reporter' }],
      signing_keys: [{ kid: 'runtime-hs', alg: 'HS256', secret: HS_SECRET }],
    },
    logging: { level: 'info' },
  }));
});

afterAll(async () => {
  await killHard();
  await upstream?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('quarantine durability', () => {
  it('survives kill -9 the moment the blocking answer arrives, and holds until released', async () => {
    child = serve();
    await waitReady();
    const server = { address: '127.0.0.1', port: dnsPort };
    const first = await query({ server, name: EXFIL[0]!, type: 'TXT' });
    expect(first.ede?.text).toMatch(/^threshold:/);
    const second = await query({ server, name: EXFIL[1]!, type: 'TXT' });
    expect(second.ede?.text).toMatch(/^session quarantined \(qr-/);
    await killHard(); // no graceful shutdown: nothing gets a chance to flush

    child = serve();
    await waitReady();
    const benign = await query({ server, name: FIXTURE.a.name, type: 'A' });
    expect(benign.rcode).toBe('NXDOMAIN');
    expect(benign.ede).toEqual({ code: 15, text: expect.stringMatching(/^session quarantined \(qr-/) });

    const auth = { authorization: `Bearer ${TOKEN}` };
    const list = (await (await fetch(`http://127.0.0.1:${adminPort}/v1/quarantines?state=open`, { headers: auth })).json()) as { quarantines: { id: string; session: { id: string; type: string }; trigger: { name: string } }[] };
    expect(list.quarantines).toHaveLength(1);
    expect(list.quarantines[0]!.session).toMatchObject({ id: 'nightly-report', type: 'scheduled' });
    expect(list.quarantines[0]!.trigger.name).toBe(EXFIL[1]);

    const release = await fetch(`http://127.0.0.1:${adminPort}/v1/quarantines/${list.quarantines[0]!.id}/release`, {
      method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'durability test' }),
    });
    expect(release.status).toBe(200);
    const answered = await query({ server, name: FIXTURE.a.name, type: 'A' });
    expect(answered.rcode).toBe('NOERROR');
    expect(answered.answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
  });

  it('a confirmed quarantine holds across SIGTERM and kill -9 restarts until someone releases it, and so does a session gated under it', async () => {
    if (child === undefined || child.exitCode !== null) {
      child = serve();
      await waitReady();
    }
    const id = await raiseQuarantine('confirm-restart');
    const confirmed = await api('POST', `/v1/quarantines/${id}/confirm`, { reason: 'confirmed exfil' });
    expect(confirmed.status).toBe(200);
    expect(confirmed.json.quarantine.state).toBe('confirmed');
    await expectBlockedBy(id);
    // A new session for the same user comes up gated under it (the quarantine follows the user).
    const token = await new SignJWT({ sid: 'ops-adhoc', user: 'ops', role: 'reporter', session_type: 'interactive', addresses: ['127.0.0.9/32'], exp: Math.floor(Date.now() / 1000) + 600 })
      .setProtectedHeader({ alg: 'HS256', kid: 'runtime-hs' }).sign(new TextEncoder().encode(HS_SECRET));
    const registered = await api('POST', '/v1/sessions', { token });
    expect(registered.status).toBe(201);
    expect(registered.json.session.quarantine).toBe(id);
    await expectBlockedBy(id, '127.0.0.9');

    await stopGracefully();
    child = serve();
    await waitReady();
    await expectBlockedBy(id);
    await expectBlockedBy(id, '127.0.0.9');
    expect((await api('GET', '/v1/sessions/nightly-report')).json.session.quarantine).toBe(id);

    await killHard();
    child = serve();
    await waitReady();
    await expectBlockedBy(id);
    await expectBlockedBy(id, '127.0.0.9');
    expect((await api('GET', '/v1/quarantines?state=confirmed')).json.quarantines.map((q: { id: string }) => q.id)).toEqual([id]);

    // Confirmed is not final: a release lifts it, and a second decision on it is refused.
    expect((await api('POST', `/v1/quarantines/${id}/release`, { reason: 'owner re-keyed the agent' })).status).toBe(200);
    expect((await api('POST', `/v1/quarantines/${id}/release`, { reason: 'again' })).status).toBe(400);
    for (const bind of ['127.0.0.1', '127.0.0.9']) {
      const answered = await query({ server: { address: '127.0.0.1', port: dnsPort }, bind, name: FIXTURE.a.name, type: 'A' });
      expect(answered.rcode, bind).toBe('NOERROR');
    }
  });
});
