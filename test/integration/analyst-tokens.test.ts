// Issue 4, token kinds on the admin API (README "Admin API"): no token → 401 everywhere but /healthz;
// viewer reads but cannot decide (403, and nothing changes); analyst reads and decides; runtime only
// registers and ends sessions; admin does everything. Over real HTTP and DNS sockets, with a real
// quarantine to act on, and the built CLI with a viewer token.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { query } from '../helpers/dns-client.js';
import { startWarden, TEST_SESSION, type Warden } from '../helpers/warden.js';
import { base32Label } from '../helpers/exfil.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/src/cli.js');
const TOKENS = {
  analyst: 'tokens-test-analyst-0123456789abcdef',
  viewer: 'tokens-test-viewer-0123456789abcdef',
  runtime: 'tokens-test-runtime-0123456789abcdef',
} as const;
const HS_SECRET = 'tokens-test-registration-secret-0123456789';
const BATCH = { id: 'tok-batch', addresses: ['127.0.0.2/32'], type: 'batch', user: 'ci-bot', role: 'builder' } as const;

let upstream: Upstream;
let warden: Warden;
let quarantineId: string;
let cliCwd: string;

/** Base32-label TXT queries from 127.0.0.2 until the session is quarantined (at most 8); its id. */
async function quarantineBatchSession(): Promise<string> {
  for (let i = 0; i < 8; i++) {
    const reply = await query({ server: warden.dns, bind: '127.0.0.2', name: `${base32Label(`tokens-${i}`)}.tokens-exfil.test`, type: 'TXT' });
    const m = /^session quarantined \((qr-[^)]+)\)/.exec(reply.ede?.text ?? '');
    if (m !== null) return m[1]!;
  }
  throw new Error('no quarantine after 8 exfiltration queries');
}

function registrationJwt(sid: string, address: string): Promise<string> {
  return new SignJWT({ sid, user: 'rt-user', role: 'agent', session_type: 'interactive', addresses: [address], exp: Math.floor(Date.now() / 1000) + 600 })
    .setProtectedHeader({ alg: 'HS256', kid: 'tok-hs' })
    .sign(new TextEncoder().encode(HS_SECRET));
}

const errorCode = (json: unknown): string | undefined => (json as { error?: { code?: string } } | undefined)?.error?.code;

beforeAll(async () => {
  upstream = await startUpstream();
  cliCwd = mkdtempSync(join(tmpdir(), 'dnswarden-cli-'));
  warden = await startWarden({
    admin: {
      tokens: [
        { name: 'alice', kind: 'analyst', token: TOKENS.analyst },
        { name: 'vera', kind: 'viewer', token: TOKENS.viewer },
        { name: 'agent-runtime', kind: 'runtime', token: TOKENS.runtime },
      ],
    },
    sessions: {
      static: [{ ...TEST_SESSION, addresses: [...TEST_SESSION.addresses] }, { ...BATCH, addresses: [...BATCH.addresses] }],
      signing_keys: [{ kid: 'tok-hs', alg: 'HS256', secret: HS_SECRET }],
    },
  }, { upstream });
  quarantineId = await quarantineBatchSession();
});

afterAll(async () => {
  await warden?.close();
  await upstream?.stop();
  if (cliCwd !== undefined) rmSync(cliCwd, { recursive: true, force: true });
});

