// `DomainAges`: the age in days of a registrable domain for scoring. Sources in order: memory
// cache, offline feed, store (earlier answers survive restarts), RDAP, WHOIS (TLDs without RDAP),
// first sighting. A lookup waits at most its budget; the rest finishes in the background,
// deduplicated per domain and capped in concurrency. Never throws from lookup; never scores.
import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { LRUCache } from 'lru-cache';
import { ConfigError, messageOf } from '../errors.js';
import type { DomainAgeConfig } from './schema.js';
import { DomainAgeStore, type AgeResult, type AgeSource } from './store.js';
import { RdapBootstrap, fetchBootstrapText, queryRdap, readBootstrapFile, readShippedBootstrap, type RegistryAnswer } from './rdap.js';
import { parseWhoisServer, queryWhois, type WhoisServer } from './whois.js';

export type { AgeResult, AgeSource } from './store.js';

export interface DomainAgeDeps {
  nowMs(): number;
  /** pino-compatible */
  logger?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void; debug(obj: object, msg: string): void };
  /** Wired to dnswarden_domain_age_lookups_total{source,result}. */
  countLookup?(source: AgeSource, result: AgeResult): void;
  /** The app's open SQLite handle; without one, answers live in a private in-memory database. */
  db?: import('better-sqlite3').Database;
}

/** An age with where it came from: `first_seen` is only a lower bound on the real age. */
export interface DomainAge {
  readonly days: number;
  readonly createdMs: number;
  readonly source: AgeSource;
}

export interface DomainAgeStats {
  readonly cached: number;
  readonly inFlight: number;
  readonly queued: number;
  /** Cold lookups that returned "unknown" because the budget ran out (they finish in the background). */
  readonly budgetExceeded: number;
  /** Lookups skipped because max_concurrent + max_queued were taken. */
  readonly overloaded: number;
  readonly bootstrapTlds: number;
  readonly bootstrapPublication: string;
}

interface Entry {
  readonly createdMs: number | undefined;
  readonly source: AgeSource;
  readonly result: AgeResult;
  readonly expiresMs: number;
}

const DAY_MS = 86_400_000;
// The first .com was registered on 1985-03-15; anything earlier is a parsing accident.
export const MIN_CREATED_MS = Date.UTC(1985, 0, 1);
// Date-only registry formats carry no zone: allow a day of skew, then clamp the age to 0.
const FUTURE_SKEW_MS = DAY_MS;
const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$/;
const BUDGET_EXPIRED = Symbol('budget expired');

/** True when `createdMs` can be a real registration date seen at `nowMs`. */
export function isPlausibleCreation(createdMs: number, nowMs: number): boolean {
  return Number.isFinite(createdMs) && createdMs >= MIN_CREATED_MS && createdMs <= nowMs + FUTURE_SKEW_MS;
}

export class DomainAges {
  readonly #config: DomainAgeConfig;
  readonly #deps: DomainAgeDeps;
  readonly #cache: LRUCache<string, Entry>;
  readonly #store: DomainAgeStore;
  readonly #ownDb: Database.Database | undefined;
  readonly #feed: ReadonlyMap<string, number>;
  readonly #rdapServers: ReadonlyMap<string, string>;
  readonly #whoisServers: ReadonlyMap<string, WhoisServer>;
  readonly #inflight = new Map<string, Promise<Entry | undefined>>();
  readonly #waiters: Array<(granted: boolean) => void> = [];
  readonly #abort = new AbortController();
  #bootstrap: RdapBootstrap | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  #refreshing: Promise<boolean> | undefined;
  #active = 0;
  #closed = false;
  #budgetExceeded = 0;
  #overloaded = 0;

