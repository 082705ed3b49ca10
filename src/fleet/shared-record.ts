// fleet.redis: the shared record in Redis and the writes to it. Each change a replica makes goes into the record
// (hashes `{fleet.name}:sessions`, `:quarantines`, `:gates`, `:deny-entries`, the list `:audit`) and onto the
// channel `{fleet.name}:events` in one MULTI; the learned deny list is written entry by entry (an add or a
// removal of one domain, the later one winning, so concurrent changes of different entries all hold); address
// claims (`{fleet.name}:addr:<cidr>`) are one Lua script for all of a session's addresses, so one of two sessions
// claiming an address at once wins; registration tokens used and sessions ended (`:token:<hash>`, `:ended:<sid>`)
// are what every replica checks, so a token of an ended session is refused by all of them. Owns the key layout and
// the scripts; never decides what changes (src/fleet/redis-fleet.ts queues and sends, the replicas apply).
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { messageOf } from '../errors.js';
import { parseCidr } from '../ops/config.js';
import type { AuditEntry, QuarantineGate, QuarantineRecord, Store } from '../store.js';
import type { RegistrationToken, SessionMeta } from '../sessions/directory.js';

export type LearnedDenyEntry = ReturnType<Store['listLearnedDeny']>[number];

/** What replicas tell each other: the workers' session events, and the records the workers share through their common store. */
export type FleetEvent =
  // `token`: the registration token's id (never the token) and expiry; `unchecked`: Redis could not be asked whether
  // it was ended when it was posted (checked when this is sent). `endedAtMs`: ended (its tokens refused from then on).
  | { readonly kind: 'session.put'; readonly meta: SessionMeta; readonly token?: RegistrationToken; readonly unchecked?: true }
  | { readonly kind: 'session.drop'; readonly id: string; readonly endedAtMs?: number }
  | { readonly kind: 'quarantine.record'; readonly record: QuarantineRecord }
  | { readonly kind: 'quarantine.gate'; readonly gate: QuarantineGate }
  | { readonly kind: 'deny.put'; readonly entry: LearnedDenyEntry }
  | { readonly kind: 'deny.drop'; readonly domain: string; readonly atMs: number }
  /** The whole list as one snapshot: what releases before per-entry changes queued; sent as one deny.put per entry. */
  | { readonly kind: 'deny.list'; readonly entries: readonly LearnedDenyEntry[] }
  | { readonly kind: 'audit'; readonly entry: Omit<AuditEntry, 'id'> };

// Claims every address key for one session, or none: the first claimant of an address wins until its session ends or expires.
const CLAIM = `
for i, k in ipairs(KEYS) do local v = redis.call('GET', k); if v and v ~= ARGV[1] then return v end end
for i, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1], 'PX', ARGV[2]) end
return false`;
// Writes a quarantine record unless the shared one is already further on (open < confirmed < released), atomically.
const PUT_RECORD = `
local rank = { open = 0, confirmed = 1, released = 2 }
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and rank[cjson.decode(old).state] > rank[ARGV[3]] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`;
// One learned deny entry added (ARGV[4] = '1') or removed ('0', kept as a tombstone with its time): written and
// published only if it is not older than what the record holds for that domain; at the same instant an add wins
// (a deny list errs on the side of blocking). So every replica, applying the channel in order, ends where Redis is.
const DENY_ENTRY = `
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local o = cjson.decode(old)
  local at = tonumber(o.removedAtMs or o.addedAtMs)
  local stamp = tonumber(ARGV[3])
  if at > stamp or (at == stamp and ARGV[4] == '0' and o.removedAtMs == nil) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1`;
// A registration token used (KEYS[1] `token:<sha256 of its id>`, holding its first use, until the token expires):
// refused, with the session's end, if its session (KEYS[2] `ended:<sid>`) was ended at or after that first use. The
// latest expiry of the session's tokens (KEYS[3] `tokens-until:<sid>`) bounds how long the end must be kept.
const USE_TOKEN = `
local used = redis.call('GET', KEYS[1])
if not used then
  used = ARGV[1]
  redis.call('SET', KEYS[1], used, 'PX', ARGV[2])
  local u = redis.call('GET', KEYS[3])
  if (not u) or tonumber(u) < tonumber(ARGV[3]) then redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[2]) end
  if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
end
local ended = redis.call('GET', KEYS[2])
if ended and tonumber(ended) >= tonumber(used) then return ended end
return false`;
// A session ended (KEYS[1] `ended:<sid>` = the latest end): kept while any of its tokens is valid, and a day at least
// (an end may reach Redis before the registration it ends, queued on a replica cut off from it).
const END_TOKENS = `
local keep = 86400000
local u = redis.call('GET', KEYS[2])
if u and tonumber(u) - tonumber(ARGV[2]) > keep then keep = tonumber(u) - tonumber(ARGV[2]) end
local e = redis.call('GET', KEYS[1])
if (not e) or tonumber(e) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'PX', math.floor(keep)) end
return 1`;

/** What sending a change found: a registration whose token belonged to a session already ended (a replay). */
export interface SendResult {
  readonly replayed?: { readonly meta: SessionMeta; readonly endedAtMs: number };
}

/** A removed learned deny entry as the shared record keeps it (so an older add arriving later does not bring it back). */
export interface DenyTombstone {
  readonly domain: string;
  readonly removedAtMs: number;
}
const UNCLAIM = `for i, k in ipairs(KEYS) do if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end end return 0`;

export class SharedRecord {
  readonly #redis: Redis;
  readonly #k: (suffix: string) => string;
  readonly #nodeId: string;
  readonly #nowMs: () => number;
  readonly #log: Logger;

