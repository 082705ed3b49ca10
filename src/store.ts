// The embedded durable store (SQLite, WAL, synchronous=FULL for the few rows that must survive
// kill -9: quarantines, registered sessions, the alert outbox, the audit log, the learned deny
// list, query history). Every method is synchronous: a quarantine is on disk before its answer leaves.
// Owns the schema and its version (PRAGMA user_version, migrated forward at open, a newer one refused)
// and the online backup; never decides what to store.
// Why it is long: one SQLite schema (with its migrations) and the statements for every durable row the
// product keeps; the tables share one connection and one transaction discipline.
import Database from 'better-sqlite3';
import { z } from 'zod';
import { mkdirSync, statSync, existsSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { WardenError, messageOf } from './errors.js';
import type { HistoryEntry, SessionMeta } from './sessions/directory.js';

export type QuarantineState = 'open' | 'released' | 'confirmed';

export interface QuarantineRecord {
  readonly id: string;
  readonly sessionId: string;
  readonly session: SessionMeta;
  state: QuarantineState;
  readonly raisedAtMs: number;
  decidedAtMs?: number;
  decidedBy?: string;
  decisionReason?: string;
  /** The triggering queries with every signal's value and reason, and the verdict text. */
  readonly evidence: QuarantineEvidence;
}

/** The query that raised a quarantine: its verdict, and every signal's value, weight and reason. */
export interface EvidenceTrigger {
  readonly eventId: string;
  readonly atMs: number;
  readonly name: string;
  readonly qtype: number;
  readonly action: string;
  readonly rule: string;
  readonly reason: string;
  readonly score?: number | undefined;
  readonly signals?: readonly { readonly id: string; readonly value: number; readonly weight: number; readonly reason: string }[] | undefined;
}

/**
 * A quarantine's evidence: the trigger and the session's recent queries. `trigger` is null in rows from releases
 * that did not record it; `unreadable` holds a row's evidence as stored when it does not validate (shown, never lost).
 */
export interface QuarantineEvidence {
  readonly trigger: EvidenceTrigger | null;
  readonly recent: readonly HistoryEntry[];
  readonly unreadable?: { readonly error: string; readonly stored: unknown };
}

// Loose objects: a field a later release adds is kept, not stripped, when an older one reads the row.
const evidenceSchema = z.looseObject({
  trigger: z.looseObject({
    eventId: z.string(), atMs: z.number(), name: z.string(), qtype: z.number().int(), action: z.string(), rule: z.string(), reason: z.string(),
    score: z.number().optional(),
    signals: z.array(z.looseObject({ id: z.string(), value: z.number(), weight: z.number(), reason: z.string() })).optional(),
  }).nullable().default(null),
  recent: z.array(z.looseObject({
    atMs: z.number(), name: z.string(), qtype: z.number().int(), action: z.string(), rule: z.string(), rcode: z.number().int(), enforced: z.boolean(),
    eventId: z.string().optional(), score: z.number().optional(), reason: z.string().optional(), signals: z.record(z.string(), z.number()).optional(),
    count: z.number().optional(), lastAtMs: z.number().optional(),
  })).default([]),
});

/** Evidence read back (from a store row, or from the API): validated; what does not validate is kept as `unreadable`. */
export function evidenceOf(stored: unknown): QuarantineEvidence {
  const parsed = evidenceSchema.safeParse(stored);
  if (parsed.success) return parsed.data as QuarantineEvidence;
  const issue = parsed.error.issues[0];
  const error = issue === undefined ? 'invalid' : `evidence.${issue.path.join('.')}: ${issue.message}`;
  return { trigger: null, recent: [], unreadable: { error, stored } };
}

/** A session registered after a quarantine and gated under it: it shares the quarantined session's address or user. */
export interface QuarantineGate {
  readonly sessionId: string;
  readonly quarantineId: string;
  readonly session: SessionMeta;
  readonly matched: 'address' | 'user';
  readonly atMs: number;
}

export interface AuditEntry {
  readonly id: number;
  readonly atMs: number;
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly reason: string;
  readonly detail: unknown;
}

export interface OutboxRow {
  readonly id: number;
  readonly sink: string;
  readonly body: string;
  readonly attempts: number;
  readonly nextAttemptMs: number;
}

// Version 1: the tables as they were before the store had a version (hence IF NOT EXISTS: such a store, at
// user_version 0, migrates by having its version set).
const SCHEMA_V1 = `
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, meta TEXT NOT NULL, expires_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantines (
  id TEXT PRIMARY KEY, session_id TEXT NOT NULL, session TEXT NOT NULL, state TEXT NOT NULL,
  raised_at_ms INTEGER NOT NULL, decided_at_ms INTEGER, decided_by TEXT, decision_reason TEXT, evidence TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS quarantines_state ON quarantines(state, raised_at_ms);
CREATE TABLE IF NOT EXISTS quarantine_gates (session_id TEXT NOT NULL, quarantine_id TEXT NOT NULL, session TEXT NOT NULL,
  matched TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (session_id, quarantine_id));
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, actor TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, body TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_sink ON outbox(sink, id);
CREATE TABLE IF NOT EXISTS learned_deny (domain TEXT PRIMARY KEY, added_at_ms INTEGER NOT NULL, added_by TEXT NOT NULL,
  quarantine_id TEXT, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS session_history (session_id TEXT PRIMARY KEY, updated_at_ms INTEGER NOT NULL, entries TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS session_history_age ON session_history(updated_at_ms);
CREATE TABLE IF NOT EXISTS heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS registration_tokens (token_id TEXT PRIMARY KEY, session_id TEXT NOT NULL,
  expires_at_ms INTEGER NOT NULL, ended_at_ms INTEGER);
CREATE INDEX IF NOT EXISTS registration_tokens_session ON registration_tokens(session_id);
CREATE INDEX IF NOT EXISTS registration_tokens_expiry ON registration_tokens(expires_at_ms);
CREATE TABLE IF NOT EXISTS rpz_export (id INTEGER PRIMARY KEY CHECK (id = 1), digest TEXT NOT NULL, serial INTEGER NOT NULL);
`;

export interface Migration {
  readonly version: number;
  /** What it changes, for the log and the error if it fails. */
  readonly what: string;
  readonly sql: string;
}

/**
 * The store's schema, one step per version, oldest first. Never edit a released step: add the next one
 * (its SQL runs once, in a transaction with the version bump, on every store below its version).
 */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, what: 'sessions, quarantines, audit, outbox, learned deny list, query history', sql: SCHEMA_V1 },
  // fleet.redis's outbox and meta were created by src/fleet/redis-fleet.ts itself until this version (IF NOT EXISTS:
  // a store that has them keeps their rows).
  {
    version: 2, what: 'the fleet outbox and fleet meta (fleet.redis)',
    sql: `CREATE TABLE IF NOT EXISTS fleet_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fleet_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  },
];

/** The schema version this build writes. */
export const STORE_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

export const STORE_FILE = 'dnswarden.sqlite';

/**
 * Brings `db` forward to the last version of `migrations`; refuses a store from a newer build (its tables may
 * mean something this build does not know). Each step and its version bump commit together, under an
 * immediate (write) lock, so a crash or a second process at the same moment never runs a step twice.
 */
export function migrate(db: Database.Database, where: string, migrations: readonly Migration[] = MIGRATIONS): { from: number; to: number } {
  const latest = migrations.length === 0 ? 0 : migrations[migrations.length - 1]!.version;
  const version = (): number => db.pragma('user_version', { simple: true }) as number;
  const from = version();
  if (from > latest) {
    throw new WardenError('ERR_STORE', `the store in ${where} has schema version ${from}, newer than version ${latest} that this dnswarden knows: it was written by a newer release; run that release, or restore a backup taken before the upgrade`);
  }
  for (const m of migrations) {
    if (m.version <= from) continue;
    try {
      db.transaction(() => {
        if (version() >= m.version) return; // another process got here first
        db.exec(m.sql);
        db.pragma(`user_version = ${m.version}`);
      }).immediate();
    } catch (err) {
      throw new WardenError('ERR_STORE', `the store in ${where}: migration to schema version ${m.version} (${m.what}) failed, the store stays at version ${version()}: ${messageOf(err)}`, { cause: err });
    }
  }
  return { from, to: version() };
}

/**
 * `dnswarden backup`: an online copy of the store in `dir` to `dest`, taken over a read-only connection, so
 * it works while a server writes (SQLite's backup API restarts the copy if a page changes under it). The
 * copy is written beside `dest` and renamed into place once checked: `dest` is whole or absent, never half.
 */
export async function backupStore(dir: string, dest: string): Promise<{ version: number; quarantines: number; bytes: number }> {
  const file = join(dir, STORE_FILE);
  if (!existsSync(file)) throw new WardenError('ERR_NOT_FOUND', `no store at ${file} (storage.dir of the config)`);
  if (existsSync(dest)) throw new WardenError('ERR_BAD_REQUEST', `${dest} exists: a backup never overwrites a file; choose a new name`);
  const partial = `${dest}.partial`;
  rmSync(partial, { force: true });
  const source = new Database(file, { readonly: true, fileMustExist: true });
  try {
    source.pragma('busy_timeout = 5000');
    await source.backup(partial);
  } catch (err) {
    rmSync(partial, { force: true });
    throw new WardenError('ERR_STORE', `backup of ${file} failed: ${messageOf(err)}`, { cause: err });
  } finally {
    source.close();
  }
  let summary: { version: number; quarantines: number };
  const copy = new Database(partial);
  try {
    copy.pragma('journal_mode = DELETE'); // one self-contained file, no -wal beside it
    const check = copy.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new WardenError('ERR_STORE', `the backup does not check: ${String(check)}`);
    summary = {
      version: copy.pragma('user_version', { simple: true }) as number,
      quarantines: (copy.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'quarantines'").get() as { n: number }).n === 0
        ? 0
        : (copy.prepare('SELECT COUNT(*) AS n FROM quarantines').get() as { n: number }).n,
    };
  } catch (err) {
    copy.close();
    rmSync(partial, { force: true });
    throw err;
  }
  copy.close();
  renameSync(partial, dest);
  return { ...summary, bytes: statSync(dest).size };
}

/**
 * `mkdir -p` (mode 700) that fails instead of looping: Node 20's recursive mkdirSync retries forever at
 * 100 % CPU where a parent exists but refuses children with ENOENT (e.g. "/proc/1/x").
 */
function makeDirs(dir: string): void {
  const path = resolve(dir);
  try {
    if (statSync(path).isDirectory()) return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    if (dirname(path) !== path) makeDirs(dirname(path));
    try {
      mkdirSync(path, { mode: 0o700 });
    } catch (mkdirErr) {
      if ((mkdirErr as NodeJS.ErrnoException).code !== 'EEXIST') throw mkdirErr; // made meanwhile by another process: fine
    }
    return;
  }
  throw new Error(`${path} is not a directory`);
}

export class Store {
  readonly db: Database.Database;
  readonly dir: string;

  // Every statement is prepared once, on its first use, and reused: preparing costs more than running the small
  // statements here. Keyed by SQL text; the only text built at run time (listQuarantines' filters) has 8 forms.
  readonly #statements = new Map<string, Database.Statement>();

  // ---- fleet.redis: changes made here, queued for Redis (in the change's own transaction when there is one) ----

  /** Queues a fleet event (JSON) at the end of the outbox. */
  fleetOutboxAppend(event: string): void {
    this.sql('INSERT INTO fleet_outbox (event) VALUES (?)').run(event);
  }

  /** The oldest queued fleet event, or undefined when the outbox is empty. */
  fleetOutboxHead(): { readonly id: number; readonly event: string } | undefined {
    return this.sql('SELECT id, event FROM fleet_outbox ORDER BY id LIMIT 1').get() as { id: number; event: string } | undefined;
  }

  fleetOutboxDelete(id: number): void {
    this.sql('DELETE FROM fleet_outbox WHERE id = ?').run(id);
  }

  fleetOutboxCount(): number {
    return (this.sql('SELECT COUNT(*) AS n FROM fleet_outbox').get() as { n: number }).n;
  }

  /** Queued fleet events whose JSON `kind` starts with `prefix` (e.g. "deny."), oldest first. */
  fleetOutboxOfKind(prefix: string): string[] {
    return (this.sql("SELECT event FROM fleet_outbox WHERE event LIKE ? ESCAPE '\\' ORDER BY id").all(`%"kind":"${prefix.replace(/[\\%_]/g, '\\$&')}%`) as { event: string }[]).map((r) => r.event);
  }

  fleetMeta(key: string): string | undefined {
    return (this.sql('SELECT value FROM fleet_meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  setFleetMeta(key: string, value: string): void {
    this.sql('INSERT OR REPLACE INTO fleet_meta (key, value) VALUES (?, ?)').run(key, value);
  }

  /** True while a transaction is open (a fleet event queued inside it rolls back with the change). */
  get inTransaction(): boolean {
    return this.db.inTransaction;
  }

  /** Runs `fn` in one transaction: every write in it lands, or none (a throw rolls back and is rethrown). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  private constructor(db: Database.Database, dir: string) {
    this.db = db;
    this.dir = dir;
  }

  private sql(text: string): Database.Statement {
    let statement = this.#statements.get(text);
    if (statement === undefined) {
      statement = this.db.prepare(text);
      this.#statements.set(text, statement);
    }
    return statement;
  }

  static open(dir: string): Store {
    let db: Database.Database;
    try {
      makeDirs(dir);
      db = new Database(join(dir, STORE_FILE));
    } catch (err) {
      throw new WardenError('ERR_STORE', `cannot open the store in storage.dir "${dir}": ${messageOf(err)}`, { cause: err });
    }
    try {
      // busy_timeout first: with server.workers > 1 every worker opens the store at once, and the pragmas after it
      // must wait for another's lock rather than fail the start at once.
      db.pragma('busy_timeout = 2000');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      migrate(db, dir);
    } catch (err) {
      db.close();
      if (err instanceof WardenError) throw err;
      throw new WardenError('ERR_STORE', `cannot open the store in storage.dir "${dir}": ${messageOf(err)}`, { cause: err });
    }
    return new Store(db, dir);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // --- writability (readiness): one tiny durable write, run on a timer, never per request
  #writeProblem: string | null = null;
  /** Writes the heartbeat row; remembers and returns why that failed (disk full, I/O error, read-only), or null. */
  probeWritable(atMs: number): string | null {
    try {
      this.sql('INSERT OR REPLACE INTO heartbeat (id, at_ms) VALUES (1, ?)').run(atMs);
      this.#writeProblem = null;
    } catch (err) {
      this.#writeProblem = `the store cannot be written: ${messageOf(err)}`; // no path: /readyz is open
    }
    return this.#writeProblem;
  }
  /** The result of the latest probeWritable (null before the first). */
  writeProblem(): string | null {
    return this.#writeProblem;
  }

  // --- registered sessions
  saveSession(meta: SessionMeta): void {
    this.sql('INSERT OR REPLACE INTO sessions (id, meta, expires_at_ms) VALUES (?, ?, ?)').run(meta.id, JSON.stringify(meta), meta.expiresAtMs);
  }
  deleteSession(id: string): void {
    this.sql('DELETE FROM sessions WHERE id = ?').run(id);
  }
  loadSessions(nowMs: number): SessionMeta[] {
    this.sql('DELETE FROM sessions WHERE expires_at_ms <= ?').run(nowMs);
    return (this.sql('SELECT meta FROM sessions').all() as { meta: string }[]).map((r) => JSON.parse(r.meta) as SessionMeta);
  }

  // --- registration tokens: which token registered (or renewed) which session, so that a token whose
  // session was ended is refused if posted again. A row lives until its token expires (after that the
  // token is refused anyway): so the table holds at most the registrations of one token lifetime.
  /** The session row and its token row, in one transaction. */
  saveRegisteredSession(meta: SessionMeta, token: { id: string; expiresAtMs: number }): void {
    this.db.transaction(() => {
      this.saveSession(meta);
      this.sql('INSERT INTO registration_tokens (token_id, session_id, expires_at_ms) VALUES (?, ?, ?) ON CONFLICT (token_id) DO NOTHING').run(token.id, meta.id, token.expiresAtMs);
    })();
  }
  /**
   * Forgets a registered session; `endedAtMs`: it was ended, and its tokens are refused from now on. An
   * expiry leaves the token rows alone: with server.workers > 1 a worker may sweep a session the admin
   * worker has just renewed, and the renewal's token must still be known when the session is ended.
   */
  deleteRegisteredSession(id: string, endedAtMs: number | undefined): void {
    this.db.transaction(() => {
      this.deleteSession(id);
      if (endedAtMs !== undefined) this.sql('UPDATE registration_tokens SET ended_at_ms = ? WHERE session_id = ? AND ended_at_ms IS NULL').run(endedAtMs, id);
    })();
  }
  /** The session a token registered and when that session was ended, if it was. */
  endedToken(tokenId: string): { sessionId: string; endedAtMs: number } | undefined {
    const row = this.sql('SELECT session_id, ended_at_ms FROM registration_tokens WHERE token_id = ? AND ended_at_ms IS NOT NULL').get(tokenId) as { session_id: string; ended_at_ms: number } | undefined;
    return row === undefined ? undefined : { sessionId: row.session_id, endedAtMs: row.ended_at_ms };
  }
  pruneRegistrationTokens(nowMs: number): number {
    return this.sql('DELETE FROM registration_tokens WHERE expires_at_ms <= ?').run(nowMs).changes;
  }

  // --- quarantines
  insertQuarantine(q: QuarantineRecord): void {
    this.sql('INSERT INTO quarantines (id, session_id, session, state, raised_at_ms, evidence) VALUES (?, ?, ?, ?, ?, ?)')
      .run(q.id, q.sessionId, JSON.stringify(q.session), q.state, q.raisedAtMs, JSON.stringify(q.evidence));
  }
  updateQuarantine(q: QuarantineRecord): void {
    this.sql('UPDATE quarantines SET state = ?, decided_at_ms = ?, decided_by = ?, decision_reason = ? WHERE id = ?')
      .run(q.state, q.decidedAtMs ?? null, q.decidedBy ?? null, q.decisionReason ?? null, q.id);
  }
  getQuarantine(id: string): QuarantineRecord | undefined {
    const row = this.sql('SELECT * FROM quarantines WHERE id = ?').get(id) as QuarantineRow | undefined;
    return row === undefined ? undefined : fromRow(row);
  }
  listQuarantines(filter: { state?: QuarantineState; sinceMs?: number; untilMs?: number; limit?: number } = {}): QuarantineRecord[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.state !== undefined) { where.push('state = ?'); args.push(filter.state); }
    if (filter.sinceMs !== undefined) { where.push('raised_at_ms >= ?'); args.push(filter.sinceMs); }
    if (filter.untilMs !== undefined) { where.push('raised_at_ms < ?'); args.push(filter.untilMs); }
    const sql = `SELECT * FROM quarantines ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY raised_at_ms DESC LIMIT ?`;
    args.push(filter.limit ?? 1000);
    return (this.sql(sql).all(...args) as QuarantineRow[]).map(fromRow);
  }
  /** When the oldest open quarantine was raised (undefined when none is open). */
  oldestOpenQuarantineMs(): number | undefined {
    const row = this.sql("SELECT MIN(raised_at_ms) AS at FROM quarantines WHERE state = 'open'").get() as { at: number | null };
    return row.at ?? undefined;
  }
  /** When the last release before `beforeMs` of a quarantine holding this session was decided (its evidence starts afresh there). */
  lastReleaseOf(sessionId: string, beforeMs: number): number | undefined {
    const row = this.sql(`SELECT MAX(decided_at_ms) AS at FROM quarantines WHERE state = 'released' AND decided_at_ms <= ?
      AND (session_id = ? OR id IN (SELECT quarantine_id FROM quarantine_gates WHERE session_id = ?))`).get(beforeMs, sessionId, sessionId) as { at: number | null };
    return row.at ?? undefined;
  }

  // --- sessions gated under an existing quarantine (it follows the address and the user)
  insertGate(g: QuarantineGate): void {
    this.sql('INSERT OR REPLACE INTO quarantine_gates (session_id, quarantine_id, session, matched, at_ms) VALUES (?, ?, ?, ?, ?)').run(g.sessionId, g.quarantineId, JSON.stringify(g.session), g.matched, g.atMs);
  }
  /** Gates of the quarantines that hold (open or confirmed). */
  heldGates(): QuarantineGate[] {
    return (this.sql("SELECT g.* FROM quarantine_gates g JOIN quarantines q ON q.id = g.quarantine_id WHERE q.state IN ('open', 'confirmed') ORDER BY g.at_ms").all() as GateRow[]).map(gateOf);
  }
  gatesOf(quarantineId: string): QuarantineGate[] {
    return (this.sql('SELECT * FROM quarantine_gates WHERE quarantine_id = ? ORDER BY at_ms').all(quarantineId) as GateRow[]).map(gateOf);
  }
  /** Retention: only released quarantines go; open and confirmed ones hold (and are kept) until released. */
  deleteDecidedQuarantinesBefore(cutoffMs: number): number {
    return this.db.transaction(() => {
      const n = this.sql("DELETE FROM quarantines WHERE state = 'released' AND raised_at_ms < ?").run(cutoffMs).changes;
      if (n > 0) this.sql('DELETE FROM quarantine_gates WHERE quarantine_id NOT IN (SELECT id FROM quarantines)').run();
      return n;
    })();
  }

  // --- audit
  /** Told of every audit row written here (inside its transaction): fleet.redis shares it. Not for rows that came from the fleet. */
  onAudit: ((entry: Omit<AuditEntry, 'id'>) => void) | undefined;
  audit(entry: Omit<AuditEntry, 'id'>, fromFleet = false): void {
    this.sql('INSERT INTO audit (at_ms, actor, action, target, reason, detail) VALUES (?, ?, ?, ?, ?, ?)').run(entry.atMs, entry.actor, entry.action, entry.target, entry.reason, JSON.stringify(entry.detail ?? null));
    if (!fromFleet) this.onAudit?.(entry);
  }
  listAudit(limit = 500): AuditEntry[] {
    return (this.sql('SELECT * FROM audit ORDER BY id DESC LIMIT ?').all(limit) as { id: number; at_ms: number; actor: string; action: string; target: string; reason: string; detail: string }[]).map((r) => ({
      id: r.id, atMs: r.at_ms, actor: r.actor, action: r.action, target: r.target, reason: r.reason, detail: JSON.parse(r.detail) as unknown,
    }));
  }

  // --- learned deny list (callers write the audit row in the same transaction)
  addLearnedDeny(domain: string, atMs: number, by: string, quarantineId: string | null, reason: string): void {
    this.sql('INSERT OR REPLACE INTO learned_deny (domain, added_at_ms, added_by, quarantine_id, reason) VALUES (?, ?, ?, ?, ?)').run(domain, atMs, by, quarantineId, reason);
  }
  /** One entry of the learned deny list, if the domain is on it. */
  learnedDenyEntry(domain: string): { domain: string; addedAtMs: number; addedBy: string; quarantineId: string | null; reason: string } | undefined {
    const r = this.sql('SELECT * FROM learned_deny WHERE domain = ?').get(domain) as { domain: string; added_at_ms: number; added_by: string; quarantine_id: string | null; reason: string } | undefined;
    return r === undefined ? undefined : { domain: r.domain, addedAtMs: r.added_at_ms, addedBy: r.added_by, quarantineId: r.quarantine_id, reason: r.reason };
  }
  removeLearnedDeny(domain: string): boolean {
    return this.sql('DELETE FROM learned_deny WHERE domain = ?').run(domain).changes > 0;
  }
  listLearnedDeny(): { domain: string; addedAtMs: number; addedBy: string; quarantineId: string | null; reason: string }[] {
    return (this.sql('SELECT * FROM learned_deny ORDER BY domain').all() as { domain: string; added_at_ms: number; added_by: string; quarantine_id: string | null; reason: string }[]).map((r) => ({
      domain: r.domain, addedAtMs: r.added_at_ms, addedBy: r.added_by, quarantineId: r.quarantine_id, reason: r.reason,
    }));
  }

  /**
   * The SOA serial of the exported RPZ (GET /v1/rpz) for lists whose content hashes to `digest`: the same
   * serial while the digest holds, one more when it changed (kept across restarts, so secondaries that
   * compare serials see every change). Wraps within 32 bits, skipping 0 (RFC 1982 arithmetic at the far side).
   */
  rpzExportSerial(digest: string): number {
    return this.db.transaction(() => {
      const row = this.sql('SELECT digest, serial FROM rpz_export WHERE id = 1').get() as { digest: string; serial: number } | undefined;
      if (row !== undefined && row.digest === digest) return row.serial;
      const serial = row === undefined ? 1 : (row.serial % 0xffffffff) + 1;
      this.sql('INSERT OR REPLACE INTO rpz_export (id, digest, serial) VALUES (1, ?, ?)').run(digest, serial);
      return serial;
    })();
  }

  // --- alert outbox: one row per (sink, event), delivered in id order, deleted once delivered
  enqueueOutbox(sinks: readonly string[], body: string, atMs: number): void {
    const insert = this.sql('INSERT INTO outbox (sink, body, next_attempt_ms) VALUES (?, ?, ?)');
    this.db.transaction(() => { for (const s of sinks) insert.run(s, body, atMs); })();
  }
  headOfOutbox(sink: string): OutboxRow | undefined {
    const r = this.sql('SELECT * FROM outbox WHERE sink = ? ORDER BY id LIMIT 1').get(sink) as { id: number; sink: string; body: string; attempts: number; next_attempt_ms: number } | undefined;
    return r === undefined ? undefined : { id: r.id, sink: r.sink, body: r.body, attempts: r.attempts, nextAttemptMs: r.next_attempt_ms };
  }
  /** The oldest outbox rows of every sink (fleet.redis moves them to the fleet's shared queues). */
  outboxHead(limit: number): OutboxRow[] {
    return (this.sql('SELECT * FROM outbox ORDER BY id LIMIT ?').all(limit) as { id: number; sink: string; body: string; attempts: number; next_attempt_ms: number }[])
      .map((r) => ({ id: r.id, sink: r.sink, body: r.body, attempts: r.attempts, nextAttemptMs: r.next_attempt_ms }));
  }
  outboxDelivered(id: number): void {
    this.sql('DELETE FROM outbox WHERE id = ?').run(id);
  }
  outboxFailed(id: number, nextAttemptMs: number): void {
    this.sql('UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ? WHERE id = ?').run(nextAttemptMs, id);
  }
  outboxSize(): number {
    return (this.sql('SELECT COUNT(*) AS n FROM outbox').get() as { n: number }).n;
  }

  // --- query history: one row per session holding its bounded ring of recent queries, written in
  // batches off the hot path; at most `maxSessions` rows (the least recently active are dropped), so
  // disk use is bounded by sessions × history_per_session.
  saveHistories(rows: readonly { sessionId: string; entries: readonly HistoryEntry[] }[], atMs: number, maxSessions: number): void {
    if (rows.length === 0) return;
    const upsert = this.sql('INSERT OR REPLACE INTO session_history (session_id, updated_at_ms, entries) VALUES (?, ?, ?)');
    this.db.transaction(() => {
      for (const r of rows) upsert.run(r.sessionId, atMs, JSON.stringify(r.entries));
      this.sql('DELETE FROM session_history WHERE session_id NOT IN (SELECT session_id FROM session_history ORDER BY updated_at_ms DESC LIMIT ?)').run(maxSessions);
    })();
  }
  history(sessionId: string): HistoryEntry[] {
    const row = this.sql('SELECT entries FROM session_history WHERE session_id = ?').get(sessionId) as { entries: string } | undefined;
    return row === undefined ? [] : (JSON.parse(row.entries) as HistoryEntry[]);
  }
}

interface QuarantineRow {
  id: string;
  session_id: string;
  session: string;
  state: QuarantineState;
  raised_at_ms: number;
  decided_at_ms: number | null;
  decided_by: string | null;
  decision_reason: string | null;
  evidence: string;
}

interface GateRow {
  session_id: string;
  quarantine_id: string;
  session: string;
  matched: 'address' | 'user';
  at_ms: number;
}

function gateOf(r: GateRow): QuarantineGate {
  return { sessionId: r.session_id, quarantineId: r.quarantine_id, session: JSON.parse(r.session) as SessionMeta, matched: r.matched, atMs: r.at_ms };
}

function fromRow(r: QuarantineRow): QuarantineRecord {
  const q: QuarantineRecord = {
    id: r.id,
    sessionId: r.session_id,
    session: JSON.parse(r.session) as SessionMeta,
    state: r.state,
    raisedAtMs: r.raised_at_ms,
    evidence: evidenceOf(JSON.parse(r.evidence)),
  };
  if (r.decided_at_ms !== null) q.decidedAtMs = r.decided_at_ms;
  if (r.decided_by !== null) q.decidedBy = r.decided_by;
  if (r.decision_reason !== null) q.decisionReason = r.decision_reason;
  return q;
}
