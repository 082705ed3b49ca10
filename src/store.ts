// The embedded durable store (SQLite, WAL, synchronous=FULL for the few rows that must survive
// kill -9: quarantines, registered sessions, the alert outbox, the audit log, the learned deny
// list, query history). Every method is synchronous: a quarantine is on disk before its answer leaves.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
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
  readonly evidence: unknown;
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

const SCHEMA = `
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
`;

export class Store {
  readonly db: Database.Database;
  readonly dir: string;

  private constructor(db: Database.Database, dir: string) {
    this.db = db;
    this.dir = dir;
  }

  static open(dir: string): Store {
    let db: Database.Database;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      db = new Database(join(dir, 'dnswarden.sqlite'));
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 2000');
      db.exec(SCHEMA);
    } catch (err) {
      throw new WardenError('ERR_STORE', `cannot open the store in ${dir}: ${messageOf(err)}`, { cause: err });
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
      this.db.prepare('INSERT OR REPLACE INTO heartbeat (id, at_ms) VALUES (1, ?)').run(atMs);
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
    this.db.prepare('INSERT OR REPLACE INTO sessions (id, meta, expires_at_ms) VALUES (?, ?, ?)').run(meta.id, JSON.stringify(meta), meta.expiresAtMs);
  }
  deleteSession(id: string): void {
    this.db.prepare('DELETE FROM sessions WHERE id = ?').run(id);
  }
  loadSessions(nowMs: number): SessionMeta[] {
    this.db.prepare('DELETE FROM sessions WHERE expires_at_ms <= ?').run(nowMs);
    return (this.db.prepare('SELECT meta FROM sessions').all() as { meta: string }[]).map((r) => JSON.parse(r.meta) as SessionMeta);
  }

  // --- quarantines
  insertQuarantine(q: QuarantineRecord): void {
    this.db
      .prepare('INSERT INTO quarantines (id, session_id, session, state, raised_at_ms, evidence) VALUES (?, ?, ?, ?, ?, ?)')
      .run(q.id, q.sessionId, JSON.stringify(q.session), q.state, q.raisedAtMs, JSON.stringify(q.evidence));
  }
  updateQuarantine(q: QuarantineRecord): void {
    this.db
      .prepare('UPDATE quarantines SET state = ?, decided_at_ms = ?, decided_by = ?, decision_reason = ? WHERE id = ?')
      .run(q.state, q.decidedAtMs ?? null, q.decidedBy ?? null, q.decisionReason ?? null, q.id);
  }
  getQuarantine(id: string): QuarantineRecord | undefined {
    const row = this.db.prepare('SELECT * FROM quarantines WHERE id = ?').get(id) as QuarantineRow | undefined;
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
    return (this.db.prepare(sql).all(...args) as QuarantineRow[]).map(fromRow);
  }
  /** When the oldest open quarantine was raised (undefined when none is open). */
  oldestOpenQuarantineMs(): number | undefined {
    const row = this.db.prepare("SELECT MIN(raised_at_ms) AS at FROM quarantines WHERE state = 'open'").get() as { at: number | null };
    return row.at ?? undefined;
  }
  /** When the last release before `beforeMs` of a quarantine holding this session was decided (its evidence starts afresh there). */
  lastReleaseOf(sessionId: string, beforeMs: number): number | undefined {
    const row = this.db.prepare(`SELECT MAX(decided_at_ms) AS at FROM quarantines WHERE state = 'released' AND decided_at_ms <= ?
      AND (session_id = ? OR id IN (SELECT quarantine_id FROM quarantine_gates WHERE session_id = ?))`).get(beforeMs, sessionId, sessionId) as { at: number | null };
    return row.at ?? undefined;
  }

  // --- sessions gated under an existing quarantine (it follows the address and the user)
  insertGate(g: QuarantineGate): void {
    this.db.prepare('INSERT OR REPLACE INTO quarantine_gates (session_id, quarantine_id, session, matched, at_ms) VALUES (?, ?, ?, ?, ?)').run(g.sessionId, g.quarantineId, JSON.stringify(g.session), g.matched, g.atMs);
  }
  /** Gates of the quarantines that hold (open or confirmed). */
  heldGates(): QuarantineGate[] {
    return (this.db.prepare("SELECT g.* FROM quarantine_gates g JOIN quarantines q ON q.id = g.quarantine_id WHERE q.state IN ('open', 'confirmed') ORDER BY g.at_ms").all() as GateRow[]).map(gateOf);
  }
  gatesOf(quarantineId: string): QuarantineGate[] {
    return (this.db.prepare('SELECT * FROM quarantine_gates WHERE quarantine_id = ? ORDER BY at_ms').all(quarantineId) as GateRow[]).map(gateOf);
  }
  /** Retention: only released quarantines go; open and confirmed ones hold (and are kept) until released. */
  deleteDecidedQuarantinesBefore(cutoffMs: number): number {
    return this.db.transaction(() => {
      const n = this.db.prepare("DELETE FROM quarantines WHERE state = 'released' AND raised_at_ms < ?").run(cutoffMs).changes;
      if (n > 0) this.db.prepare('DELETE FROM quarantine_gates WHERE quarantine_id NOT IN (SELECT id FROM quarantines)').run();
      return n;
    })();
  }

