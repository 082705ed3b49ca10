// The query log: every query a session asked and what became of it, in its own bounded SQLite file
// (`<storage.dir>/querylog.sqlite`), so "who resolved X?" is answered across live and ended sessions.
// Owns that file and its one table. The per-query path only touches an in-memory buffer (`record`): a query
// like the one its session asked last for the same name (same type, result, action, rule, rcode) within the
// batch is counted on that row (`count`, `last_at_ms`) instead of adding one, so a flood of cache hits or of
// gate-blocked queries costs a counter, not a row (`npm run bench:ab`: a row per query halved cache-hit QPS).
// Buffered rows are held column by column, not as an object each (`Rows`, src/analyst/query-log-rows.ts).
// Rows reach the disk once a second (`flushInSlices`, from a timer), 2000 to a transaction, written by a worker
// thread of their own (`thread: true`, as app.ts runs it: a cache-miss flood's unique names cost the event loop a
// structured clone, not an insert) or in-thread with the loop free between slices; the table is trimmed to
// `max_rows` and `max_age_days` there too. Writes are serialized on one chain, so `flush()` (before a search, at
// close) resolves once every row taken before it is on disk. A full buffer drops rows and counts them.
// Never judges and never reads sockets; a failed write is logged and counted, never thrown at a query.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { WardenError, messageOf } from '../errors.js';
import { FIRST_CAPACITY, INSERT_SQL, Rows, WriterThread, sliceMessage, type SessionFields, type Slice } from './query-log-rows.js';

export interface QueryLogOptions {
  readonly maxRows: number;
  readonly maxAgeDays: number;
  /** Rows held in memory between flushes; beyond it rows are dropped and counted. */
  readonly maxBuffered?: number;
  /** Write from a worker thread (the product does); false: on the event loop, a slice at a time (tests). */
  readonly thread?: boolean;
}

export interface QueryLogRow {
  readonly atMs: number;
  readonly name: string;
  readonly qtype: number;
  readonly session: string;
  readonly user: string;
  readonly role: string;
  readonly sessionType: string;
  /** answered | blocked | failed | refused: what became of the query. */
  readonly result: string;
  /** The verdict's action and rule (answer/none without a verdict). */
  readonly action: string;
  readonly rule: string;
  readonly rcode: number;
  readonly score: number | null;
  /** How many identical queries this row stands for (asked within one batch, about a second), and the last one's time. */
  readonly count: number;
  readonly lastAtMs: number;
}

export interface QueryLogFilter {
  /** Suffix match on whole labels: `example.com` finds `example.com` and `a.b.example.com`, not `badexample.com`. */
  readonly name?: string;
  readonly session?: string;
  readonly user?: string;
  /** Matches the result (answered, blocked, failed, refused), the action (answer, nxdomain, quarantine) or the rule. */
  readonly verdict?: string;
  readonly sinceMs?: number;
  readonly untilMs?: number;
  readonly limit?: number;
}

/** What the pipeline's finish step calls, once per query. */
export interface QueryLogSink {
  record(atMs: number, name: string, qtype: number, session: { readonly id: string; readonly user: string; readonly role: string; readonly type: string }, result: string, action: string, rule: string, rcode: number, score: number | undefined): void;
}

