// A quarantine cannot be shed: ending the quarantined session and registering a new session id on the same
// address (or for the same user) comes up gated under the existing quarantine, until an analyst releases it.
// Real signed registrations (HS256 JWT) over the admin API, queries over real sockets, a real NSD upstream.
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { query } from '../helpers/dns-client.js';
import { startWarden, type Warden } from '../helpers/warden.js';
import { base32Label } from '../helpers/exfil.js';

const HS_SECRET = 'follow-registration-secret-0123456789abcdef';
const HS_KEY = new TextEncoder().encode(HS_SECRET);

let upstream: Upstream;
let warden: Warden;

beforeAll(async () => {
  upstream = await startUpstream();
  warden = await startWarden({ sessions: { signing_keys: [{ kid: 'runtime-hs', alg: 'HS256', secret: HS_SECRET }] } }, { upstream });
});

afterAll(async () => {
  await warden?.close();
  await upstream?.stop();
});

async function register(sid: string, user: string, address: string): Promise<{ status: number; session: { id: string; quarantine: string | null } }> {
  const token = await new SignJWT({ sid, user, role: 'agent', session_type: 'batch', addresses: [`${address}/32`], exp: Math.floor(Date.now() / 1000) + 600 })
    .setProtectedHeader({ alg: 'HS256', kid: 'runtime-hs' })
    .sign(HS_KEY);
  const r = await warden.admin('/v1/sessions', { method: 'POST', body: { token } });
  return { status: r.status, session: (r.json as { session: { id: string; quarantine: string | null } }).session };
}

const ask = (bind: string) => query({ server: warden.dns, bind, name: FIXTURE.a.name, type: 'A' });

async function expectHeld(bind: string, id: string): Promise<void> {
  const reply = await ask(bind);
  expect(reply.rcode, bind).toBe('NXDOMAIN');
  expect(reply.ede, bind).toEqual({ code: 15, text: `session quarantined (${id})` });
}

async function expectAnswered(bind: string): Promise<void> {
  const reply = await ask(bind);
  expect(reply.rcode, bind).toBe('NOERROR');
  expect(reply.answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
}

describe('a held quarantine follows the address and the user of the session it was raised on', () => {
  let qid: string;

  it('quarantines a registered session that exfiltrates', async () => {
    expect((await register('agent-1', 'mallory', '127.0.0.11')).status).toBe(201);
    await expectAnswered('127.0.0.11');
    for (let i = 0; i < 8 && qid === undefined; i++) {
      const reply = await query({ server: warden.dns, bind: '127.0.0.11', name: `${base32Label(`follow-${i}`)}.exfil-follow.test`, type: 'TXT' });
      qid = /^session quarantined \((qr-[^)]+)\)/.exec(reply.ede?.text ?? '')?.[1] as string;
    }
    expect(qid).toMatch(/^qr-/);
  });

  it('ending it and registering a new session id on the same address: gated under the same quarantine', async () => {
    expect((await warden.admin('/v1/sessions/agent-1', { method: 'DELETE' })).status).toBe(204);
    const again = await register('agent-2', 'someone-else', '127.0.0.11');
    expect(again.status).toBe(201);
    expect(again.session.quarantine).toBe(qid);
    await expectHeld('127.0.0.11', qid);
  });

  it('a new session for the same user on another address: gated too; an unrelated one is not', async () => {
    const sameUser = await register('agent-3', 'mallory', '127.0.0.12');
    expect(sameUser.session.quarantine).toBe(qid);
    await expectHeld('127.0.0.12', qid);
    const bystander = await register('agent-5', 'bystander', '127.0.0.13');
    expect(bystander.session.quarantine).toBeNull();
    await expectAnswered('127.0.0.13');
  });

  it('the quarantine lists the sessions it holds; no new quarantine is raised', async () => {
    const shown = (await warden.admin(`/v1/quarantines/${qid}`)).json as { quarantine: { session: { id: string }; gated_sessions: { id: string; user: string; matched: string }[] } };
    expect(shown.quarantine.session.id).toBe('agent-1');
    expect(shown.quarantine.gated_sessions.map((g) => [g.id, g.user, g.matched])).toEqual([['agent-2', 'someone-else', 'address'], ['agent-3', 'mallory', 'user']]);
    const open = (await warden.admin('/v1/quarantines?state=open')).json as { quarantines: { id: string }[] };
    expect(open.quarantines.map((q) => q.id)).toEqual([qid]);
    const byUser = (await warden.admin('/v1/quarantines?user=someone-else')).json as { quarantines: { id: string }[] };
    expect(byUser.quarantines.map((q) => q.id)).toEqual([qid]);
  });

  it('the address of a session gated under it counts too: shedding the follower sheds nothing', async () => {
    expect((await warden.admin('/v1/sessions/agent-3', { method: 'DELETE' })).status).toBe(204);
    const next = await register('agent-4', 'trudy', '127.0.0.12');
    expect(next.status).toBe(201);
    expect(next.session.quarantine).toBe(qid);
    await expectHeld('127.0.0.12', qid);
    const sessions = (await warden.admin('/v1/sessions')).json as { sessions: { id: string; quarantine: string | null }[] };
    expect(sessions.sessions.filter((s) => s.quarantine === qid).map((s) => s.id).sort()).toEqual(['agent-2', 'agent-4']);
  });

  it('confirmed, it still holds them all; released, every one of them is answered again', async () => {
    expect((await warden.admin(`/v1/quarantines/${qid}/confirm`, { method: 'POST', body: { reason: 'exfil' } })).status).toBe(200);
    await expectHeld('127.0.0.11', qid);
    await expectHeld('127.0.0.12', qid);
    expect((await warden.admin(`/v1/quarantines/${qid}/release`, { method: 'POST', body: { reason: 'agent rebuilt from a clean image' } })).status).toBe(200);
    await expectAnswered('127.0.0.11');
    await expectAnswered('127.0.0.12');
    // once released it follows nothing: a new registration for the user is answered
    const later = await register('agent-6', 'mallory', '127.0.0.14');
    expect(later.session.quarantine).toBeNull();
    await expectAnswered('127.0.0.14');
  });
});
