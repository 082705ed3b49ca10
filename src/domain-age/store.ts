// SQLite persistence for domain ages: looked-up answers with their expiry (so a restart does not
// re-query), first sightings (the last-resort age), and small metadata (the first-seen epoch, a
// refreshed RDAP bootstrap). Uses the handle it is given; never opens files or decides policy.
import type { Database, Statement } from 'better-sqlite3';

/** Where an age came from (`cache` and `store` only ever label lookups, never stored rows). */
export type AgeSource = 'cache' | 'store' | 'feed' | 'rdap' | 'whois' | 'first_seen';
/** How a lookup ended: a date, a registry saying "no such domain", a failure, or the deadline. */
export type AgeResult = 'ok' | 'not_found' | 'error' | 'timeout';

export interface StoredAge {
  readonly domain: string;
  readonly createdMs: number | undefined;
  readonly source: AgeSource;
  readonly result: AgeResult;
  readonly checkedMs: number;
  readonly expiresMs: number;
}

interface AgeRow {
  domain: string;
  created_ms: number | null;
  source: string;
  result: string;
  checked_ms: number;
  expires_ms: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS domain_age (
  domain     TEXT PRIMARY KEY,
  created_ms INTEGER,
  source     TEXT NOT NULL,
  result     TEXT NOT NULL,
  checked_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS domain_first_seen (
  domain        TEXT PRIMARY KEY,
  first_seen_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS domain_age_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
`;

const SOURCES: ReadonlySet<string> = new Set<AgeSource>(['cache', 'store', 'feed', 'rdap', 'whois', 'first_seen']);
const RESULTS: ReadonlySet<string> = new Set<AgeResult>(['ok', 'not_found', 'error', 'timeout']);

export class DomainAgeStore {
  readonly #get: Statement<[string, number], AgeRow>;
  readonly #put: Statement<[string, number | null, string, string, number, number]>;
  readonly #seen: Statement<[string, number]>;
  readonly #seenAt: Statement<[string], { first_seen_ms: number }>;
  readonly #metaGet: Statement<[string], { value: string }>;
  readonly #metaPut: Statement<[string, string]>;
  readonly #metaInit: Statement<[string, string]>;
  readonly #prune: Statement<[number]>;

  constructor(db: Database) {
    db.exec(SCHEMA);
    this.#get = db.prepare('SELECT * FROM domain_age WHERE domain = ? AND expires_ms > ?');
    this.#put = db.prepare(
      'INSERT OR REPLACE INTO domain_age (domain, created_ms, source, result, checked_ms, expires_ms) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.#seen = db.prepare('INSERT OR IGNORE INTO domain_first_seen (domain, first_seen_ms) VALUES (?, ?)');
    this.#seenAt = db.prepare('SELECT first_seen_ms FROM domain_first_seen WHERE domain = ?');
    this.#metaGet = db.prepare('SELECT value FROM domain_age_meta WHERE key = ?');
    this.#metaPut = db.prepare('INSERT OR REPLACE INTO domain_age_meta (key, value) VALUES (?, ?)');
    this.#metaInit = db.prepare('INSERT OR IGNORE INTO domain_age_meta (key, value) VALUES (?, ?)');
    this.#prune = db.prepare('DELETE FROM domain_age WHERE expires_ms <= ?');
  }

  /** The stored answer for `domain` unless it has expired (or was written by a newer schema). */
  get(domain: string, nowMs: number): StoredAge | undefined {
    const row = this.#get.get(domain, nowMs);
    if (row === undefined || !SOURCES.has(row.source) || !RESULTS.has(row.result)) return undefined;
    return {
      domain: row.domain,
      createdMs: row.created_ms ?? undefined,
      source: row.source as AgeSource,
      result: row.result as AgeResult,
      checkedMs: row.checked_ms,
      expiresMs: row.expires_ms,
    };
  }

  put(age: StoredAge): void {
    this.#put.run(age.domain, age.createdMs ?? null, age.source, age.result, age.checkedMs, age.expiresMs);
  }

  /** When this resolver first saw `domain`; records `nowMs` if it never had. */
  firstSeen(domain: string, nowMs: number): number {
    this.#seen.run(domain, nowMs);
    return this.#seenAt.get(domain)?.first_seen_ms ?? nowMs;
  }

  /** When first sightings started being recorded on this store (set once, on first use). */
  firstSeenEpochMs(nowMs: number): number {
    this.#metaInit.run('first_seen_epoch_ms', String(nowMs));
    const stored = Number(this.#metaGet.get('first_seen_epoch_ms')?.value);
    return Number.isFinite(stored) ? stored : nowMs;
  }

  getMeta(key: string): string | undefined {
    return this.#metaGet.get(key)?.value;
  }

  setMeta(key: string, value: string): void {
    this.#metaPut.run(key, value);
  }

  /** Deletes expired answers; returns how many. First sightings are kept: they are the evidence. */
  prune(nowMs: number): number {
    return this.#prune.run(nowMs).changes;
  }
}