  constructor(redis: Redis, key: (suffix: string) => string, nodeId: string, nowMs: () => number, log: Logger) {
    this.#redis = redis;
    this.#k = key;
    this.#nodeId = nodeId;
    this.#nowMs = nowMs;
    this.#log = log;
  }

  /** Claims every address of the session until it expires; the id of the live session holding one already, else undefined. */
  async claim(meta: SessionMeta): Promise<string | undefined> {
    const holder = await this.#redis.eval(CLAIM, meta.addresses.length, ...this.#keys(meta), meta.id, String(Math.max(1, meta.expiresAtMs - this.#nowMs())));
    return typeof holder === 'string' ? holder : undefined;
  }

  /**
   * Records a registration token's use (its first use kept until it expires); the time its session was ended if
   * that was at or after the token's first use (the token is then refused), else undefined.
   */
  async useToken(token: RegistrationToken, sessionId: string, usedAtMs: number): Promise<number | undefined> {
    const id = createHash('sha256').update(token.id).digest('hex');
    const ttl = String(Math.max(1, token.expiresAtMs - this.#nowMs()));
    const ended = await this.#redis.eval(USE_TOKEN, 3, this.#k(`token:${id}`), this.#k(`ended:${sessionId}`), this.#k(`tokens-until:${sessionId}`), String(usedAtMs), ttl, String(token.expiresAtMs));
    return typeof ended === 'string' ? Number(ended) : undefined;
  }

  /** Gives back the session's claims (only those it still holds). */
  async unclaim(meta: Pick<SessionMeta, 'id' | 'addresses'>): Promise<void> {
    await this.#redis.eval(UNCLAIM, meta.addresses.length, ...this.#keys(meta), meta.id);
  }

  /** One key per address, in one spelling: `10.0.0.1` is `10.0.0.1/32`, `fd00:0::1/128` is `fd00::1/128`. */
  #keys(meta: Pick<SessionMeta, 'addresses'>): string[] {
    return meta.addresses.map((a) => {
      const c = parseCidr(a);
      if (c === undefined) return this.#k(`addr:${a}`);
      // The URL parser writes an IPv6 address in its canonical (RFC 5952) form.
      const address = c.family === 6 ? new URL(`http://[${c.address}]/`).hostname.slice(1, -1) : c.address;
      return this.#k(`addr:${address}/${c.prefix}`);
    });
  }

  /** One change into the shared record and onto the channel, atomically. */
  async send(event: FleetEvent): Promise<SendResult> {
    const m = this.#redis.multi();
    let published = false;
    switch (event.kind) {
      case 'session.put': {
        // Posted while Redis could not be asked: was its token one of a session ended elsewhere? Then it is not
        // shared (no other replica takes it in); the sender ends it.
        if (event.token !== undefined && event.unchecked === true) {
          const endedAtMs = await this.useToken(event.token, event.meta.id, event.meta.registeredAtMs);
          if (endedAtMs !== undefined) return { replayed: { meta: event.meta, endedAtMs } };
        }
        // Queued while Redis was away, the claim was not made then: made now; a conflict is the partition's (logged).
        const holder = await this.claim(event.meta);
        if (holder !== undefined) this.#log.error({ session: event.meta.id, held_by: holder, addresses: event.meta.addresses }, 'a session registered during a partition shares an address with a session registered elsewhere: both hold until one ends');
        m.hset(this.#k('sessions'), event.meta.id, JSON.stringify(event.meta));
        break;
      }
      case 'session.drop': {
        const meta = await this.#redis.hget(this.#k('sessions'), event.id);
        if (meta !== null) await this.unclaim(JSON.parse(meta) as SessionMeta);
        m.hdel(this.#k('sessions'), event.id);
        if (event.endedAtMs !== undefined) m.eval(END_TOKENS, 2, this.#k(`ended:${event.id}`), this.#k(`tokens-until:${event.id}`), String(event.endedAtMs), String(this.#nowMs()));
        break;
      }
      case 'quarantine.record':
        // A decision is never undone by an older state written later (two replicas deciding at once).
        m.eval(PUT_RECORD, 1, this.#k('quarantines'), event.record.id, JSON.stringify(event.record), event.record.state);
        break;
      case 'quarantine.gate':
        m.hset(this.#k('gates'), `${event.gate.sessionId} ${event.gate.quarantineId}`, JSON.stringify(event.gate));
        break;
      case 'deny.put':
      case 'deny.drop':
      case 'deny.list': {
        // Published by the script, only when it changed the record.
        const puts = event.kind === 'deny.list' ? event.entries.map((entry) => ({ kind: 'deny.put' as const, entry })) : [event];
        for (const e of puts) {
          const [domain, value, stamp] = e.kind === 'deny.put'
            ? [e.entry.domain, JSON.stringify(e.entry), e.entry.addedAtMs]
            : [e.domain, JSON.stringify({ domain: e.domain, removedAtMs: e.atMs } satisfies DenyTombstone), e.atMs];
          m.eval(DENY_ENTRY, 1, this.#k('deny-entries'), domain, value, String(stamp), e.kind === 'deny.put' ? '1' : '0', this.#k('events'), JSON.stringify({ o: this.#nodeId, e }));
        }
        published = true;
        break;
      }
      case 'audit':
        // The shared audit log, newest last, bounded; every replica also keeps it in its own store.
        m.rpush(this.#k('audit'), JSON.stringify(event.entry));
        m.ltrim(this.#k('audit'), -100_000, -1);
        break;
    }
    if (!published) m.publish(this.#k('events'), JSON.stringify({ o: this.#nodeId, e: event }));
    const results = await m.exec();
    const failed = results?.find(([err]) => err !== null);
    if (results === null || failed !== undefined) throw new Error(`MULTI failed: ${failed === undefined ? 'aborted' : messageOf(failed[0])}`);
    return {};
  }

}
