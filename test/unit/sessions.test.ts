// SessionDirectory as pure logic with an injected clock: who owns an address over time.
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.js';
import { SessionDirectory } from '../../src/sessions/directory.js';
import { loadSigningKeys } from '../../src/sessions/credentials.js';
import { Store } from '../../src/store.js';

const SECRET = 'unit-test-registration-secret-0123456789';

async function directory() {
  const keys = await loadSigningKeys([{ kid: 'k1', alg: 'HS256', secret: SECRET }]);
  return new SessionDirectory<{ n: number }>({ newState: () => ({ n: 0 }), historyMax: 3, keys, maxTtlSec: 3600 });
}

function token(sid: string, addresses: string[], expSec: number): Promise<string> {
  return new SignJWT({ sid, user: 'u', role: 'r', session_type: 'batch', addresses })
    .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
    .setExpirationTime(expSec)
    .sign(new TextEncoder().encode(SECRET));
}

describe('SessionDirectory', () => {
  it('adopts a session registered elsewhere without the addresses a static session here overlaps (nested either way, any spelling)', async () => {
    const d = await directory();
    const t0 = Date.now();
    d.setStatic([{ id: 'st', addresses: ['10.20.0.0/24', '::ffff:10.21.0.7/128'], type: 'batch', user: 'u', role: 'r' }], t0);
    const meta = { id: 'r1', user: 'u', role: 'r', type: 'batch' as const, origin: 'registered' as const, expiresAtMs: t0 + 60_000, registeredAtMs: t0 };
    const { meta: kept, refused } = d.withoutStatic({ ...meta, addresses: ['10.20.0.5/32', '10.21.0.7', '10.0.0.0/8', '10.22.0.1/32'] });
    expect(kept?.addresses).toEqual(['10.22.0.1/32']);
    expect(refused).toEqual([{ address: '10.20.0.5/32', staticId: 'st' }, { address: '10.21.0.7', staticId: 'st' }, { address: '10.0.0.0/8', staticId: 'st' }]);
    d.adopt({ ...meta, addresses: ['10.20.0.5/32', '10.22.0.1/32'] });
    expect(d.admit('10.20.0.5', t0)).toMatchObject({ session: { id: 'st' } });
    expect(d.admit('10.22.0.1', t0)).toMatchObject({ session: { id: 'r1' } });
    // A renewal left with nothing here drops what was adopted before.
    d.adopt({ ...meta, addresses: ['10.20.0.6/32'] });
    expect(d.get('r1')).toBeUndefined();
    expect(d.admit('10.22.0.1', t0)).toEqual({ refused: 'no_session' });
  });

  it('hands an address to a new session once the old one has expired, even if the old was looked up before', async () => {
    const d = await directory();
    const t0 = 1_800_000_000_000;
    await d.register(await token('old', ['10.1.0.5/32'], t0 / 1000 + 60), t0);
    expect(d.admit('10.1.0.5', t0)).toMatchObject({ session: { id: 'old' } });
    const later = t0 + 61_000;
    expect(d.admit('10.1.0.5', later)).toEqual({ refused: 'expired' });
    await d.register(await token('new', ['10.1.0.5/32'], later / 1000 + 60), later);
    expect(d.admit('10.1.0.5', later)).toMatchObject({ session: { id: 'new' } });
  });

  it('refuses an address owned by another live session, and names the owner', async () => {
    const d = await directory();
    const t0 = 1_800_000_000_000;
    await d.register(await token('a', ['10.2.0.0/24'], t0 / 1000 + 60), t0);
    await expect(d.register(await token('b', ['10.2.0.7/32'], t0 / 1000 + 60), t0)).rejects.toThrow(/already owned by live session "a"/);
    expect(d.admit('10.2.0.7', t0)).toMatchObject({ session: { id: 'a' } });
  });

  it('refuses a claim over the address cap (default 256), counting every CIDR, and accepts one at the cap', async () => {
    const d = await directory();
    const t0 = 1_800_000_000_000;
    const exp = t0 / 1000 + 60;
    await expect(d.register(await token('wide', ['128.0.0.0/1'], exp), t0)).rejects.toMatchObject({ code: 'ERR_BAD_CLAIMS', message: expect.stringMatching(/addresses.*256/) });
    await expect(d.register(await token('wide6', ['2001:db8::/64'], exp), t0)).rejects.toMatchObject({ code: 'ERR_BAD_CLAIMS' });
    await expect(d.register(await token('sum', ['10.9.0.0/24', '10.9.1.1/32'], exp), t0)).rejects.toMatchObject({ code: 'ERR_BAD_CLAIMS' });
    expect(d.admit('128.0.0.1', t0)).toEqual({ refused: 'no_session' });
    await d.register(await token('v4', ['10.9.0.0/24'], exp), t0);
    await d.register(await token('v6', ['2001:db8::/120'], exp), t0);
    expect(d.admit('10.9.0.255', t0)).toMatchObject({ session: { id: 'v4' } });
    expect(d.admit('2001:db8::ff', t0)).toMatchObject({ session: { id: 'v6' } });
    d.setKeys(await loadSigningKeys([{ kid: 'k1', alg: 'HS256', secret: SECRET }]), 3600, 1);
    await expect(d.register(await token('two', ['10.8.0.0/31'], exp), t0)).rejects.toMatchObject({ code: 'ERR_BAD_CLAIMS' });
  });

  it('refuses overlap with a static session, whichever contains the other, and through the IPv4-mapped form', async () => {
    const d = await directory();
    const t0 = 1_800_000_000_000;
    const exp = t0 / 1000 + 60;
    d.setStatic([{ id: 'st', addresses: ['10.7.0.9/32', '2001:db8:7::/126'], type: 'batch', user: 'u', role: 'r' }], t0);
    for (const claim of ['10.7.0.0/24', '10.7.0.9', '::ffff:10.7.0.9', '::ffff:10.7.0.0/120', '2001:db8:7::2', '2001:db8:7::/120']) {
      await expect(d.register(await token('x', [claim], exp), t0), claim).rejects.toMatchObject({ code: 'ERR_SESSION_CONFLICT', message: expect.stringContaining('"st"') });
    }
    expect(d.get('x')).toBeUndefined();
    await d.register(await token('x', ['10.7.1.0/24'], exp), t0);
    expect(d.admit('10.7.1.9', t0)).toMatchObject({ session: { id: 'x' } });
  });

  it('refuses a reload whose static addresses overlap a live registered session, naming the field, and keeps the running sessions', async () => {
    const d = await directory();
    const t0 = 1_800_000_000_000;
    d.setStatic([{ id: 'st', addresses: ['10.12.0.1/32'], type: 'batch', user: 'u', role: 'r' }], t0);
    await d.register(await token('reg', ['10.12.1.5/32'], t0 / 1000 + 60), t0);
    for (const addresses of [['10.12.1.0/24'], ['10.12.0.1/32', '::ffff:10.12.1.5']]) {
      expect(() => d.setStatic([{ id: 'st', addresses, type: 'batch', user: 'u', role: 'r' }], t0)).toThrow(/sessions\.static\[0\]\.addresses\[\d\].*"reg"/);
    }
    expect(d.admit('10.12.1.5', t0)).toMatchObject({ session: { id: 'reg' } });
    expect(d.admit('10.12.0.1', t0)).toMatchObject({ session: { id: 'st' } });
    // Once the registration has expired the range is free for config.
    d.setStatic([{ id: 'st', addresses: ['10.12.1.0/24'], type: 'batch', user: 'u', role: 'r' }], t0 + 61_000);
    expect(d.admit('10.12.1.5', t0 + 61_000)).toMatchObject({ session: { id: 'st' } });
  });

  it('keeps the running static sessions when a reload is invalid, and their state when it is valid', async () => {
    const d = await directory();
    const t0 = 1_800_000_000_000;
    d.setStatic([{ id: 'ci', addresses: ['10.3.0.1/32'], type: 'batch', user: 'ci', role: 'builder' }], t0);
    const ci = (d.admit('10.3.0.1', t0) as { session: { state: { n: number } } }).session;
    ci.state.n = 7;
    await d.register(await token('reg', ['10.4.0.1/32'], t0 / 1000 + 60), t0);
    expect(() => d.setStatic([{ id: 'reg', addresses: ['10.5.0.1/32'], type: 'batch', user: 'x', role: 'y' }], t0)).toThrow(ConfigError);
    expect(d.admit('10.3.0.1', t0)).toMatchObject({ session: { id: 'ci' } });
    d.setStatic([{ id: 'ci', addresses: ['10.3.0.1/32', '10.3.0.2/32'], type: 'batch', user: 'ci', role: 'builder' }], t0);
    expect(d.admit('10.3.0.2', t0)).toMatchObject({ session: { id: 'ci', state: { n: 7 } } });
  });

  it('counts live sessions exactly through registrations, renewals, expiries, ends and sweeps', async () => {
    const d = await directory();
    const t0 = 1_800_000_000_000;
    d.setStatic([{ id: 'st', addresses: ['10.10.0.1/32'], type: 'batch', user: 'u', role: 'r' }], t0);
    const scan = (now: number): number => d.list().filter((s) => s.expiresAtMs > now).length;
    const check = (now: number): void => expect(d.liveCount(now), `at +${now - t0} ms`).toBe(scan(now));
    check(t0);
    await d.register(await token('a', ['10.10.1.1/32'], t0 / 1000 + 10), t0);
    check(t0);
    await d.register(await token('b', ['10.10.1.2/32'], t0 / 1000 + 20), t0);
    check(t0 + 1);
    check(t0 + 10_000); // a expired, not swept
    await d.register(await token('c', ['10.10.1.1/32'], t0 / 1000 + 30), t0 + 10_000); // a's address, a new session
    check(t0 + 10_001);
    await d.register(await token('b', ['10.10.1.2/32'], t0 / 1000 + 40), t0 + 10_002); // renewal
    check(t0 + 10_003);
    expect(d.deregister('c')).toBe(true);
    check(t0 + 10_004);
    expect(d.sweepExpired(t0 + 10_005)).toBe(1);
    check(t0 + 10_006);
    check(t0 + 40_000);
    d.setStatic([], t0 + 40_001);
    check(t0 + 40_002);
    expect(d.liveCount(t0 + 40_003)).toBe(0);
  });

  it('remembers the tokens of ended sessions in the store across a restart, each until the token expires', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-sessions-unit-'));
    const store = Store.open(dir);
    try {
      const keys = await loadSigningKeys([{ kid: 'k1', alg: 'HS256', secret: SECRET }]);
      const open = () => new SessionDirectory<{ n: number }>({
        newState: () => ({ n: 0 }), historyMax: 3, keys, maxTtlSec: 3600,
        hooks: {
          saveRegistered: (m, t) => store.saveRegisteredSession(m, t), deleteRegistered: (id, at) => store.deleteRegisteredSession(id, at),
          endedToken: (id) => store.endedToken(id), loadHistory: () => [],
        },
      });
      const rows = (): number => (store.db.prepare('SELECT COUNT(*) AS n FROM registration_tokens').get() as { n: number }).n;
      const t0 = 1_800_000_000_000;
      const d = open();
      const ended = await token('ended', ['10.11.0.1/32'], t0 / 1000 + 600);
      const lapsed = await token('lapsed', ['10.11.0.2/32'], t0 / 1000 + 60);
      await d.register(ended, t0);
      await d.register(ended, t0 + 1); // the same token again (a renewal) is one row
      await d.register(lapsed, t0);
      expect(rows()).toBe(2);
      expect(d.deregister('ended', t0 + 2)).toBe(true);
      await expect(d.register(ended, t0 + 3)).rejects.toMatchObject({ code: 'ERR_TOKEN_REVOKED' });
      // A restart (a new directory on the same store) refuses it too.
      const restarted = open();
      restarted.restore(store.loadSessions(t0 + 4), t0 + 4);
      await expect(restarted.register(ended, t0 + 5)).rejects.toMatchObject({ code: 'ERR_TOKEN_REVOKED' });
      // Every row goes when its token expires, ended or not.
      expect(restarted.sweepExpired(t0 + 61_000)).toBe(1);
      expect(rows()).toBe(2);
      expect(store.pruneRegistrationTokens(t0 + 60_000)).toBe(1);
      expect(store.pruneRegistrationTokens(t0 + 599_999)).toBe(0);
      await expect(restarted.register(ended, t0 + 599_999)).rejects.toMatchObject({ code: 'ERR_TOKEN_REVOKED' });
      expect(store.pruneRegistrationTokens(t0 + 600_000)).toBe(1);
      expect(rows()).toBe(0);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps a bounded history per session', async () => {
    const d = await directory();
    d.setStatic([{ id: 'h', addresses: ['10.6.0.1/32'], type: 'interactive', user: 'u', role: 'r' }], 0);
    const s = d.get('h')!;
    for (let i = 0; i < 5; i++) d.remember(s, { atMs: i, name: `n${i}.example`, qtype: 1, action: 'answer', rule: 'none', rcode: 0, enforced: true });
    expect(s.history.map((e) => e.name)).toEqual(['n2.example', 'n3.example', 'n4.example']);
    expect(d.takeDirty().map((x) => x.id)).toEqual(['h']);
    expect(d.takeDirty()).toEqual([]);
  });

  it('counts a block like the last one on its history row (one row per flood), within the window only', async () => {
    const d = await directory();
    d.setStatic([{ id: 'f', addresses: ['10.7.0.1/32'], type: 'interactive', user: 'u', role: 'r' }], 0);
    const s = d.get('f')!;
    d.takeDirty();
    // Nothing to count on yet.
    expect(d.repeatLast(s, 'nxdomain', 'quarantined', true, 3, 0, 1000)).toBe(false);
    d.remember(s, { atMs: 0, name: 'a.example', qtype: 1, action: 'nxdomain', rule: 'quarantined', rcode: 3, enforced: true, eventId: 'qr-1' });
    d.takeDirty();
    for (let t = 1; t <= 4; t++) expect(d.repeatLast(s, 'nxdomain', 'quarantined', true, 3, t * 100, 1000)).toBe(true);
    expect(s.history).toHaveLength(1);
    expect(s.history[0]).toMatchObject({ name: 'a.example', count: 5, atMs: 0, lastAtMs: 400 });
    expect(d.takeDirty().map((x) => x.id)).toEqual(['f']); // the changed row is persisted with the next batch
    // Another kind, another rcode, or past the window: a row of its own.
    expect(d.repeatLast(s, 'nxdomain', 'deny_list', true, 3, 500, 1000)).toBe(false);
    expect(d.repeatLast(s, 'nxdomain', 'quarantined', false, 3, 500, 1000)).toBe(false);
    expect(d.repeatLast(s, 'nxdomain', 'quarantined', true, 0, 500, 1000)).toBe(false);
    expect(d.repeatLast(s, 'nxdomain', 'quarantined', true, 3, 1000, 1000)).toBe(false);
    expect(d.repeatLast(s, 'nxdomain', 'quarantined', true, 3, 999, 0)).toBe(false); // window 0: never counted
    expect(s.history[0]!.count).toBe(5);
  });

  it("adopts another worker's registration with its state kept, drops it at once, and never touches a static session", async () => {
    const d = await directory();
    const t0 = 1_800_000_000_000;
    d.setStatic([{ id: 'ci', addresses: ['10.4.0.1/32'], type: 'batch', user: 'u', role: 'r' }], t0);
    const meta = { id: 'pod', user: 'u', role: 'r', type: 'interactive' as const, addresses: ['10.4.0.9/32'], origin: 'registered' as const, expiresAtMs: t0 + 60_000, registeredAtMs: t0 };
    expect(d.admit('10.4.0.9', t0)).toEqual({ refused: 'no_session' });
    d.adopt(meta);
    const first = (d.admit('10.4.0.9', t0) as { session: { id: string; state: { n: number } } }).session;
    expect(first.id).toBe('pod');
    first.state.n = 5;
    d.adopt({ ...meta, expiresAtMs: t0 + 120_000 }); // a renewal keeps the window
    expect(d.admit('10.4.0.9', t0 + 90_000)).toMatchObject({ session: { id: 'pod', state: { n: 5 } } });
    d.adopt({ ...meta, id: 'ci', addresses: ['10.4.0.2/32'] }); // a static id is not overwritten by a peer
    expect(d.admit('10.4.0.2', t0)).toEqual({ refused: 'no_session' });
    d.drop('ci');
    expect(d.admit('10.4.0.1', t0)).toMatchObject({ session: { id: 'ci' } });
    d.drop('pod');
    expect(d.admit('10.4.0.9', t0)).toEqual({ refused: 'no_session' });
  });
});
