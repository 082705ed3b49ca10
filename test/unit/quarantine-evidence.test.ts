// A quarantine's evidence has one type (src/store.ts QuarantineEvidence), validated where it is read back: from a
// store row and from the API's answer. A row that does not validate is shown as unreadable, its stored value kept.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { evidenceOf, Store, STORE_FILE, type QuarantineEvidence, type QuarantineRecord } from '../../src/store.js';

const EVIDENCE: QuarantineEvidence = {
  trigger: { eventId: 'e-1', atMs: 1000, name: 'aGVsbG8.x.test', qtype: 16, action: 'quarantine', rule: 'threshold', reason: 'score 0.9', score: 0.9, signals: [{ id: 'label_entropy', value: 0.8, weight: 0.3, reason: 'high entropy' }] },
  recent: [{ atMs: 900, name: 'a.x.test', qtype: 1, action: 'nxdomain', rule: 'threshold', rcode: 3, enforced: true, score: 0.7, reason: 'r', signals: { label_entropy: 0.7 } }],
};

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

describe('quarantine evidence', () => {
  it('validates a well-formed evidence and keeps a field a later release adds', () => {
    expect(evidenceOf(EVIDENCE)).toEqual(EVIDENCE);
    const later = { ...EVIDENCE, trigger: { ...EVIDENCE.trigger!, zone: 'threat.rpz' } };
    expect(evidenceOf(later)).toEqual(later);
  });

  it('reads a row from a release without a trigger as trigger null', () => {
    expect(evidenceOf({ trigger: null })).toEqual({ trigger: null, recent: [] });
    expect(evidenceOf({})).toEqual({ trigger: null, recent: [] });
  });

  it('keeps what does not validate as unreadable, naming the field', () => {
    const bad = { trigger: { name: 42 }, recent: [] };
    const e = evidenceOf(bad);
    expect(e.trigger).toBeNull();
    expect(e.unreadable?.stored).toEqual(bad);
    expect(e.unreadable?.error).toMatch(/^evidence\.trigger\./);
    expect(evidenceOf('not an object').unreadable?.stored).toBe('not an object');
  });

  it('round-trips through the store, and a corrupt row reads back without throwing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-evidence-'));
    dirs.push(dir);
    const store = Store.open(dir);
    const record: QuarantineRecord = { id: 'qr-1', sessionId: 's-1', session: { id: 's-1', user: 'u', role: 'r', type: 'batch', addresses: ['10.0.0.1'], origin: 'static', expiresAtMs: Infinity, registeredAtMs: 0 }, state: 'open', raisedAtMs: 1000, evidence: EVIDENCE };
    store.insertQuarantine(record);
    store.insertQuarantine({ ...record, id: 'qr-2', sessionId: 's-2' });
    store.close();
    const db = new Database(join(dir, STORE_FILE));
    db.prepare("UPDATE quarantines SET evidence = ? WHERE id = 'qr-2'").run('{"trigger":{"name":7}}');
    db.close();
    const again = Store.open(dir);
    try {
      expect(again.getQuarantine('qr-1')?.evidence).toEqual(EVIDENCE);
      expect(again.getQuarantine('qr-2')?.evidence.unreadable?.stored).toEqual({ trigger: { name: 7 } });
    } finally {
      again.close();
    }
  });
});
