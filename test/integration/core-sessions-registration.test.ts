// Issue 2, sessions: a source with no live session is REFUSED with EDE 18; the agent runtime
// registers sessions with a signed JWT (HS256 or EdDSA) and every bad token is a 4xx JSON error
// naming why, with nothing registered; DELETE ends a session at once; SIGHUP-style reload swaps
// static sessions without dropping queries.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/ops/config.js';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { query, type Transport } from '../helpers/dns-client.js';
import { dig } from '../helpers/dig.js';
import { metricValue, startWarden, TEST_SESSION, deepMerge, type Warden } from '../helpers/warden.js';

const HS_SECRET = 'registration-secret-for-tests-0123456789';
const ed = generateKeyPairSync('ed25519');
const otherEd = generateKeyPairSync('ed25519');
const HS_KEY = new TextEncoder().encode(HS_SECRET);

let upstream: Upstream;
let warden: Warden;

beforeAll(async () => {
  upstream = await startUpstream();
  warden = await startWarden(
    {
      sessions: {
        signing_keys: [
          { kid: 'runtime-hs', alg: 'HS256', secret: HS_SECRET },
          { kid: 'runtime-ed', alg: 'EdDSA', public_key: ed.publicKey.export({ type: 'spki', format: 'pem' }).toString() },
        ],
      },
    },
    { upstream },
  );
});

afterAll(async () => {
  await warden?.close();
  await upstream?.stop();
});

interface Claims {
  sid?: unknown;
  user?: unknown;
  role?: unknown;
  session_type?: unknown;
  addresses?: unknown;
  exp?: unknown;
  [k: string]: unknown;
}

const nowS = (): number => Math.floor(Date.now() / 1000);

function claimsFor(sid: string, address: string, extra: Claims = {}): Claims {
  return { sid, user: 'alice', role: 'researcher', session_type: 'interactive', addresses: [`${address}/32`], exp: nowS() + 600, ...extra };
}

async function signHs(claims: Claims, opts: { kid?: string; secret?: Uint8Array } = {}): Promise<string> {
  const jwt = new SignJWT(claims as Record<string, unknown>).setProtectedHeader({ alg: 'HS256', kid: opts.kid ?? 'runtime-hs' });
  return jwt.sign(opts.secret ?? HS_KEY);
}

async function signEd(claims: Claims, opts: { kid?: string; key?: KeyObject } = {}): Promise<string> {
  const jwt = new SignJWT(claims as Record<string, unknown>).setProtectedHeader({ alg: 'EdDSA', kid: opts.kid ?? 'runtime-ed' });
  return jwt.sign(opts.key ?? ed.privateKey);
}

const register = (token: string, adminToken?: string | null) =>
  warden.admin('/v1/sessions', { method: 'POST', body: { token }, ...(adminToken === undefined ? {} : { token: adminToken }) });

async function expectRefused(bind: string, transport: Transport = 'udp'): Promise<void> {
  const reply = await query({ server: warden.dns, transport, bind, name: FIXTURE.a.name, type: 'A' });
  expect(reply.rcode).toBe('REFUSED');
  expect(reply.answers).toEqual([]);
  expect(reply.ede).toEqual({ code: 18, text: expect.stringContaining('no session') });
}

