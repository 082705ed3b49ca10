// QuarantineBook with a real SQLite store: persist → gate → announce, and fail closed when the
// store refuses the write.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AlertEvent } from '../../src/analyst/alerts.js';
import type { Verdict } from '../../src/policy/judge.js';
import { QuarantineBook } from '../../src/analyst/quarantine.js';
import type { Session } from '../../src/sessions/directory.js';
import { Store } from '../../src/store.js';
import { createMetrics } from '../../src/ops/telemetry.js';
import type { Query } from '../../src/dns/wire.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'dnswarden-qb-'));
  dirs.push(dir);
  const store = Store.open(dir);
  const events: AlertEvent[] = [];
  const metrics = createMetrics();
  const book = new QuarantineBook(store, { emit: (e) => events.push(e) }, metrics, () => 1_000, () => undefined);
  return { dir, store, events, metrics, book };
}

const session: Session<unknown> = {
  id: 'job-1', user: 'u', role: 'r', type: 'batch', addresses: ['10.0.0.1/32'], origin: 'static', expiresAtMs: Infinity, registeredAtMs: 0, state: {}, history: [],
};
const verdict: Verdict = { action: 'quarantine', rule: 'threshold', enforced: true, mode: 'enforce', reason: '2 blocked in window' };
const query = { name: 'abc.exfil.example', type: 16, atMs: 1_000 } as unknown as Query;