describe('no token or an unknown token: 401 on every path but /healthz', () => {
  const paths: [string, string, unknown?][] = [
    ['GET', '/metrics'],
    ['GET', '/v1/quarantines'],
    ['GET', `/v1/quarantines/QID`],
    ['POST', '/v1/quarantines/QID/release', { reason: 'no token' }],
    ['POST', '/v1/quarantines/QID/confirm', { reason: 'no token' }],
    ['GET', '/v1/sessions'],
    ['POST', '/v1/sessions', { token: 'x' }],
    ['GET', '/v1/audit'],
    ['GET', '/v1/deny'],
    ['POST', '/v1/deny', { domain: 'example.org', reason: 'no token' }],
    ['GET', '/v1/does-not-exist'],
  ];

  it.each(paths)('%s %s', async (method, path, body) => {
    const p = path.replace('QID', quarantineId);
    const none = await warden.admin(p, { method, token: null, ...(body !== undefined ? { body } : {}) });
    expect(none.status).toBe(401);
    expect(errorCode(none.json)).toBe('ERR_UNAUTHORIZED');
    const wrong = await warden.admin(p, { method, token: `${TOKENS.analyst}-wrong`, ...(body !== undefined ? { body } : {}) });
    expect(wrong.status).toBe(401);
  });

  it('/healthz is open', async () => {
    const res = await warden.admin('/healthz', { token: null });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: 'ok' });
  });

  it('the quarantine is untouched by all that', async () => {
    const res = await warden.admin(`/v1/quarantines/${quarantineId}`);
    expect((res.json as { quarantine: { state: string } }).quarantine.state).toBe('open');
  });
});

describe('viewer: reads, cannot decide', () => {
  it('reads quarantines, evidence, sessions, queries, audit, deny list and /metrics', async () => {
    for (const path of ['/v1/quarantines', `/v1/quarantines/${quarantineId}`, '/v1/sessions', '/v1/sessions/tok-batch', '/v1/sessions/tok-batch/queries', '/v1/audit', '/v1/deny', '/metrics']) {
      const res = await warden.admin(path, { token: TOKENS.viewer });
      expect(res.status, path).toBe(200);
    }
  });

  it('cannot release (403), and the session stays quarantined', async () => {
    const res = await warden.admin(`/v1/quarantines/${quarantineId}/release`, { method: 'POST', token: TOKENS.viewer, body: { reason: 'viewer tries' } });
    expect(res.status).toBe(403);
    expect(errorCode(res.json)).toBe('ERR_FORBIDDEN');
    const q = await warden.admin(`/v1/quarantines/${quarantineId}`);
    expect((q.json as { quarantine: { state: string } }).quarantine.state).toBe('open');
    const reply = await query({ server: warden.dns, bind: '127.0.0.2', name: FIXTURE.a.name, type: 'A' });
    expect(reply.rcode).toBe('NXDOMAIN');
    expect(reply.ede).toEqual({ code: 15, text: `session quarantined (${quarantineId})` });
  });

  it('cannot confirm, add to or remove from the deny list, register sessions or flush the cache (403)', async () => {
    const attempts: [string, string, unknown?][] = [
      ['POST', `/v1/quarantines/${quarantineId}/confirm`, { reason: 'viewer tries', deny_domains: true }],
      ['POST', '/v1/deny', { domain: 'example.org', reason: 'viewer tries' }],
      ['DELETE', '/v1/deny/example.org'],
      ['POST', '/v1/sessions', { token: await registrationJwt('viewer-made', '127.0.0.9/32') }],
      ['POST', '/v1/cache/flush'],
    ];
    for (const [method, path, body] of attempts) {
      const res = await warden.admin(path, { method, token: TOKENS.viewer, ...(body !== undefined ? { body } : {}) });
      expect(res.status, `${method} ${path}`).toBe(403);
    }
    const deny = await warden.admin('/v1/deny');
    expect((deny.json as { domains: unknown[] }).domains).toEqual([]);
  });

  it('nothing a viewer tried is in the audit log', async () => {
    const audit = ((await warden.admin('/v1/audit')).json as { audit: { actor: string }[] }).audit;
    expect(audit.filter((a) => a.actor === 'vera')).toEqual([]);
  });

  it('the CLI with a viewer token: release fails in one line naming the 403, exit non-zero', async () => {
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((ok) => {
      execFile(process.execPath, [CLI, 'quarantine', 'release', quarantineId, '--reason', 'viewer via cli', '--url', warden.adminUrl, '--token', TOKENS.viewer],
        { cwd: cliCwd, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, timeout: 20_000 },
        (err, stdout, stderr) => ok({ code: err === null ? 0 : Number((err as { code?: unknown }).code ?? -1), stdout, stderr }));
    });
    expect(r.code).toBe(77); // EX_NOPERM: the token may not do this
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^dnswarden: 403 ERR_FORBIDDEN a viewer token may not POST \/v1\/quarantines\/:id\/release\n$/);
  });
});

