// The operability issue, item 8: the store carries a schema version (PRAGMA user_version), migrates forward
// at open, and refuses a store written by a newer release, naming both versions. Real SQLite files.
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MIGRATIONS, STORE_FILE, STORE_SCHEMA_VERSION, Store, migrate } from '../../src/store.js';

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'dnswarden-store-schema-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

// The tables exactly as the releases before versioning created them (user_version 0), with a quarantine.
const UNVERSIONED = `
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, meta TEXT NOT NULL, expires_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantines (
  id TEXT PRIMARY KEY, session_id TEXT NOT NULL, session TEXT NOT NULL, state TEXT NOT NULL,
  raised_at_ms INTEGER NOT NULL, decided_at_ms INTEGER, decided_by TEXT, decision_reason TEXT, evidence TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS quarantines_state ON quarantines(state, raised_at_ms);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, actor TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, body TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_sink ON outbox(sink, id);
CREATE TABLE IF NOT EXISTS learned_deny (domain TEXT PRIMARY KEY, added_at_ms INTEGER NOT NULL, added_by TEXT NOT NULL,
  quarantine_id TEXT, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS session_history (session_id TEXT PRIMARY KEY, updated_at_ms INTEGER NOT NULL, entries TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS session_history_age ON session_history(updated_at_ms);
INSERT INTO quarantines (id, session_id, session, state, raised_at_ms, evidence)
  VALUES ('qr-old', 'job-7', '{"id":"job-7","user":"carol","role":"etl","type":"batch","addresses":[],"expiresAtMs":0}', 'open', 1795600000000, '{"trigger":null}');
`;

const userVersion = (file: string): number => {
  const db = new Database(file, { readonly: true });
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
};

describe('store schema version', () => {
  it('a new store is created at the current version', () => {
    const dir = tempDir();
    Store.open(dir).close();
    expect(STORE_SCHEMA_VERSION).toBe(MIGRATIONS.at(-1)!.version);
    expect(userVersion(join(dir, STORE_FILE))).toBe(STORE_SCHEMA_VERSION);
  });

  it('a store from before versioning (user_version 0) migrates forward and keeps its quarantines', () => {
    const dir = tempDir();
    const old = new Database(join(dir, STORE_FILE));
    old.exec(UNVERSIONED);
    old.close();
    const store = Store.open(dir);
    try {
      expect(store.getQuarantine('qr-old')).toMatchObject({ id: 'qr-old', state: 'open', session: { user: 'carol' } });
      expect(store.db.pragma('user_version', { simple: true })).toBe(STORE_SCHEMA_VERSION);
    } finally {
      store.close();
    }
  });

  it('a store from a newer release is refused, naming both versions, and left as it was', () => {
    const dir = tempDir();
    Store.open(dir).close();
    const file = join(dir, STORE_FILE);
    const db = new Database(file);
    db.pragma(`user_version = ${STORE_SCHEMA_VERSION + 5}`);
    db.close();
    expect(() => Store.open(dir)).toThrow(`the store in ${dir} has schema version ${STORE_SCHEMA_VERSION + 5}, newer than version ${STORE_SCHEMA_VERSION} that this dnswarden knows`);
    expect(userVersion(file)).toBe(STORE_SCHEMA_VERSION + 5);
  });

  it('migrate runs only the steps above the store\'s version, in order; a failing step rolls back with its version bump', () => {
    const db = new Database(':memory:');
    try {
      const steps = [
        { version: 1, what: 'table a', sql: 'CREATE TABLE a (x INTEGER);' },
        { version: 2, what: 'column y', sql: 'ALTER TABLE a ADD COLUMN y TEXT;' },
        { version: 3, what: 'index on y', sql: 'CREATE INDEX a_y ON a(y);' },
      ];
      expect(migrate(db, 'test', steps.slice(0, 2))).toEqual({ from: 0, to: 2 });
      db.prepare('INSERT INTO a (x, y) VALUES (1, ?)').run('kept');
      expect(migrate(db, 'test', steps)).toEqual({ from: 2, to: 3 }); // 1 and 2 are not run again (ALTER would fail)
      expect(migrate(db, 'test', steps)).toEqual({ from: 3, to: 3 });
      const broken = [...steps, { version: 4, what: 'a bad step', sql: 'CREATE TABLE b (z); ALTER TABLE nope ADD COLUMN q;' }];
      expect(() => migrate(db, 'test', broken)).toThrow(/migration to schema version 4 \(a bad step\) failed, the store stays at version 3: /);
      expect(db.pragma('user_version', { simple: true })).toBe(3);
      expect(db.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'b'").get()).toEqual({ n: 0 }); // the half step rolled back
      expect(db.prepare('SELECT y FROM a').get()).toEqual({ y: 'kept' });
    } finally {
      db.close();
    }
  });
});
