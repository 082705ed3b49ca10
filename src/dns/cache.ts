// The answer cache in front of the upstreams: raw replies kept for their TTL (capped), served with
// TTLs decremented; negative answers for min(SOA TTL, SOA MINIMUM) (RFC 2308 §5); SERVFAIL for a few
// seconds at most; identical in-flight queries coalesced. Key: name, type, class and the DO bit.
// Serve-stale (RFC 8767, `cache.serve_stale`): an expired answer is kept (in the same LRU, so the entry bound holds)
// until `max_stale_s` past its expiry; when a refresh finds every upstream failing (or answering SERVFAIL) it is
// served with `answer_ttl_s` TTLs and EDE 3, and for `servfail_ttl_s` after that failure it is served at once
// without asking (RFC 8767's failure recheck timer); then the next query tries the upstreams again.
import { LRUCache } from 'lru-cache';
import type { Metrics } from '../ops/telemetry.js';
import type { Resolution, Resolver } from './upstream.js';
import { RCODE, type Query, type Reply } from './wire.js';

export interface CacheConfig {
  readonly max_entries: number;
  readonly max_ttl_s: number;
  readonly negative_max_ttl_s: number;
  readonly servfail_ttl_s: number;
  readonly serve_stale: { readonly enabled: boolean; readonly max_stale_s: number; readonly answer_ttl_s: number };
}

/**
 * What a cached entry carries for the query path: `judged` is whatever the pipeline keeps beside the answer (the
 * policy's memo of the name, see pipeline.ts), written only there; the cache never reads it.
 */
export interface CacheSlot {
  judged: unknown;
}

/** A resolver that can hand out the entry a query would be answered from (CachingResolver); any Resolver is one. */
export interface SlottedResolver extends Resolver {
  slotFor?(q: Query): CacheSlot | undefined;
}

interface Entry extends CacheSlot {
  /** An answer, or the failure of every upstream (kept like an upstream SERVFAIL, servfail_ttl_s). */
  readonly reply: Reply | Extract<Resolution, { ok: false }>;
  readonly storedAtMs: number;
  readonly expiresAtMs: number;
  /** The Resolution last handed out for this entry, reused while its age in seconds is the same. */
  served: (Resolution & { ok: true }) | undefined;
  /** When a refresh of this expired entry last failed (and it was served stale instead); -Infinity: never. */
  staleFailedAtMs: number;
}

/**
 * The most common question (type A, class IN, DO clear) is keyed by the name alone: that string is
 * the one the policy already looked up, so its hash is computed once per query. Every other key
 * carries \x01 separators, which no name text can contain (wire.ts writes bytes ≤ 0x20 as \DDD), so
 * the two kinds never collide.
 */
export function cacheKey(q: Query): string {
  const dnssecOk = q.edns?.dnssecOk === true;
  if (q.type === 1 && q.class === 1 && !dnssecOk) return q.name;
  return `${q.name}\x01${q.type}\x01${q.class}\x01${dnssecOk ? 1 : 0}`;
}

export class CachingResolver implements Resolver {
  readonly #next: Resolver;
  readonly #config: CacheConfig;
  readonly #metrics: Metrics;
  readonly #nowMs: () => number;
  readonly #entries: LRUCache<string, Entry> | undefined;
  readonly #inflight = new Map<string, Promise<Resolution>>();

  constructor(next: Resolver, config: CacheConfig, metrics: Metrics, nowMs: () => number) {
    this.#next = next;
    this.#config = config;
    this.#metrics = metrics;
    this.#nowMs = nowMs;
    this.#entries = config.max_entries > 0 ? new LRUCache<string, Entry>({ max: config.max_entries }) : undefined;
  }

  get size(): number {
    return this.#entries?.size ?? 0;
  }

  /** Drops every entry (tests and `POST /v1/cache/flush`). */
  clear(): void {
    this.#entries?.clear();
    this.#metrics.cacheEntries.set(0);
  }

  /**
   * The entry `q` would be answered from (of any age: resolve decides), or undefined. Not a use of the entry: a
   * query looked at and then blocked leaves the LRU order as it was; resolve() is what counts.
   */
  slotFor(q: Query): CacheSlot | undefined {
    return this.#entries?.peek(cacheKey(q));
  }

  /** One key, one lookup: a hit is returned at once; a miss joins or starts the upstream query. */
  resolve(q: Query): Resolution | Promise<Resolution> {
    const key = cacheKey(q);
    return this.#cached(key) ?? this.#fetch(key, q);
  }