describe('QuarantineBook', () => {
  it('persists, then gates, then announces; a second store sees the open quarantine', () => {
    const { dir, store, events, book } = setup();
    const record = book.raise(session, verdict, query, 'ev-1');
    expect(book.holds('job-1')).toBe(record.id);
    expect(events.map((e) => e.type)).toEqual(['quarantine_raised']);
    store.close();
    const reopened = Store.open(dir);
    expect(reopened.listQuarantines({ state: 'open' }).map((q) => q.id)).toEqual([record.id]);
    reopened.close();
  });

  it('fails closed and loses nothing: a refused write still gates, is kept, counted, retried, and alerted once saved', async () => {
    const { store, events, metrics, book } = setup();
    // A real store refusal: SQLite aborts every quarantine insert until the trigger is dropped.
    store.db.exec("CREATE TRIGGER refuse BEFORE INSERT ON quarantines BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END");
    const record = book.raise(session, verdict, query, 'ev-2');
    expect(book.holds('job-1')).toBe('qr-ev-2');
    expect(book.get('qr-ev-2')).toMatchObject({ id: 'qr-ev-2', state: 'open' });
    expect(book.isDurable(record.id)).toBe(false);
    expect(book.notDurable().map((q) => q.id)).toEqual(['qr-ev-2']);
    expect(book.unsaved()).toBe(1);
    expect(events).toEqual([]); // nothing announced that is not on disk
    expect(await metrics.registry.getSingleMetricAsString('dnswarden_sessions_quarantined')).toContain('dnswarden_sessions_quarantined 1');
    expect(await metrics.registry.getSingleMetricAsString('dnswarden_quarantine_writes_unsaved')).toContain('dnswarden_quarantine_writes_unsaved 1');
    expect(book.retryUnsaved()).toBe(1); // still refused
    store.db.exec('DROP TRIGGER refuse');
    expect(book.retryUnsaved()).toBe(0);
    expect(store.getQuarantine('qr-ev-2')).toMatchObject({ state: 'open', sessionId: 'job-1' });
    expect(book.isDurable(record.id)).toBe(true);
    expect(events.map((e) => [e.type, e.quarantine.id])).toEqual([['quarantine_raised', 'qr-ev-2']]);
    expect(await metrics.registry.getSingleMetricAsString('dnswarden_quarantine_writes_unsaved')).toContain('dnswarden_quarantine_writes_unsaved 0');
    book.close();
  });

  it('an alert the outbox refuses is kept and retried in order; a decision on an unsaved quarantine saves it', () => {
    const { store, metrics } = setup();
    const sent: string[] = [];
    let refuse = true;
    const alerts = { emit: (e: AlertEvent) => { if (refuse) throw new Error('SQLITE_FULL: database or disk is full'); sent.push(`${e.quarantine.id}:${e.type}`); } };
    const book = new QuarantineBook(store, alerts, metrics, () => 7_000, () => undefined);
    const saved = book.raise(session, verdict, query, 'ev-7');
    expect(store.getQuarantine(saved.id)?.state).toBe('open');
    expect(book.unsaved()).toBe(1); // its alert
    store.db.exec("CREATE TRIGGER refuse BEFORE INSERT ON quarantines BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END");
    const held = book.raise({ ...session, id: 'job-9' }, verdict, query, 'ev-8');
    expect(book.unsaved()).toBe(2);
    store.db.exec('DROP TRIGGER refuse');
    refuse = false;
    book.confirm(held.id, 'alice', 'exfil'); // stores the row and the decision together
    expect(store.getQuarantine(held.id)?.state).toBe('confirmed');
    expect(book.holds('job-9')).toBe(held.id);
    expect(book.retryUnsaved()).toBe(0);
    expect(sent).toEqual([`${saved.id}:quarantine_raised`, `${held.id}:quarantine_raised`, `${held.id}:quarantine_confirmed`]);
    book.close();
  });

  it("announces its own gate changes and applies another worker's without announcing them again", () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-qb-'));
    dirs.push(dir);
    const store = Store.open(dir);
    const announced: unknown[] = [];
    const reset: string[] = [];
    const book = new QuarantineBook(store, { emit: () => undefined }, createMetrics(), () => 2_000, (id) => reset.push(id), (c) => announced.push(c));
    const record = book.raise(session, verdict, query, 'ev-3');
    expect(announced).toEqual([{ state: 'open', sessionId: 'job-1', id: record.id }]);
    book.release(record.id, 'alice', 'benign');
    expect(announced).toEqual([{ state: 'open', sessionId: 'job-1', id: record.id }, { state: 'released', sessionId: 'job-1', id: record.id }]);
    expect(reset).toEqual(['job-1']);

    announced.length = 0;
    book.adopt({ state: 'open', sessionId: 'job-2', id: 'qr-peer' });
    expect(book.holds('job-2')).toBe('qr-peer');
    book.adopt({ state: 'released', sessionId: 'job-2', id: 'qr-other' }); // not the gate that holds it
    expect(book.holds('job-2')).toBe('qr-peer');
    book.adopt({ state: 'released', sessionId: 'job-2', id: 'qr-peer' });
    expect(book.holds('job-2')).toBeUndefined();
    expect(reset).toEqual(['job-1', 'job-2']);
    expect(announced).toEqual([]);
    store.close();
  });

  it('a confirmed quarantine still gates after a restart and outlives the retention sweep; a released one does not', () => {
    const { store, book } = setup();
    const confirmed = book.raise(session, verdict, query, 'ev-4');
    book.confirm(confirmed.id, 'alice', 'exfil');
    const released = book.raise({ ...session, id: 'job-2' }, verdict, query, 'ev-5');
    book.release(released.id, 'alice', 'benign');
    expect(store.deleteDecidedQuarantinesBefore(Number.MAX_SAFE_INTEGER)).toBe(1);
    expect(store.getQuarantine(confirmed.id)?.state).toBe('confirmed');
    expect(store.getQuarantine(released.id)).toBeUndefined();
    const restarted = new QuarantineBook(store, { emit: () => undefined }, createMetrics(), () => 3_000, () => undefined);
    expect(restarted.holds('job-1')).toBe(confirmed.id);
    expect(restarted.holds('job-2')).toBeUndefined();
  });

  it('a session gated under a quarantine (same address or user) stays gated after a restart, and a release opens it', () => {
    const { store, book } = setup();
    const record = book.raise(session, verdict, query, 'ev-6');
    const byAddress = { ...session, id: 'job-new', user: 'other' };
    const byUser = { ...session, id: 'job-user', addresses: ['10.9.9.9/32'] };
    const stranger = { ...session, id: 'job-stranger', user: 'stranger', addresses: ['10.8.8.8/32'] };
    expect(book.follow(byAddress)).toMatchObject({ quarantineId: record.id, matched: 'address' });
    expect(book.follow(byUser)).toMatchObject({ quarantineId: record.id, matched: 'user' });
    expect(book.follow(stranger)).toBeUndefined();
    const reset: string[] = [];
    const restarted = new QuarantineBook(store, { emit: () => undefined }, createMetrics(), () => 5_000, (id) => reset.push(id));
    expect([restarted.holds('job-1'), restarted.holds('job-new'), restarted.holds('job-user'), restarted.holds('job-stranger')]).toEqual([record.id, record.id, record.id, undefined]);
    restarted.release(record.id, 'alice', 'benign');
    expect(reset.sort()).toEqual(['job-1', 'job-new', 'job-user']);
    expect(restarted.holds('job-new')).toBeUndefined();
    expect(store.lastReleaseOf('job-user', 10_000)).toBe(5_000); // its evidence starts afresh too
    expect(new QuarantineBook(store, { emit: () => undefined }, createMetrics(), () => 6_000, () => undefined).holds('job-user')).toBeUndefined();
  });
});