  // --- audit
  /** Told of every audit row written here (inside its transaction): fleet.redis shares it. Not for rows that came from the fleet. */
  onAudit: ((entry: Omit<AuditEntry, 'id'>) => void) | undefined;
  audit(entry: Omit<AuditEntry, 'id'>, fromFleet = false): void {
    this.db.prepare('INSERT INTO audit (at_ms, actor, action, target, reason, detail) VALUES (?, ?, ?, ?, ?, ?)').run(entry.atMs, entry.actor, entry.action, entry.target, entry.reason, JSON.stringify(entry.detail ?? null));
    if (!fromFleet) this.onAudit?.(entry);
  }
  listAudit(limit = 500): AuditEntry[] {
    return (this.db.prepare('SELECT * FROM audit ORDER BY id DESC LIMIT ?').all(limit) as { id: number; at_ms: number; actor: string; action: string; target: string; reason: string; detail: string }[]).map((r) => ({
      id: r.id, atMs: r.at_ms, actor: r.actor, action: r.action, target: r.target, reason: r.reason, detail: JSON.parse(r.detail) as unknown,
    }));
  }

  // --- learned deny list (callers write the audit row in the same transaction)
  addLearnedDeny(domain: string, atMs: number, by: string, quarantineId: string | null, reason: string): void {
    this.db.prepare('INSERT OR REPLACE INTO learned_deny (domain, added_at_ms, added_by, quarantine_id, reason) VALUES (?, ?, ?, ?, ?)').run(domain, atMs, by, quarantineId, reason);
  }
  /** The whole learned deny list at once (another replica's, with fleet.redis). */
  replaceLearnedDeny(entries: readonly { domain: string; addedAtMs: number; addedBy: string; quarantineId: string | null; reason: string }[]): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM learned_deny').run();
      for (const e of entries) this.addLearnedDeny(e.domain, e.addedAtMs, e.addedBy, e.quarantineId, e.reason);
    })();
  }
  removeLearnedDeny(domain: string): boolean {
    return this.db.prepare('DELETE FROM learned_deny WHERE domain = ?').run(domain).changes > 0;
  }
  listLearnedDeny(): { domain: string; addedAtMs: number; addedBy: string; quarantineId: string | null; reason: string }[] {
    return (this.db.prepare('SELECT * FROM learned_deny ORDER BY domain').all() as { domain: string; added_at_ms: number; added_by: string; quarantine_id: string | null; reason: string }[]).map((r) => ({
      domain: r.domain, addedAtMs: r.added_at_ms, addedBy: r.added_by, quarantineId: r.quarantine_id, reason: r.reason,
    }));
  }

  // --- alert outbox: one row per (sink, event), delivered in id order, deleted once delivered
  enqueueOutbox(sinks: readonly string[], body: string, atMs: number): void {
    const insert = this.db.prepare('INSERT INTO outbox (sink, body, next_attempt_ms) VALUES (?, ?, ?)');
    this.db.transaction(() => { for (const s of sinks) insert.run(s, body, atMs); })();
  }
  headOfOutbox(sink: string): OutboxRow | undefined {
    const r = this.db.prepare('SELECT * FROM outbox WHERE sink = ? ORDER BY id LIMIT 1').get(sink) as { id: number; sink: string; body: string; attempts: number; next_attempt_ms: number } | undefined;
    return r === undefined ? undefined : { id: r.id, sink: r.sink, body: r.body, attempts: r.attempts, nextAttemptMs: r.next_attempt_ms };
  }
  /** The oldest outbox rows of every sink (fleet.redis moves them to the fleet's shared queues). */
  outboxHead(limit: number): OutboxRow[] {
    return (this.db.prepare('SELECT * FROM outbox ORDER BY id LIMIT ?').all(limit) as { id: number; sink: string; body: string; attempts: number; next_attempt_ms: number }[])
      .map((r) => ({ id: r.id, sink: r.sink, body: r.body, attempts: r.attempts, nextAttemptMs: r.next_attempt_ms }));
  }
  outboxDelivered(id: number): void {
    this.db.prepare('DELETE FROM outbox WHERE id = ?').run(id);
  }
  outboxFailed(id: number, nextAttemptMs: number): void {
    this.db.prepare('UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ? WHERE id = ?').run(nextAttemptMs, id);
  }
  outboxSize(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM outbox').get() as { n: number }).n;
  }

  // --- query history: one row per session holding its bounded ring of recent queries, written in
  // batches off the hot path; at most `maxSessions` rows (the least recently active are dropped), so
  // disk use is bounded by sessions × history_per_session.
  saveHistories(rows: readonly { sessionId: string; entries: readonly HistoryEntry[] }[], atMs: number, maxSessions: number): void {
    if (rows.length === 0) return;
    const upsert = this.db.prepare('INSERT OR REPLACE INTO session_history (session_id, updated_at_ms, entries) VALUES (?, ?, ?)');
    this.db.transaction(() => {
      for (const r of rows) upsert.run(r.sessionId, atMs, JSON.stringify(r.entries));
      this.db.prepare('DELETE FROM session_history WHERE session_id NOT IN (SELECT session_id FROM session_history ORDER BY updated_at_ms DESC LIMIT ?)').run(maxSessions);
    })();
  }
  history(sessionId: string): HistoryEntry[] {
    const row = this.db.prepare('SELECT entries FROM session_history WHERE session_id = ?').get(sessionId) as { entries: string } | undefined;
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
    evidence: JSON.parse(r.evidence) as unknown,
  };
  if (r.decided_at_ms !== null) q.decidedAtMs = r.decided_at_ms;
  if (r.decided_by !== null) q.decidedBy = r.decided_by;
  if (r.decision_reason !== null) q.decisionReason = r.decision_reason;
  return q;
}