  #cached(key: string): Resolution | undefined {
    const hit = this.#entries?.get(key);
    if (hit === undefined) return undefined;
    const nowMs = this.#nowMs();
    if (hit.expiresAtMs <= nowMs) {
      if (this.#staleUsable(hit, nowMs)) {
        // A refresh failed a moment ago: answer stale now rather than wait out the upstreams again.
        if (nowMs - hit.staleFailedAtMs < this.#config.servfail_ttl_s * 1000) return this.#serveStale(hit);
        return undefined; // try the upstreams; #fetch falls back to this entry if they fail
      }
      this.#entries!.delete(key);
      this.#metrics.cacheEntries.set(this.#entries!.size);
      return undefined;
    }
    this.#metrics.cacheHits.inc(0);
    if ('ok' in hit.reply) return hit.reply;
    // Hits within the same second share one Resolution (it is read-only): no allocation per hit.
    const ageSec = Math.floor((nowMs - hit.storedAtMs) / 1000);
    if (hit.served?.ageSec !== ageSec) hit.served = { ok: true, reply: hit.reply, via: 'cache', ageSec };
    return hit.served;
  }

  #fetch(key: string, q: Query): Promise<Resolution> {
    this.#metrics.cacheMisses.inc(0);
    const pending = this.#inflight.get(key);
    if (pending !== undefined) return pending;
    const started = Promise.resolve(this.#next.resolve(q)).then((resolution) => {
      this.#inflight.delete(key);
      if (!resolution.ok || resolution.reply.rcode === RCODE.SERVFAIL) {
        const stale = this.#staleEntry(key);
        if (stale !== undefined) {
          stale.staleFailedAtMs = this.#nowMs();
          return this.#serveStale(stale); // the stale entry stays as it is: no failure is remembered over it
        }
      }
      if (resolution.ok) this.#store(key, resolution.reply);
      // During an outage a repeated name fails at once for a few seconds instead of waiting out every timeout.
      else this.#remember(key, resolution, this.#config.servfail_ttl_s);
      return resolution;
    });
    this.#inflight.set(key, started);
    return started;
  }

  /** An expired entry that may still be served stale: an answer (not a failure, not SERVFAIL) within max_stale_s. */
  #staleUsable(entry: Entry, nowMs: number): entry is Entry & { reply: Reply } {
    const s = this.#config.serve_stale;
    return s.enabled && !('ok' in entry.reply) && entry.reply.rcode !== RCODE.SERVFAIL && nowMs - entry.expiresAtMs <= s.max_stale_s * 1000;
  }

  #staleEntry(key: string): (Entry & { reply: Reply }) | undefined {
    if (!this.#config.serve_stale.enabled) return undefined;
    const entry = this.#entries?.peek(key);
    const nowMs = this.#nowMs();
    return entry !== undefined && entry.expiresAtMs <= nowMs && this.#staleUsable(entry, nowMs) ? entry : undefined;
  }

  #serveStale(entry: Entry & { reply: Reply }): Resolution {
    this.#metrics.cacheStaleServed.inc();
    return { ok: true, reply: entry.reply, via: 'cache', ageSec: 0, staleTtlSec: this.#config.serve_stale.answer_ttl_s };
  }

  #store(key: string, reply: Reply): void {
    this.#remember(key, reply, this.#ttlFor(reply));
  }

  #remember(key: string, reply: Entry['reply'], ttlSec: number): void {
    if (this.#entries === undefined || ttlSec <= 0) return;
    const nowMs = this.#nowMs();
    this.#entries.set(key, { reply, storedAtMs: nowMs, expiresAtMs: nowMs + ttlSec * 1000, served: undefined, staleFailedAtMs: -Infinity, judged: undefined });
    this.#metrics.cacheEntries.set(this.#entries.size);
  }

  #ttlFor(reply: Reply): number {
    const c = this.#config;
    if (reply.tc) return 0;
    switch (reply.rcode) {
      case RCODE.NOERROR:
        // NODATA (no answers) is negative and capped like NXDOMAIN; without an SOA it is not cached.
        if (reply.answerCount === 0) return Math.min(reply.cacheTtlSec ?? 0, c.negative_max_ttl_s);
        return Math.min(reply.cacheTtlSec ?? 0, c.max_ttl_s);
      case RCODE.NXDOMAIN:
        return Math.min(reply.cacheTtlSec ?? 0, c.negative_max_ttl_s);
      case RCODE.SERVFAIL:
        return c.servfail_ttl_s;
      default:
        return 0;
    }
  }
}