export const QUERY_LOG_MAX_LIMIT = 10_000;
const DEFAULT_MAX_BUFFERED = 100_000;
// Rows per transaction when the timer writes: ~8 µs a row with its indexes, so one slice holds the loop ~15 ms.
const SLICE_ROWS = 2000;
// SQLite's page cache per connection, in KiB. better-sqlite3 builds SQLite with a 16 MB default, which the writer
// fills within seconds of a cache-miss flood (four indexes over a million rows): it was 16–18 MB of the RSS
// after 500,000 unique names (bench/rss.mjs). SQLite's own default (2 MB) writes as fast here: the pages it
// misses are in the OS's file cache, and the writer is off the event loop.
const PAGE_CACHE_KIB = 2000;
// How long a busy query log file is tried again at open (other workers opening it at the same moment).
const OPEN_BUSY_MS = 10_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS query_log (
  id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, name TEXT NOT NULL, rname TEXT NOT NULL, qtype INTEGER NOT NULL,
  session_id TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL, session_type TEXT NOT NULL,
  result TEXT NOT NULL, action TEXT NOT NULL, rule TEXT NOT NULL, rcode INTEGER NOT NULL, score REAL,
  count INTEGER NOT NULL DEFAULT 1, last_at_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS query_log_rname ON query_log(rname);
CREATE INDEX IF NOT EXISTS query_log_at ON query_log(at_ms);
CREATE INDEX IF NOT EXISTS query_log_session ON query_log(session_id, at_ms);
CREATE INDEX IF NOT EXISTS query_log_user ON query_log(user, at_ms);
`;

/** `a.example.com` → `com.example.a`: a name's suffix becomes a prefix, so the suffix search is an index range. */
export function reversedName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '').split('.').reverse().join('.');
}

export class QueryLog implements QueryLogSink {
  readonly #db: Database.Database;
  readonly #insert: Database.Statement;
  readonly #opts: Required<QueryLogOptions>;
  readonly #log: Logger | undefined;
  #buffer = new Rows(FIRST_CAPACITY);
  // Batches taken from the buffer and not written yet (the timer writes them a slice at a time); the first
  // `#headDone` rows of the head batch are written.
  #queue: Rows[] = [];
  #headDone = 0;
  #queued = 0;
  // Every write, in order: a flush resolves once everything taken before it is written.
  #chain: Promise<unknown> = Promise.resolve();
  #worker: WriterThread | undefined;
  readonly #trimById: Database.Statement;
  readonly #trimByAge: Database.Statement;
  // Per session id, per name: the row (index in #buffer) a repeat of the same query is counted on (this batch only).
  #latest = new Map<string, Map<string, number>>();
  #dropped = 0;
  #written = 0;
  #queries = 0;
  #closed = false;

  private constructor(db: Database.Database, opts: QueryLogOptions, log: Logger | undefined) {
    this.#db = db;
    this.#opts = { maxBuffered: DEFAULT_MAX_BUFFERED, thread: false, ...opts };
    this.#log = log;
    this.#insert = db.prepare(INSERT_SQL);
    this.#trimById = db.prepare('DELETE FROM query_log WHERE id <= (SELECT MAX(id) FROM query_log) - ?');
    this.#trimByAge = db.prepare('DELETE FROM query_log WHERE at_ms < ?');
  }

  static open(dir: string, opts: QueryLogOptions, log?: Logger): QueryLog {
    // With server.workers > 1 every worker opens this file at once (each writes its own rows). SQLite answers
    // SQLITE_BUSY to some of that without waiting out busy_timeout (switching to WAL, creating the schema, another
    // connection recovering the WAL index): a worker then failed to start at random (`database is locked`, seen in
    // the suite under load). A busy file is tried again, a few ms apart, for OPEN_BUSY_MS; anything else fails at once.
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return QueryLog.#openOnce(dir, opts, log);
      } catch (err) {
        const busy = typeof (err as { code?: unknown }).code === 'string' && (err as { code: string }).code.startsWith('SQLITE_BUSY');
        if (!busy || Date.now() - started >= OPEN_BUSY_MS) {
          throw new WardenError('ERR_CONFIG', `cannot open the query log in ${dir} (query_log): ${messageOf(err)}${busy ? ` (busy after ${attempt} attempts)` : ''}`);
        }
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10 + Math.floor(Math.random() * 40)); // at start only: nothing else to run
      }
    }
  }

  static #openOnce(dir: string, opts: QueryLogOptions, log?: Logger): QueryLog {
    let db: Database.Database | undefined;
    try {
      mkdirSync(dir, { recursive: true });
      db = new Database(join(dir, 'querylog.sqlite'));
      db.pragma('busy_timeout = 2000');
      db.pragma('journal_mode = WAL');
      // A log, not a record of decisions: a crash may lose the last batch, never the store's rows.
      db.pragma('synchronous = NORMAL');
      db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
      db.exec(SCHEMA);
      const q = new QueryLog(db, opts, log);
      if (opts.thread === true) q.#worker = new WriterThread(join(dir, 'querylog.sqlite'), PAGE_CACHE_KIB, log);
      return q;
    } catch (err) {
      db?.close();
      throw err;
    }
  }

  /** Rows dropped because the buffer was full, and rows written, since start. */
  get dropped(): number {
    return this.#dropped;
  }
  get written(): number {
    return this.#written;
  }
  /** Queries those written rows stand for (a row counts its repeats). */
  get queriesWritten(): number {
    return this.#queries;
  }

  record(atMs: number, name: string, qtype: number, session: SessionFields, result: string, action: string, rule: string, rcode: number, score: number | undefined): void {
    let names = this.#latest.get(session.id);
    const last = names?.get(name);
    const b = this.#buffer;
    if (last !== undefined && b.qtype[last] === qtype && b.result[last] === result && b.rule[last] === rule && b.action[last] === action && b.rcode[last] === rcode) {
      b.count[last]!++;
      b.lastAtMs[last] = atMs;
      // NaN (no score yet) compares false: any score replaces it.
      if (score !== undefined && !(b.score[last]! >= score)) b.score[last] = score;
      return;
    }
    if (b.n + this.#queued >= this.#opts.maxBuffered) {
      this.#dropped++;
      return;
    }
    const row = b.push(atMs, name, qtype, session, result, action, rule, rcode, score);
    if (names === undefined) this.#latest.set(session.id, (names = new Map()));
    names.set(name, row);
  }

  /** Writes every buffered row (before a search, at close); resolves once they and all taken before are on disk. */
  flush(nowMs: number = Date.now()): Promise<number> {
    if (this.#closed) return Promise.resolve(0);
    this.#take();
    return this.#enqueue(nowMs, SLICE_ROWS * 25);
  }

  /**
   * From the timer: takes the buffer and writes it SLICE_ROWS to a transaction, the event loop free between
   * slices, so a second of unique names (a cache-miss flood) never holds the queries for one long write.
   * `done` gets how many rows were written.
   */
  flushInSlices(nowMs: number, done?: (written: number) => void): void {
    if (this.#closed) return;
    this.#take();
    void this.#enqueue(nowMs, SLICE_ROWS).then((n) => done?.(n));
  }

  #enqueue(nowMs: number, sliceRows: number): Promise<number> {
    const next = this.#chain.then(async () => {
      let written = 0;
      for (let slice = this.#nextSlice(sliceRows); slice !== undefined; slice = this.#nextSlice(sliceRows)) {
        written += await this.#write(slice, nowMs);
        await new Promise<void>((ok) => setImmediate(ok)); // let queries in between slices
      }
      return written;
    });
    this.#chain = next.catch(() => 0);
    return next;
  }

  /** Ends the batch: its rows wait to be written, and a repeat of a query starts a new row. */
  #take(): void {
    if (this.#buffer.n === 0) return;
    this.#queue.push(this.#buffer);
    this.#queued += this.#buffer.n;
    this.#buffer = new Rows(FIRST_CAPACITY);
    this.#latest = new Map();
  }

  /** At most `max` rows of the oldest batch not written yet (a slice never spans two batches). */
  #nextSlice(max: number): Slice | undefined {
    const rows = this.#queue[0];
    if (rows === undefined) return undefined;
    const start = this.#headDone;
    const end = Math.min(rows.n, start + max);
    if (end === rows.n) {
      this.#queue.shift();
      this.#headDone = 0;
    } else {
      this.#headDone = end;
    }
    this.#queued -= end - start;
    return { rows, start, end };
  }

  /** One transaction: the rows, then the bounds. A failure drops the rows (counted and logged), never throws. */
  async #write(slice: Slice, nowMs: number): Promise<number> {
    const cutoffMs = nowMs - this.#opts.maxAgeDays * 86_400_000;
    const { rows, start, end } = slice;
    try {
      if (this.#worker !== undefined && this.#worker.alive) {
        await this.#worker.write(sliceMessage(slice), this.#opts.maxRows, cutoffMs);
      } else {
        this.#db.transaction(() => {
          for (let i = start; i < end; i++) {
            const s = rows.session[i]!;
            const score = rows.score[i]!;
            this.#insert.run(rows.atMs[i], rows.name[i], reversedName(rows.name[i]!), rows.qtype[i], s.id, s.user, s.role, s.type,
              rows.result[i], rows.action[i], rows.rule[i], rows.rcode[i], Number.isNaN(score) ? null : score, rows.count[i], rows.lastAtMs[i]);
          }
          // Bounded: the newest max_rows, none older than max_age_days (ids grow with time).
          this.#trimById.run(this.#opts.maxRows);
          this.#trimByAge.run(cutoffMs);
        })();
      }
      this.#written += end - start;
      for (let i = start; i < end; i++) this.#queries += rows.count[i]!;
      return end - start;
    } catch (err) {
      this.#dropped += end - start;
      this.#log?.error({ err: messageOf(err), rows: end - start }, 'could not write the query log; rows dropped');
      return 0;
    }
  }

  /** Newest first. Flushes first, so a query answered a moment ago is found. */
  async search(f: QueryLogFilter): Promise<QueryLogRow[]> {
    await this.flush();
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (f.name !== undefined && f.name !== '') {
      const r = reversedName(f.name);
      // The name itself, or any name under it: `com.example` and `com.example.` … `com.example/` ('/' follows '.').
      where.push('(rname = ? OR (rname >= ? AND rname < ?))');
      args.push(r, `${r}.`, `${r}/`);
    }
    if (f.session !== undefined && f.session !== '') where.push('session_id = ?'), args.push(f.session);
    if (f.user !== undefined && f.user !== '') where.push('user = ?'), args.push(f.user);
    if (f.verdict !== undefined && f.verdict !== '') where.push('(result = ? OR action = ? OR rule = ?)'), args.push(f.verdict, f.verdict, f.verdict);
    if (f.sinceMs !== undefined) where.push('at_ms >= ?'), args.push(f.sinceMs);
    if (f.untilMs !== undefined) where.push('at_ms < ?'), args.push(f.untilMs);
    const limit = Math.max(1, Math.min(f.limit ?? 1000, QUERY_LOG_MAX_LIMIT));
    const rows = this.#db.prepare(`SELECT at_ms, name, qtype, session_id, user, role, session_type, result, action, rule, rcode, score, count, last_at_ms FROM query_log
      ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY at_ms DESC, id DESC LIMIT ?`).all(...args, limit) as {
      at_ms: number; name: string; qtype: number; session_id: string; user: string; role: string; session_type: string; result: string; action: string; rule: string; rcode: number; score: number | null; count: number; last_at_ms: number;
    }[];
    return rows.map((r) => ({ atMs: r.at_ms, name: r.name, qtype: r.qtype, session: r.session_id, user: r.user, role: r.role, sessionType: r.session_type, result: r.result, action: r.action, rule: r.rule, rcode: r.rcode, score: r.score, count: r.count, lastAtMs: r.last_at_ms }));
  }

  /**
   * The last stretch of traffic: queries and blocks per minute since `sinceMs`, and the most blocked names with
   * their counts (the caller folds them into registrable domains). Flushes first.
   */
  async overview(sinceMs: number, topNames = 2000): Promise<{ minutes: { minute: number; queries: number; blocked: number }[]; blockedNames: { name: string; count: number }[] }> {
    await this.flush();
    const minutes = (this.#db.prepare(`SELECT at_ms / 60000 AS minute, SUM(count) AS queries, SUM(CASE WHEN result = 'blocked' THEN count ELSE 0 END) AS blocked FROM query_log
      WHERE at_ms >= ? GROUP BY minute ORDER BY minute`).all(sinceMs) as { minute: number; queries: number; blocked: number }[])
      .map((m) => ({ minute: Math.floor(m.minute) * 60_000, queries: m.queries, blocked: m.blocked }));
    const blockedNames = this.#db.prepare(`SELECT name, SUM(count) AS n FROM query_log WHERE at_ms >= ? AND result = 'blocked'
      GROUP BY name ORDER BY n DESC LIMIT ?`).all(sinceMs, topNames) as { name: string; n: number }[];
    return { minutes, blockedNames: blockedNames.map((b) => ({ name: b.name, count: b.n })) };
  }

  count(): number {
    return (this.#db.prepare('SELECT COUNT(*) AS n FROM query_log').get() as { n: number }).n;
  }

  /** Writes what is buffered, then stops the writer thread and closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    await this.#worker?.stop();
    this.#db.close();
  }
}

const CSV_COLUMNS = ['time', 'name', 'qtype', 'session', 'user', 'role', 'session_type', 'result', 'action', 'rule', 'rcode', 'score', 'count', 'last_time'] as const;

/** One row as the API shows it (ISO time). */
export function queryLogJson(r: QueryLogRow): Record<(typeof CSV_COLUMNS)[number], string | number | null> {
  return {
    time: new Date(r.atMs).toISOString(), name: r.name, qtype: r.qtype, session: r.session, user: r.user, role: r.role, session_type: r.sessionType,
    result: r.result, action: r.action, rule: r.rule, rcode: r.rcode, score: r.score, count: r.count, last_time: new Date(r.lastAtMs).toISOString(),
  };
}

/** RFC 4180 CSV with a header row; a cell starting with = + - @ is prefixed with ' so a spreadsheet never runs it. */
export function queryLogCsv(rows: readonly QueryLogRow[]): string {
  const cell = (v: string | number | null): string => {
    let s = v === null ? '' : String(v);
    if (/^[=+\-@]/.test(s) && typeof v === 'string') s = `'${s}`;
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [CSV_COLUMNS.join(','), ...rows.map((r) => { const j = queryLogJson(r); return CSV_COLUMNS.map((c) => cell(j[c])).join(','); })].join('\r\n') + '\r\n';
}

export function queryLogJsonl(rows: readonly QueryLogRow[]): string {
  return rows.map((r) => `${JSON.stringify(queryLogJson(r))}\n`).join('');
}
