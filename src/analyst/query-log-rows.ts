// The query log's buffered rows and the thread that writes them: a batch held column by column (`Rows`: typed
// arrays and arrays of shared strings, not an object per row — a cache-miss flood buffers ~20,000 rows a second,
// and objects living that long were promoted and collected as old garbage, bench/rss.mjs), the message a slice of
// it becomes for the writer thread (`sliceMessage`), and that thread (`WriterThread`), which reads the message
// back: the format's two ends in one place. Owns no file and no policy: src/analyst/query-log.ts decides what
// is buffered, when it is written and where.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { messageOf } from '../errors.js';

export interface SessionFields { readonly id: string; readonly user: string; readonly role: string; readonly type: string }

/** One batch of rows, column by column; `score` NaN is "no score". Grows by doubling; one batch, never reused. */
export class Rows {
  n = 0;
  atMs: Float64Array;
  lastAtMs: Float64Array;
  score: Float64Array;
  qtype: Uint16Array;
  rcode: Uint16Array;
  count: Uint32Array;
  readonly name: string[] = [];
  readonly session: SessionFields[] = [];
  readonly result: string[] = [];
  readonly action: string[] = [];
  readonly rule: string[] = [];

  constructor(capacity: number) {
    this.atMs = new Float64Array(capacity);
    this.lastAtMs = new Float64Array(capacity);
    this.score = new Float64Array(capacity);
    this.qtype = new Uint16Array(capacity);
    this.rcode = new Uint16Array(capacity);
    this.count = new Uint32Array(capacity);
  }

  push(atMs: number, name: string, qtype: number, session: SessionFields, result: string, action: string, rule: string, rcode: number, score: number | undefined): number {
    const i = this.n++;
    if (i === this.atMs.length) this.#grow();
    this.atMs[i] = atMs;
    this.lastAtMs[i] = atMs;
    this.score[i] = score ?? NaN;
    this.qtype[i] = qtype;
    this.rcode[i] = rcode;
    this.count[i] = 1;
    this.name.push(name);
    this.session.push(session);
    this.result.push(result);
    this.action.push(action);
    this.rule.push(rule);
    return i;
  }

  #grow(): void {
    const cap = this.atMs.length * 2;
    const f64 = (a: Float64Array): Float64Array => { const b = new Float64Array(cap); b.set(a); return b; };
    const u16 = (a: Uint16Array): Uint16Array => { const b = new Uint16Array(cap); b.set(a); return b; };
    this.atMs = f64(this.atMs);
    this.lastAtMs = f64(this.lastAtMs);
    this.score = f64(this.score);
    this.qtype = u16(this.qtype);
    this.rcode = u16(this.rcode);
    const count = new Uint32Array(cap);
    count.set(this.count);
    this.count = count;
  }
}

/** Rows `start` (inclusive) to `end` of one batch: what one transaction writes. */
export interface Slice { readonly rows: Rows; readonly start: number; readonly end: number }

/**
 * A slice as the writer thread gets it: the numbers copied out of the columns, every string but the names once
 * in `strings`, and each row's session id, user, role, type, result, action and rule as indexes into it.
 */
interface SliceMessage {
  readonly n: number;
  readonly atMs: Float64Array; readonly lastAtMs: Float64Array; readonly score: Float64Array;
  readonly qtype: Uint16Array; readonly rcode: Uint16Array; readonly count: Uint32Array;
  readonly name: string[];
  readonly strings: string[];
  readonly refs: Uint32Array;
}
const REFS_PER_ROW = 7; // WRITER_SOURCE reads them in this order

export function sliceMessage({ rows, start, end }: Slice): SliceMessage {
  const n = end - start;
  const strings: string[] = [];
  const index = new Map<string, number>();
  const refs = new Uint32Array(n * REFS_PER_ROW);
  const ref = (v: string): number => {
    let k = index.get(v);
    if (k === undefined) index.set(v, (k = strings.push(v) - 1));
    return k;
  };
  for (let i = 0; i < n; i++) {
    const s = rows.session[start + i]!;
    const o = i * REFS_PER_ROW;
    refs[o] = ref(s.id);
    refs[o + 1] = ref(s.user);
    refs[o + 2] = ref(s.role);
    refs[o + 3] = ref(s.type);
    refs[o + 4] = ref(rows.result[start + i]!);
    refs[o + 5] = ref(rows.action[start + i]!);
    refs[o + 6] = ref(rows.rule[start + i]!);
  }
  return {
    n, strings, refs, name: rows.name.slice(start, end),
    atMs: rows.atMs.slice(start, end), lastAtMs: rows.lastAtMs.slice(start, end), score: rows.score.slice(start, end),
    qtype: rows.qtype.slice(start, end), rcode: rows.rcode.slice(start, end), count: rows.count.slice(start, end),
  };
}