async function expectAnswered(bind: string, transport: Transport = 'udp'): Promise<void> {
  const reply = await query({ server: warden.dns, transport, bind, name: FIXTURE.a.name, type: 'A' });
  expect(reply.rcode).toBe('NOERROR');
  expect(reply.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
}

function errorOf(json: unknown): { code: string; message: string } {
  const err = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  expect(err, `expected a JSON body { error: { code, message } }, got ${JSON.stringify(json)}`).toBeDefined();
  expect(typeof err!.code).toBe('string');
  expect(typeof err!.message).toBe('string');
  return { code: err!.code as string, message: err!.message as string };
}

describe('refusal of unknown sources', () => {
  it.each<Transport>(['udp', 'tcp'])('an address with no session gets REFUSED + EDE 18 over %s', async (transport) => {
    await expectRefused('127.0.0.2', transport);
  });

  it('the static session address is answered', async () => {
    await expectAnswered('127.0.0.1');
  });

  it('refuses even a name that is in the cache', async () => {
    await expectAnswered('127.0.0.1'); // cached now
    await expectRefused('127.0.0.2');
  });

  it('dig -b 127.0.0.2 shows status REFUSED and EDE 18 (Prohibited) with a reason', async () => {
    const out = await dig({ server: warden.dns, bind: '127.0.0.2', name: FIXTURE.a.name, type: 'A' });
    expect(out.status).toBe('REFUSED');
    expect(out.ede?.code).toBe(18);
    expect(out.ede?.text).toContain('no session');
  });
});

describe('registration with a signed token', () => {
  it('a good HS256 token registers the session (201) and its address is answered at once', async () => {
    await expectRefused('127.0.0.3');
    const before = metricValue(await warden.app.metricsText(), 'dnswarden_sessions_live');
    const res = await register(await signHs(claimsFor('hs-session', '127.0.0.3')));
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ session: { id: 'hs-session' } });
    await expectAnswered('127.0.0.3');
    await expectAnswered('127.0.0.3', 'tcp');
    expect(metricValue(await warden.app.metricsText(), 'dnswarden_sessions_live')).toBe((before ?? 0) + 1);
  });

  it('a good EdDSA token registers the session', async () => {
    await expectRefused('127.0.0.4');
    const res = await register(await signEd(claimsFor('ed-session', '127.0.0.4', { session_type: 'batch' })));
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ session: { id: 'ed-session' } });
    await expectAnswered('127.0.0.4');
  });

  const cases: ReadonlyArray<{ title: string; address: string; token: () => Promise<string>; status: readonly number[]; code: string; mentions?: RegExp }> = [
    { title: 'HS256 signed with another secret', address: '127.0.0.10', token: () => signHs(claimsFor('bad-hs', '127.0.0.10'), { secret: new TextEncoder().encode('a-different-secret-of-enough-length-000') }), status: [400, 401], code: 'ERR_BAD_SIGNATURE' },
    { title: 'EdDSA signed with another private key', address: '127.0.0.11', token: () => signEd(claimsFor('bad-ed', '127.0.0.11'), { key: otherEd.privateKey }), status: [400, 401], code: 'ERR_BAD_SIGNATURE' },
    { title: 'EdDSA token presented under the HS256 kid', address: '127.0.0.12', token: () => signEd(claimsFor('alg-swap', '127.0.0.12'), { kid: 'runtime-hs' }), status: [400, 401], code: 'ERR_BAD_SIGNATURE' },
    { title: 'an unknown kid', address: '127.0.0.13', token: () => signHs(claimsFor('unknown-kid', '127.0.0.13'), { kid: 'no-such-key' }), status: [400, 401], code: 'ERR_UNKNOWN_KEY', mentions: /no-such-key/ },
    { title: 'an expired token', address: '127.0.0.14', token: () => signHs(claimsFor('expired', '127.0.0.14', { exp: nowS() - 60 })), status: [400, 401], code: 'ERR_TOKEN_EXPIRED' },
    { title: 'a missing claim (user)', address: '127.0.0.15', token: () => signHs(claimsFor('no-user', '127.0.0.15', { user: undefined })), status: [400], code: 'ERR_BAD_CLAIMS', mentions: /user/ },
    { title: 'a bad session_type', address: '127.0.0.16', token: () => signHs(claimsFor('bad-type', '127.0.0.16', { session_type: 'robot' })), status: [400], code: 'ERR_BAD_CLAIMS', mentions: /session_type/ },
    { title: 'addresses that are not CIDRs', address: '127.0.0.17', token: () => signHs({ ...claimsFor('bad-addr', '127.0.0.17'), addresses: ['127.0.0.17/33', 'not-an-ip'] }), status: [400], code: 'ERR_BAD_CLAIMS', mentions: /addresses/ },
    { title: 'no exp claim', address: '127.0.0.18', token: () => signHs(claimsFor('no-exp', '127.0.0.18', { exp: undefined })), status: [400, 401], code: 'ERR_BAD_CLAIMS', mentions: /exp/ },
    { title: 'a string that is not a JWT', address: '127.0.0.19', token: async () => 'not.a-jwt', status: [400, 401], code: 'ERR_BAD_TOKEN' },
  ];

  it.each(cases)('rejects $title: 4xx JSON error saying which, nothing registered', async ({ address, token, status, code, mentions }) => {
    const res = await register(await token());
    expect(status).toContain(res.status);
    const err = errorOf(res.json);
    expect(err.code).toBe(code);
    if (mentions !== undefined) expect(err.message).toMatch(mentions);
    await expectRefused(address);
  });

  it('rejects an address already owned by another live session with 409, and the owner keeps it', async () => {
    const first = await register(await signHs(claimsFor('owner', '127.0.0.20')));
    expect(first.status).toBe(201);
    const second = await register(await signEd(claimsFor('intruder', '127.0.0.20')));
    expect(second.status).toBe(409);
    expect(errorOf(second.json).code).toBe('ERR_SESSION_CONFLICT');
    expect(errorOf(second.json).message).toContain('owner');
    await expectAnswered('127.0.0.20');
    // The intruder was not registered: deleting it is a 404.
    expect((await warden.admin('/v1/sessions/intruder', { method: 'DELETE' })).status).toBe(404);
  });

  it('rejects an address inside the static session (127.0.0.1) with 409', async () => {
    const res = await register(await signHs(claimsFor('steal-static', '127.0.0.1')));
    expect(res.status).toBe(409);
    expect(errorOf(res.json).code).toBe('ERR_SESSION_CONFLICT');
  });

  it('rejects a claim over sessions.max_addresses_per_session (128.0.0.0/1) with 400, registering nothing', async () => {
    const res = await register(await signHs(claimsFor('half-the-internet', '127.0.0.22', { addresses: ['128.0.0.0/1'] })));
    expect(res.status).toBe(400);
    expect(errorOf(res.json)).toMatchObject({ code: 'ERR_BAD_CLAIMS', message: expect.stringContaining('max_addresses_per_session') });
    expect((await warden.admin('/v1/sessions/half-the-internet')).status).toBe(404);
  });

  it('rejects a range containing the static session (127.0.0.0/24) with 409, and its IPv4-mapped form too', async () => {
    for (const addresses of [['127.0.0.0/24'], ['::ffff:127.0.0.0/120']]) {
      const res = await register(await signHs(claimsFor('around-static', '127.0.0.23', { addresses })));
      expect(res.status).toBe(409);
      expect(errorOf(res.json)).toMatchObject({ code: 'ERR_SESSION_CONFLICT', message: expect.stringContaining(TEST_SESSION.id) });
    }
    await expectAnswered('127.0.0.1');
    await expectRefused('127.0.0.23');
  });

  it('needs the admin token: none or a wrong one is 401 and registers nothing', async () => {
    const token = await signHs(claimsFor('no-admin', '127.0.0.21'));
    expect((await register(token, null)).status).toBe(401);
    expect((await register(token, 'wrong-admin-token-xxxxxxxx')).status).toBe(401);
    await expectRefused('127.0.0.21');
  });

  it('rejects a body without a token (400) and a non-JSON body (400)', async () => {
    const empty = await warden.admin('/v1/sessions', { method: 'POST', body: {} });
    expect(empty.status).toBe(400);
    errorOf(empty.json);
    const junk = await warden.admin('/v1/sessions', { method: 'POST', body: '{not json' });
    expect(junk.status).toBe(400);
    errorOf(junk.json);
  });
});