describe('runtime: registers and ends sessions, nothing else', () => {
  it('cannot read or decide (403)', async () => {
    for (const [method, path, body] of [
      ['GET', '/metrics'], ['GET', '/v1/quarantines'], ['GET', `/v1/quarantines/${quarantineId}`], ['GET', '/v1/sessions'], ['GET', '/v1/audit'],
      ['POST', `/v1/quarantines/${quarantineId}/release`, { reason: 'runtime tries' }],
    ] as [string, string, unknown?][]) {
      const res = await warden.admin(path, { method, token: TOKENS.runtime, ...(body !== undefined ? { body } : {}) });
      expect(res.status, `${method} ${path}`).toBe(403);
    }
  });

  it('registers a session (201): its address is answered; ends it (204): REFUSED again', async () => {
    const before = await query({ server: warden.dns, bind: '127.0.0.7', name: FIXTURE.a.name, type: 'A' });
    expect(before.rcode).toBe('REFUSED');
    expect(before.ede?.code).toBe(18);
    const reg = await warden.admin('/v1/sessions', { method: 'POST', token: TOKENS.runtime, body: { token: await registrationJwt('rt-1', '127.0.0.7/32') } });
    expect(reg.status, reg.text).toBe(201);
    expect((reg.json as { session: unknown }).session).toMatchObject({ id: 'rt-1', user: 'rt-user', type: 'interactive', origin: 'registered' });
    const during = await query({ server: warden.dns, bind: '127.0.0.7', name: FIXTURE.a.name, type: 'A' });
    expect(during.rcode).toBe('NOERROR');
    const end = await warden.admin('/v1/sessions/rt-1', { method: 'DELETE', token: TOKENS.runtime });
    expect(end.status).toBe(204);
    const after = await query({ server: warden.dns, bind: '127.0.0.7', name: FIXTURE.a.name, type: 'A' });
    expect(after.rcode).toBe('REFUSED');
  });
});

describe('analyst: reads and decides, but does not register sessions or flush the cache', () => {
  it('cannot register (403) or flush the cache (403: admin only)', async () => {
    const reg = await warden.admin('/v1/sessions', { method: 'POST', token: TOKENS.analyst, body: { token: await registrationJwt('analyst-made', '127.0.0.8/32') } });
    expect(reg.status).toBe(403);
    const flush = await warden.admin('/v1/cache/flush', { method: 'POST', token: TOKENS.analyst });
    expect(flush.status).toBe(403);
  });

  it('releases (200): the session is answered again and the audit names the analyst', async () => {
    const res = await warden.admin(`/v1/quarantines/${quarantineId}/release`, { method: 'POST', token: TOKENS.analyst, body: { reason: 'analyst decides' } });
    expect(res.status, res.text).toBe(200);
    expect((res.json as { quarantine: unknown }).quarantine).toMatchObject({ id: quarantineId, state: 'released', decided_by: 'alice', decision_reason: 'analyst decides' });
    const reply = await query({ server: warden.dns, bind: '127.0.0.2', name: FIXTURE.a.name, type: 'A' });
    expect(reply.rcode).toBe('NOERROR');
    const audit = ((await warden.admin('/v1/audit', { token: TOKENS.viewer })).json as { audit: { actor: string; action: string; target: string; reason: string }[] }).audit;
    expect(audit[0]).toMatchObject({ actor: 'alice', action: 'quarantine.release', target: quarantineId, reason: 'analyst decides' });
  });

  it('a release without a reason is refused (400) and changes nothing', async () => {
    const again = await quarantineBatchSession();
    const res = await warden.admin(`/v1/quarantines/${again}/release`, { method: 'POST', token: TOKENS.analyst, body: {} });
    expect(res.status).toBe(400);
    expect(errorCode(res.json)).toBe('ERR_BAD_REQUEST');
    const q = await warden.admin(`/v1/quarantines/${again}`);
    expect((q.json as { quarantine: { state: string } }).quarantine.state).toBe('open');
  });
});
