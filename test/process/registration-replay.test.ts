// A registration token cannot bring back a session that was ended, over the real admin API of a
// `dnswarden serve` process, and a kill -9 and restart do not make the server forget: both a token
// ended before the crash and the token of a session registered before it and ended after it are refused.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, freePort, startUpstream, type Upstream } from '../helpers/upstream.js';
import { exited, spawnServe, waitAdmin } from '../helpers/serve-process.js';
import { query } from '../helpers/dns-client.js';

const ADMIN_TOKEN = 'replay-test-admin-token-0123456789';
const HS_SECRET = 'replay-test-registration-secret-0123456789';

let upstream: Upstream;
let dir: string;
let configPath: string;
let dnsPort: number;
let adminPort: number;
let child: ChildProcess | undefined;
let output = '';

const nowS = (): number => Math.floor(Date.now() / 1000);

function sign(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT({ user: 'bob', role: 'agent', session_type: 'batch', exp: nowS() + 3600, ...claims })
    .setProtectedHeader({ alg: 'HS256', kid: 'replay-hs' })
    .sign(new TextEncoder().encode(HS_SECRET));
}

async function admin(path: string, method: string, body?: unknown): Promise<{ status: number; json: { error?: { code: string; message: string } } }> {
  const res = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text === '' ? {} : JSON.parse(text) };
}

const register = (token: string) => admin('/v1/sessions', 'POST', { token });

async function rcodeFrom(bind: string): Promise<string> {
  return (await query({ server: { address: '127.0.0.1', port: dnsPort }, bind, name: FIXTURE.a.name, type: 'A', timeoutMs: 2000 })).rcode;
}

beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-replay-'));
  configPath = join(dir, 'dnswarden.yaml');
  dnsPort = await freePort();
  adminPort = await freePort();
  writeFileSync(configPath, stringify({
    listen: { dns: [`127.0.0.1:${dnsPort}`], admin: `127.0.0.1:${adminPort}` },
    admin: { token: ADMIN_TOKEN },
    storage: { dir: join(dir, 'data') },
    upstreams: [{ address: upstream.hostPort, timeout_ms: 1000 }],
    sessions: { static: [], signing_keys: [{ kid: 'replay-hs', alg: 'HS256', secret: HS_SECRET }] },
    logging: { level: 'warn' },
  }));
  child = spawnServe(configPath, dir, (text) => void (output += text));
  await waitAdmin(adminPort, child, () => output);
});

afterAll(async () => {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited(child, 5000).catch(() => undefined);
  }
  await upstream?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('replaying the registration token of an ended session', () => {
  let endedBefore: string;
  let endedAfter: string;

  it('is refused with 401 ERR_TOKEN_REVOKED, and the address stays refused', async () => {
    endedBefore = await sign({ sid: 'ended-before-crash', addresses: ['127.0.0.51/32'], iat: nowS() });
    expect((await register(endedBefore)).status).toBe(201);
    expect(await rcodeFrom('127.0.0.51')).toBe('NOERROR');
    expect((await admin('/v1/sessions/ended-before-crash', 'DELETE')).status).toBe(204);
    const replay = await register(endedBefore);
    expect(replay.status).toBe(401);
    expect(replay.json.error).toMatchObject({ code: 'ERR_TOKEN_REVOKED', message: expect.stringContaining('ended-before-crash') });
    expect(await rcodeFrom('127.0.0.51')).toBe('REFUSED');

    endedAfter = await sign({ sid: 'ended-after-crash', addresses: ['127.0.0.52/32'], jti: 'jti-after-crash' });
    expect((await register(endedAfter)).status).toBe(201);
  });

  it('is still refused after kill -9 and a restart, for a session ended before it and one ended after it', async () => {
    child!.kill('SIGKILL');
    expect((await exited(child!, 5000)).signal).toBe('SIGKILL');
    child = spawnServe(configPath, dir, (text) => void (output += text));
    await waitAdmin(adminPort, child, () => output);

    const replay = await register(endedBefore);
    expect(replay.status).toBe(401);
    expect(replay.json.error?.code).toBe('ERR_TOKEN_REVOKED');
    expect(await rcodeFrom('127.0.0.51')).toBe('REFUSED');

    // Registered before the crash, ended after the restart: its token is known all the same.
    expect(await rcodeFrom('127.0.0.52')).toBe('NOERROR');
    expect((await admin('/v1/sessions/ended-after-crash', 'DELETE')).status).toBe(204);
    const second = await register(endedAfter);
    expect(second.status).toBe(401);
    expect(second.json.error?.code).toBe('ERR_TOKEN_REVOKED');
    expect(await rcodeFrom('127.0.0.52')).toBe('REFUSED');
  });

  it('SIGTERM still shuts down cleanly', async () => {
    child!.kill('SIGTERM');
    expect((await exited(child!, 5000)).code, output).toBe(0);
  });
});