  constructor(config: DomainAgeConfig, deps: DomainAgeDeps) {
    this.#config = config;
    this.#deps = deps;
    this.#cache = new LRUCache<string, Entry>({ max: config.cache_size });
    this.#ownDb = deps.db === undefined ? new Database(':memory:') : undefined;
    this.#store = new DomainAgeStore(deps.db ?? this.#ownDb!);
    this.#rdapServers = new Map(Object.entries(config.rdap.servers));
    this.#whoisServers = new Map(
      Object.entries(config.whois.servers).map(([tld, value]) => {
        const server = parseWhoisServer(value);
        if (server === undefined) throw new ConfigError(`domain_age.whois.servers.${tld}`, `expected "host" or "host:port", got ${JSON.stringify(value)}`);
        return [tld, server] as const;
      }),
    );
    if (!config.enabled) {
      this.#feed = new Map();
      return;
    }
    const nowMs = deps.nowMs();
    this.#feed = config.feed.path === '' ? new Map() : this.#loadFeed(config.feed.path, nowMs);
    this.#bootstrap = this.#loadBootstrap();
    this.#store.prune(nowMs);
    if (config.first_seen.enabled) this.#store.firstSeenEpochMs(nowMs); // sightings are meaningful from here on
    if (config.rdap.enabled && config.rdap.bootstrap_url !== '') {
      void this.refreshBootstrap();
      this.#refreshTimer = setInterval(() => void this.refreshBootstrap(), config.rdap.bootstrap_refresh_sec * 1000);
      this.#refreshTimer.unref();
    }
  }

  /** Age in whole days, or undefined (unknown) when no source answered within `budgetMs`. */
  async lookup(registrableDomain: string, budgetMs?: number): Promise<number | undefined> {
    return (await this.lookupAge(registrableDomain, budgetMs))?.days;
  }

  /** As `lookup`, with the source (a `first_seen` age is a lower bound, not a registration date). */
  async lookupAge(registrableDomain: string, budgetMs: number = this.#config.budget_ms): Promise<DomainAge | undefined> {
    if (!this.#config.enabled || this.#closed) return undefined;
    const nowMs = this.#deps.nowMs();
    const hit = this.#fresh(registrableDomain, nowMs);
    if (hit !== undefined) return ageOf(hit, nowMs);
    const name = normalizeDomain(registrableDomain);
    if (name === undefined) return undefined;
    const local = (name === registrableDomain ? undefined : this.#fresh(name, nowMs)) ?? this.#fromLocal(name, nowMs);
    if (local !== undefined) return ageOf(local, nowMs);

    let pending = this.#inflight.get(name);
    if (pending === undefined) {
      pending = this.#resolveRemote(name)
        .catch((err: unknown) => {
          this.#deps.logger?.warn({ domain: name, err: messageOf(err) }, 'domain age lookup failed');
          return undefined;
        })
        .finally(() => this.#inflight.delete(name));
      this.#inflight.set(name, pending);
    }
    const entry = await withinBudget(pending, budgetMs);
    if (entry === BUDGET_EXPIRED) {
      this.#budgetExceeded++;
      return undefined;
    }
    return entry === undefined ? undefined : ageOf(entry, this.#deps.nowMs());
  }

  /** Memory only, synchronous, expiry ignored (a known date stays true); for offline replay. */
  peek(registrableDomain: string): number | undefined {
    const entry = this.#cache.peek(normalizeDomain(registrableDomain) ?? registrableDomain);
    return entry === undefined ? undefined : ageOf(entry, this.#deps.nowMs())?.days;
  }

  stats(): DomainAgeStats {
    return {
      cached: this.#cache.size,
      inFlight: this.#inflight.size,
      queued: this.#waiters.length,
      budgetExceeded: this.#budgetExceeded,
      overloaded: this.#overloaded,
      bootstrapTlds: this.#bootstrap?.size ?? 0,
      bootstrapPublication: this.#bootstrap?.publication ?? 'none',
    };
  }

  /** Reloads the RDAP bootstrap from `rdap.bootstrap_url` (http(s) URL or file path); keeps the old one on failure. */
  refreshBootstrap(): Promise<boolean> {
    this.#refreshing ??= this.#fetchBootstrap().finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  /** Cancels network work, fails queued lookups as unknown, and waits for everything to settle. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    clearInterval(this.#refreshTimer);
    for (const waiter of this.#waiters.splice(0)) waiter(false);
    await Promise.allSettled([...this.#inflight.values(), this.#refreshing]);
    this.#ownDb?.close();
  }

  #fresh(name: string, nowMs: number): Entry | undefined {
    const entry = this.#cache.get(name);
    if (entry === undefined || entry.expiresMs <= nowMs) return undefined;
    this.#count('cache', resultOf(entry));
    return entry;
  }

  /** Feed then store: no network, no waiting. */
  #fromLocal(name: string, nowMs: number): Entry | undefined {
    const fedMs = this.#feed.get(name);
    if (fedMs !== undefined) {
      const entry: Entry = { createdMs: fedMs, source: 'feed', result: 'ok', expiresMs: nowMs + this.#config.positive_ttl_sec * 1000 };
      this.#cache.set(name, entry);
      this.#count('feed', 'ok');
      return entry;
    }
    let stored: ReturnType<DomainAgeStore['get']>;
    try {
      stored = this.#store.get(name, nowMs);
    } catch (err) {
      // A failing disk must not fail the query: the age is simply unknown until it recovers.
      this.#deps.logger?.warn({ domain: name, err: messageOf(err) }, 'domain age store read failed');
      return undefined;
    }
    if (stored === undefined) return undefined;
    const entry: Entry = { createdMs: stored.createdMs, source: stored.source, result: stored.result, expiresMs: stored.expiresMs };
    this.#cache.set(name, entry);
    this.#count('store', resultOf(entry));
    return entry;
  }

  async #resolveRemote(name: string): Promise<Entry | undefined> {
    if (!(await this.#acquire())) {
      if (!this.#closed) this.#overloaded++;
      return undefined;
    }
    let asked: { source: AgeSource; answer: RegistryAnswer } | undefined;
    try {
      asked = await this.#askRegistry(name);
    } finally {
      this.#release();
    }
    if (this.#abort.signal.aborted) return undefined; // cancelled answers are not answers: cache nothing
    const nowMs = this.#deps.nowMs();
    let answer = asked?.answer;
    if (answer?.kind === 'ok' && !isPlausibleCreation(answer.createdMs, nowMs)) {
      answer = { kind: 'error', detail: `implausible creation date ${new Date(answer.createdMs).toISOString()}` };
    }
    if (asked !== undefined && answer !== undefined) {
      this.#count(asked.source, answer.kind);
      if (answer.kind !== 'ok') this.#deps.logger?.debug({ domain: name, source: asked.source, result: answer.kind, detail: 'detail' in answer ? answer.detail : undefined }, 'domain age not found');
    }
    let entry: Entry;
    if (asked !== undefined && answer?.kind === 'ok') {
      entry = { createdMs: answer.createdMs, source: asked.source, result: 'ok', expiresMs: nowMs + this.#config.positive_ttl_sec * 1000 };
    } else if (asked !== undefined && answer?.kind === 'not_found') {
      // The registry says there is no such domain: a first sighting would be a made-up age.
      entry = { createdMs: undefined, source: asked.source, result: 'not_found', expiresMs: nowMs + this.#config.negative_ttl_sec * 1000 };
    } else {
      const seenMs = this.#firstSeen(name, nowMs);
      entry = {
        createdMs: seenMs,
        source: seenMs !== undefined ? 'first_seen' : (asked?.source ?? 'first_seen'),
        result: seenMs !== undefined ? 'ok' : (answer?.kind ?? 'not_found'),
        expiresMs: nowMs + this.#config.negative_ttl_sec * 1000,
      };
    }
    this.#cache.set(name, entry);
    this.#store.put({ domain: name, ...entry, checkedMs: nowMs, expiresMs: entry.expiresMs });
    return entry;
  }

  /** RDAP when the TLD has a server (config first, then bootstrap); WHOIS otherwise. */
  async #askRegistry(name: string): Promise<{ source: AgeSource; answer: RegistryAnswer } | undefined> {
    const { rdap, whois } = this.#config;
    const signal = this.#abort.signal;
    const rdapBase = rdap.enabled ? (longestSuffix(this.#rdapServers, name) ?? this.#bootstrap?.baseUrlFor(name)) : undefined;
    if (rdapBase !== undefined) {
      const answer = await queryRdap(rdapBase, name, { timeoutMs: rdap.timeout_ms, maxResponseBytes: rdap.max_response_bytes, signal });
      return { source: 'rdap', answer };
    }
    if (!whois.enabled) return undefined;
    const answer = await queryWhois(name, { server: longestSuffix(this.#whoisServers, name), timeoutMs: whois.timeout_ms, signal });
    return { source: 'whois', answer };
  }

  /**
   * First sighting as a last resort. It is only a lower bound on the real age, so it is reported
   * when it means something: the resolver had already been watching for `min_history_days` when
   * the name first appeared (so it is new here), or the sighting itself is that old (so it is old).
   */
  #firstSeen(name: string, nowMs: number): number | undefined {
    const { enabled, min_history_days } = this.#config.first_seen;
    if (!enabled) return undefined;
    const seenMs = this.#store.firstSeen(name, nowMs);
    const historyMs = min_history_days * DAY_MS;
    const meaningful = seenMs - this.#store.firstSeenEpochMs(nowMs) >= historyMs || nowMs - seenMs >= historyMs;
    this.#count('first_seen', meaningful ? 'ok' : 'not_found');
    return meaningful ? seenMs : undefined;
  }

  #acquire(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    if (this.#active < this.#config.max_concurrent) {
      this.#active++;
      return Promise.resolve(true);
    }
    if (this.#waiters.length >= this.#config.max_queued) return Promise.resolve(false);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #release(): void {
    const next = this.#waiters.shift();
    if (next !== undefined) next(true); // the slot passes straight to the next waiter
    else this.#active--;
  }

  #count(source: AgeSource, result: AgeResult): void {
    this.#deps.countLookup?.(source, result);
  }

  #loadFeed(path: string, nowMs: number): Map<string, number> {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError('domain_age.feed.path', `cannot read ${path}: ${messageOf(err)}`);
    }
    const { ages, rejected } = parseFeed(text, nowMs);
    this.#deps.logger?.info({ path, domains: ages.size, rejected }, 'domain age feed loaded');
    if (rejected > 0) this.#deps.logger?.warn({ path, rejected }, 'domain age feed lines skipped (bad domain or date)');
    return ages;
  }

  #loadBootstrap(): RdapBootstrap | undefined {
    const configured = this.#config.rdap.bootstrap_file;
    let loaded: RdapBootstrap | undefined;
    if (configured !== '') {
      try {
        loaded = readBootstrapFile(configured);
      } catch (err) {
        throw new ConfigError('domain_age.rdap.bootstrap_file', messageOf(err));
      }
    } else {
      loaded = readShippedBootstrap();
      if (loaded === undefined) this.#deps.logger?.warn({}, 'shipped RDAP bootstrap missing: RDAP only for domain_age.rdap.servers');
    }
    // A copy refreshed earlier and kept in the store wins when it is newer.
    const kept = RdapBootstrap.fromText(this.#store.getMeta('rdap_bootstrap') ?? '');
    if (kept !== undefined && (loaded === undefined || kept.publication > loaded.publication)) return kept;
    return loaded;
  }

  async #fetchBootstrap(): Promise<boolean> {
    const source = this.#config.rdap.bootstrap_url;
    if (source === '' || this.#closed) return false;
    try {
      const text = await fetchBootstrapText(source, this.#abort.signal, Math.max(this.#config.rdap.timeout_ms, 10_000));
      const parsed = RdapBootstrap.fromText(text);
      if (parsed === undefined) throw new Error('not an RDAP bootstrap file');
      if (this.#closed) return false;
      this.#bootstrap = parsed;
      this.#store.setMeta('rdap_bootstrap', text);
      this.#deps.logger?.info({ source, tlds: parsed.size, publication: parsed.publication }, 'RDAP bootstrap refreshed');
      return true;
    } catch (err) {
      if (!this.#closed) this.#deps.logger?.warn({ source, err: messageOf(err) }, 'RDAP bootstrap refresh failed; keeping the current one');
      return false;
    }
  }
}

/** Commercial NRD feed layout: `domain,created_date` per line, header optional, `#` comments. */
export function parseFeed(text: string, nowMs: number): { ages: Map<string, number>; rejected: number } {
  const ages = new Map<string, number>();
  let rejected = 0;
  let first = true;
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [rawDomain = '', rawDate = ''] = line.split(',').map((field) => field.trim().replace(/^"|"$/g, ''));
    const isHeader = first && /^domain/i.test(rawDomain) && !/^\d/.test(rawDate);
    first = false;
    if (isHeader) continue;
    const domain = normalizeDomain(rawDomain);
    const createdMs = parseFeedDate(rawDate);
    if (domain === undefined || createdMs === undefined || !isPlausibleCreation(createdMs, nowMs)) {
      rejected++;
      continue;
    }
    ages.set(domain, createdMs);
  }
  return { ages, rejected };
}

const FEED_DATE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

function parseFeedDate(text: string): number | undefined {
  if (!FEED_DATE.test(text)) return undefined;
  const iso = text.length === 10 ? `${text}T00:00:00Z` : /(?:Z|[+-]\d{2}:?\d{2})$/.test(text) ? text.replace(' ', 'T') : `${text.replace(' ', 'T')}Z`;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : undefined;
}

/** Lower-case, no trailing dot, at least two labels; undefined for anything else. */
export function normalizeDomain(name: string): string | undefined {
  const lower = name.toLowerCase();
  const trimmed = lower.endsWith('.') ? lower.slice(0, -1) : lower;
  return DOMAIN.test(trimmed) ? trimmed : undefined;
}

function longestSuffix<T>(table: ReadonlyMap<string, T>, name: string): T | undefined {
  if (table.size === 0) return undefined;
  let suffix = name;
  for (;;) {
    const value = table.get(suffix);
    if (value !== undefined) return value;
    const dot = suffix.indexOf('.');
    if (dot === -1) return undefined;
    suffix = suffix.slice(dot + 1);
  }
}

function resultOf(entry: Entry): AgeResult {
  return entry.createdMs !== undefined ? 'ok' : entry.result;
}

function ageOf(entry: Entry, nowMs: number): DomainAge | undefined {
  if (entry.createdMs === undefined) return undefined;
  return { days: Math.max(0, Math.floor((nowMs - entry.createdMs) / DAY_MS)), createdMs: entry.createdMs, source: entry.source };
}

async function withinBudget<T>(pending: Promise<T>, budgetMs: number): Promise<T | typeof BUDGET_EXPIRED> {
  if (budgetMs <= 0) return BUDGET_EXPIRED;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<typeof BUDGET_EXPIRED>((resolve) => {
    timer = setTimeout(() => resolve(BUDGET_EXPIRED), budgetMs);
  });
  try {
    return await Promise.race([pending, expired]);
  } finally {
    clearTimeout(timer);
  }
}