describe('ending a session', () => {
  it('DELETE /v1/sessions/:id → 204 and the very next query is REFUSED (even for a cached name)', async () => {
    const res = await register(await signHs(claimsFor('short-lived', '127.0.0.30')));
    expect(res.status).toBe(201);
    await expectAnswered('127.0.0.30'); // name now cached
    const del = await warden.admin('/v1/sessions/short-lived', { method: 'DELETE' });
    expect(del.status).toBe(204);
    await expectRefused('127.0.0.30');
    await expectRefused('127.0.0.30', 'tcp');
    expect((await warden.admin('/v1/sessions/short-lived', { method: 'DELETE' })).status).toBe(404);
  });

  it('DELETE of an unknown id → 404 JSON error; without the admin token → 401', async () => {
    const res = await warden.admin('/v1/sessions/never-registered', { method: 'DELETE' });
    expect(res.status).toBe(404);
    errorOf(res.json);
    expect((await warden.admin('/v1/sessions/hs-session', { method: 'DELETE', token: null })).status).toBe(401);
    await expectAnswered('127.0.0.3');
  });

  it('the token of an ended session is refused if posted again (401 ERR_TOKEN_REVOKED), renewed or not; a new token registers again', async () => {
    const first = await signHs(claimsFor('replayed', '127.0.0.32', { iat: nowS() - 5 }));
    const renewal = await signEd(claimsFor('replayed', '127.0.0.32', { jti: 'renewal-1', exp: nowS() + 900 }));
    expect((await register(first)).status).toBe(201);
    expect((await register(renewal)).status).toBe(201);
    expect((await warden.admin('/v1/sessions/replayed', { method: 'DELETE' })).status).toBe(204);
    for (const token of [first, renewal]) {
      const res = await register(token);
      expect(res.status).toBe(401);
      expect(errorOf(res.json)).toMatchObject({ code: 'ERR_TOKEN_REVOKED', message: expect.stringContaining('"replayed"') });
      await expectRefused('127.0.0.32');
    }
    expect(metricValue(await warden.app.metricsText(), 'dnswarden_registrations_total', { result: 'token_revoked' })).toBe(2);
    // The runtime may start the session again with a token it signs anew.
    const again = await register(await signHs(claimsFor('replayed', '127.0.0.32', { jti: 'second-start' })));
    expect(again.status).toBe(201);
    await expectAnswered('127.0.0.32');
  });

  it('the freed address can be registered by a new session', async () => {
    const res = await register(await signEd(claimsFor('successor', '127.0.0.30')));
    expect(res.status).toBe(201);
    await expectAnswered('127.0.0.30');
  });

  it('a session registered with a near expiry stops being answered after it', async () => {
    const res = await register(await signHs(claimsFor('expiring', '127.0.0.31', { exp: nowS() + 2 })));
    expect(res.status).toBe(201);
    await expectAnswered('127.0.0.31');
    await new Promise((ok) => setTimeout(ok, 3100));
    await expectRefused('127.0.0.31');
  });
});

describe('reload (the SIGHUP path)', () => {
  it('replaces static sessions without dropping a query in flight', async () => {
    await expectRefused('127.0.0.40');
    const next = parseConfig(
      deepMerge(warden.config, { sessions: { static: [{ ...TEST_SESSION, addresses: ['127.0.0.1/32', '127.0.0.40/32'] }] } }),
    );
    // 200 queries from the static address in flight around the reload: every one answered.
    const inflight = Array.from({ length: 200 }, (_, i) =>
      query({ server: warden.dns, name: i % 2 === 0 ? FIXTURE.a.name : FIXTURE.aaaa.name, type: i % 2 === 0 ? 'A' : 'AAAA', timeoutMs: 5000 }),
    );
    await warden.app.reload(next);
    const replies = await Promise.all(inflight);
    expect(replies.filter((r) => r.rcode !== 'NOERROR')).toEqual([]);
    await expectAnswered('127.0.0.40');
    // Registered sessions survive a reload of static ones.
    await expectAnswered('127.0.0.3');
  });
});