export const FIRST_CAPACITY = 1024;

// The writer thread's code: plain JS run with `eval` (the same from src/ under vitest and from dist/), given the
// file and better-sqlite3's path; one message is one batch, one transaction, one answer.
const WRITER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.file);
db.pragma('busy_timeout = 2000');
db.pragma('synchronous = NORMAL');
db.pragma('cache_size = -' + workerData.pageCacheKib);
const insert = db.prepare(workerData.insert);
const trimById = db.prepare('DELETE FROM query_log WHERE id <= (SELECT MAX(id) FROM query_log) - ?');
const trimByAge = db.prepare('DELETE FROM query_log WHERE at_ms < ?');
const reversed = (n) => n.toLowerCase().replace(/\\.$/, '').split('.').reverse().join('.');
const write = db.transaction((m) => {
  const r = m.rows;
  const t = r.strings;
  for (let i = 0; i < r.n; i++) {
    const o = i * 7;
    const score = r.score[i];
    insert.run(r.atMs[i], r.name[i], reversed(r.name[i]), r.qtype[i], t[r.refs[o]], t[r.refs[o + 1]], t[r.refs[o + 2]], t[r.refs[o + 3]],
      t[r.refs[o + 4]], t[r.refs[o + 5]], t[r.refs[o + 6]], r.rcode[i], Number.isNaN(score) ? null : score, r.count[i], r.lastAtMs[i]);
  }
  trimById.run(m.maxRows);
  trimByAge.run(m.cutoffMs);
});
parentPort.on('message', (m) => {
  if (m.stop) { db.close(); parentPort.postMessage({ id: m.id }); return; }
  try { write(m); parentPort.postMessage({ id: m.id }); } catch (err) { parentPort.postMessage({ id: m.id, error: String((err && err.message) || err) }); }
});
`;
export const INSERT_SQL = `INSERT INTO query_log (at_ms, name, rname, qtype, session_id, user, role, session_type, result, action, rule, rcode, score, count, last_at_ms)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

/** The worker thread that writes the query log's batches; if it dies, the log writes on the event loop again. */
export class WriterThread {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, { ok: () => void; fail: (err: Error) => void }>();
  #nextId = 0;
  alive = true;

  constructor(file: string, pageCacheKib: number, log: Logger | undefined) {
    const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
    this.#worker = new Worker(WRITER_SOURCE, { eval: true, workerData: { file, sqlite, insert: INSERT_SQL, pageCacheKib } });
    this.#worker.unref(); // idle, never what keeps the process up; while a batch is out, it is (see #send)
    this.#worker.on('message', (m: { id: number; error?: string }) => {
      const w = this.#waiting.get(m.id);
      this.#waiting.delete(m.id);
      if (this.#waiting.size === 0) this.#worker.unref();
      if (m.error === undefined) w?.ok();
      else w?.fail(new Error(m.error));
    });
    const dead = (why: string): void => {
      if (!this.alive) return;
      this.alive = false;
      log?.error({ err: why }, 'the query log writer thread stopped; writing on the event loop from now on');
      for (const w of this.#waiting.values()) w.fail(new Error(`writer thread stopped: ${why}`));
      this.#waiting.clear();
    };
    this.#worker.on('error', (err) => dead(messageOf(err)));
    this.#worker.on('exit', (code) => dead(`exit ${code}`));
  }

  #send(message: object): Promise<void> {
    const id = ++this.#nextId;
    return new Promise<void>((ok, fail) => {
      this.#waiting.set(id, { ok, fail });
      this.#worker.ref(); // a batch in flight keeps the process up until it is on disk (the last one at a stop)
      this.#worker.postMessage({ ...message, id });
    });
  }

  write(rows: SliceMessage, maxRows: number, cutoffMs: number): Promise<void> {
    return this.#send({ rows, maxRows, cutoffMs });
  }

  async stop(): Promise<void> {
    if (this.alive) await this.#send({ stop: true }).catch(() => undefined);
    this.alive = false;
    await this.#worker.terminate();
  }
}