describe('QuarantineBook with fleet.redis: what another replica raised or decided', () => {
  // As it arrives over Redis: JSON.
  const raisedElsewhere = { ...(JSON.parse(JSON.stringify(setupRecord())) as ReturnType<typeof setupRecord>), state: 'open' as const };
  function setupRecord() {
    const { store, book } = setup();
    const r = book.raise(session, verdict, query, 'ev-remote');
    store.close();
    return r;
  }

  it('records made here are handed to the fleet: the raise, the decision (in its transaction) and a gate', () => {
    const { book, store } = setup();
    const shared: string[] = [];
    book.shared = { record: (q) => shared.push(`record ${q.id} ${q.state}`), gate: (g) => shared.push(`gate ${g.sessionId} ${g.quarantineId}`) };
    const q = book.raise(session, verdict, query, 'ev-9');
    book.follow({ ...session, id: 'job-2', addresses: ['10.0.0.1/32'], origin: 'registered' });
    book.confirm(q.id, 'alice', 'exfil');
    expect(shared).toEqual([`record ${q.id} open`, `gate job-2 ${q.id}`, `record ${q.id} confirmed`]);
    // A refusal to queue the decision rolls the decision back.
    book.shared = { record: () => { throw new Error('SQLITE_FULL'); }, gate: () => undefined };
    expect(() => book.release(q.id, 'alice', 'fine')).toThrow(/could not be stored/);
    expect(store.getQuarantine(q.id)?.state).toBe('confirmed');
    expect(book.holds('job-1')).toBe(q.id);
  });

  it('a raised record gates at once and is stored with its evidence; its release lifts every session held under it', () => {
    const { book, store } = setup();
    book.mirror(raisedElsewhere);
    expect(book.holds('job-1')).toBe(raisedElsewhere.id);
    expect(store.getQuarantine(raisedElsewhere.id)).toMatchObject({ state: 'open', evidence: raisedElsewhere.evidence });
    book.mirrorGate({ sessionId: 'job-3', quarantineId: raisedElsewhere.id, session: { ...session, id: 'job-3' }, matched: 'user', atMs: 2_000 });
    expect(book.holds('job-3')).toBe(raisedElsewhere.id);
    book.mirror({ ...raisedElsewhere, state: 'released', decidedAtMs: 3_000, decidedBy: 'bob', decisionReason: 'benign' });
    expect(book.holds('job-1')).toBeUndefined();
    expect(book.holds('job-3')).toBeUndefined();
    expect(store.getQuarantine(raisedElsewhere.id)).toMatchObject({ state: 'released', decidedBy: 'bob' });
  });

  it('states only move forward, whatever order they arrive in: a late "open" or "confirmed" never re-closes a released gate', () => {
    const { book, store } = setup();
    book.mirror({ ...raisedElsewhere, state: 'released', decidedAtMs: 3_000, decidedBy: 'bob', decisionReason: 'benign' });
    expect(book.holds('job-1')).toBeUndefined();
    book.mirror(raisedElsewhere);
    book.mirror({ ...raisedElsewhere, state: 'confirmed', decidedAtMs: 2_000, decidedBy: 'carol', decisionReason: 'exfil' });
    expect(book.holds('job-1')).toBeUndefined();
    expect(store.getQuarantine(raisedElsewhere.id)).toMatchObject({ state: 'released', decidedBy: 'bob' });
    // confirmed after open holds; a repeat changes nothing.
    const other = { ...raisedElsewhere, id: 'qr-other', sessionId: 'job-4', session: { ...session, id: 'job-4' } };
    book.mirror({ ...other, state: 'confirmed', decidedAtMs: 2_000, decidedBy: 'carol', decisionReason: 'exfil' });
    book.mirror(other);
    expect(book.holds('job-4')).toBe('qr-other');
    expect(store.getQuarantine('qr-other')?.state).toBe('confirmed');
  });

  it('a gate that arrives before its record holds the session (fail closed)', () => {
    const { book } = setup();
    book.mirrorGate({ sessionId: 'job-5', quarantineId: 'qr-not-yet', session: { ...session, id: 'job-5' }, matched: 'address', atMs: 2_000 });
    expect(book.holds('job-5')).toBe('qr-not-yet');
    expect(book.held().map((q) => q.id)).toEqual([]);
  });
});
