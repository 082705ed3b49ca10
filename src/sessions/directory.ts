// Who may resolve: static sessions from config and sessions registered by the agent runtime with a
// signed JWT. Maps a source address to its live session (through an address index, so neither a
// lookup nor a registration's overlap check grows with the number of sessions); holds each session's window
// (written only by the policy's account(); started afresh by resetWindow on a release) and owns its bounded
// recent-query history. Never decides a verdict.
// Why it is long: one owner of who may resolve — static sessions, signed registrations with their renewals and
// ended tokens, the address claims and each session's history; split, two modules would share the claims.
// jose is loaded when a registration key or token is first handled: a resolver without dynamic
// sessions never needs it (it costs ~10 MB of RSS).
const jose = (): Promise<typeof import('jose')> => import('jose');
import { z } from 'zod';
import { AddressIndex, addressCount, addressKey, cidrKey, type AddressKey } from './address-index.js';
import { cidr, sessionTypeSchema, type StaticSession } from '../ops/config.js';
import type { VerifyKey } from './credentials.js';
import { ConfigError, WardenError, messageOf } from '../errors.js';

export type SessionType = z.infer<typeof sessionTypeSchema>;

export interface HistoryEntry {
  readonly atMs: number;
  readonly name: string;
  readonly qtype: number;
  readonly action: string;
  readonly rule: string;
  readonly rcode: number;
  readonly enforced: boolean;
  readonly eventId?: string;
  readonly score?: number;
  /** For verdicts that were not a plain answer: why, and every signal's value (quarantine evidence). */
  readonly reason?: string;
  readonly signals?: Readonly<Record<string, number>>;
  /** A row standing for several blocks of one kind in a row (a flood): how many, and when the last was. Absent: one. */
  count?: number;
  lastAtMs?: number;
}

export interface SessionMeta {
  readonly id: string;
  readonly user: string;
  readonly role: string;
  readonly type: SessionType;
  readonly addresses: readonly string[];
  readonly origin: 'static' | 'registered';
  readonly expiresAtMs: number; // Infinity for static sessions
  readonly registeredAtMs: number;
}

export interface Session<S> extends SessionMeta {
  /**
   * Per-session behaviour window (plain data): written only by the policy's account() through the pipeline, and
   * replaced whole only by resetWindow() (an analyst's release).
   */
  readonly state: S;
  readonly history: HistoryEntry[];
}

export type Admission<S> = { readonly session: Session<S> } | { readonly refused: 'no_session' | 'expired' };
const NO_SESSION = { refused: 'no_session' } as const;
const EXPIRED = { refused: 'expired' } as const;

const claimsSchema = z.object({
  sid: z.string().min(1).max(128),
  user: z.string().min(1).max(256),
  role: z.string().min(1).max(256),
  session_type: sessionTypeSchema,
  addresses: z.array(cidr).min(1).max(64),
  exp: z.number().int(),
  // What tells one token from another, for refusing a token whose session was ended (see tokenIdOf).
  jti: z.string().min(1).max(256).optional(),
  iat: z.number().optional(),
});

/** A registration token as remembered: an id (never the token itself) and when the token expires. */
export interface RegistrationToken {
  readonly id: string;
  readonly expiresAtMs: number;
}

/** The token's identity: its key and session, then its jti, or else when it was issued and expires. */
function tokenIdOf(kid: string, c: z.infer<typeof claimsSchema>): string {
  return JSON.stringify(c.jti !== undefined ? [kid, c.sid, 'jti', c.jti] : [kid, c.sid, 'iat', c.iat ?? null, 'exp', c.exp]);
}

/** A session's CIDRs as index keys (validated CIDRs: config and claims are checked before they get here). */
function keysOf(cidrs: readonly string[]): { key: AddressKey; len: number }[] {
  return cidrs.map((c) => {
    const k = cidrKey(c);
    if (k === undefined) throw new WardenError('ERR_BAD_CLAIMS', `not a CIDR: ${JSON.stringify(c)}`);
    return k;
  });
}

/** The CIDRs of `a` that `b` does not list (the same CIDR however it is spelled counts as listed). */
function cidrsNotIn(a: readonly string[], b: readonly string[]): string[] {
  const id = (k: { key: AddressKey; len: number }): string => `${k.key.join('.')}/${k.len}`;
  const listed = new Set(keysOf(b).map(id));
  const keys = keysOf(a);
  return a.filter((_, i) => !listed.has(id(keys[i]!)));
}

/** Whether two address lists (CIDRs) share an address (a quarantine follows its session's addresses). */
export function addressesOverlap(a: readonly string[], b: readonly string[]): boolean {
  const index = new AddressIndex<true>();
  for (const { key, len } of keysOf(a)) index.add(key, len, true);
  return keysOf(b).some(({ key, len }) => index.overlapping(key, len, () => true) !== undefined);
}

/** Default of sessions.max_addresses_per_session: one IPv4 /24 or IPv6 /120. */
const DEFAULT_MAX_ADDRESSES = 256;

// A cache from source address to session, so the hot path is one Map lookup; cleared on any change.
const ADDRESS_CACHE_MAX = 65_536;

export interface SessionStoreHooks {
  /** A verified registration (or renewal), before it is stored or takes effect: a throw refuses it. */
  registering?(meta: SessionMeta): void;
  /** Before `registering`: checks the token and claims the addresses beyond this process (fleet.redis); a throw refuses it. */
  claim?(meta: SessionMeta, token: RegistrationToken): Promise<void>;
  /** A claimed registration refused after all (by a later check or the store): the claim is given back. */
  unclaim?(meta: SessionMeta): void;
  /** Stores a registration (or renewal) and the token that made it. */
  saveRegistered(meta: SessionMeta, token: RegistrationToken): void;
  /** Forgets a registered session: ended (endedAtMs: its tokens are refused from now on) or expired. */
  deleteRegistered(id: string, endedAtMs?: number): void;
  /** If the token registered a session that was since ended: which, and when. */
  endedToken(tokenId: string): { sessionId: string; endedAtMs: number } | undefined;
  /** The stored recent-query history of a session (so a restart keeps it). */
  loadHistory(id: string): HistoryEntry[];
}

interface Entry<S> {
  readonly session: Session<S>;
  readonly cidrs: readonly { key: AddressKey; len: number }[];
}

export class SessionDirectory<S> {
  readonly #byId = new Map<string, Entry<S>>();
  /** Every session's CIDRs; a lookup takes the longest live prefix (static sessions may nest). */
  readonly #index = new AddressIndex<Session<S>>();
  /** liveCount() without a scan: valid while no counted session can have expired (see #countLive). */
  #live: { count: number; untilMs: number } | null = null;
  readonly #byAddress = new Map<string, { readonly session: Session<S> } | null>();
  readonly #newState: () => S;
  readonly #historyMax: number;
  readonly #hooks: SessionStoreHooks | undefined;
  /** Sessions whose history changed since the last takeDirty() (persisted in batches). */
  readonly #dirty = new Set<Session<S>>();
  #keys: ReadonlyMap<string, VerifyKey>;
  #maxTtlSec: number;
  #maxAddresses: number;

  constructor(opts: { newState: () => S; historyMax: number; keys: ReadonlyMap<string, VerifyKey>; maxTtlSec: number; maxAddresses?: number; hooks?: SessionStoreHooks }) {
    this.#newState = opts.newState;
    this.#historyMax = opts.historyMax;
    this.#keys = opts.keys;
    this.#maxTtlSec = opts.maxTtlSec;
    this.#maxAddresses = opts.maxAddresses ?? DEFAULT_MAX_ADDRESSES;
    this.#hooks = opts.hooks;
  }

  /** Replaces the static sessions (start and SIGHUP); registered sessions and every session's state stay. */
  setStatic(statics: readonly StaticSession[], nowMs: number): void {
    // Validate first: a failed reload must leave the running sessions as they were.
    for (const [i, s] of statics.entries()) {
      if (this.#byId.get(s.id)?.session.origin === 'registered') throw new ConfigError(`sessions.static[${i}].id`, `"${s.id}" is also a registered session`);
      // The other side of the registration's overlap check: a reload may not take a live registration's addresses.
      const registered = (x: Session<S>): boolean => x.origin === 'registered' && x.expiresAtMs > nowMs;
      for (const [j, c] of s.addresses.entries()) {
        const k = cidrKey(c);
        const owner = k === undefined ? undefined : this.#index.overlapping(k.key, k.len, registered);
        if (owner !== undefined) throw new ConfigError(`sessions.static[${i}].addresses[${j}]`, `"${c}" overlaps the addresses of live registered session "${owner.id}" (end it first)`);
      }
    }
    const previous = new Map<string, Session<S>>();
    for (const [id, entry] of this.#byId) {
      if (entry.session.origin !== 'static') continue;
      previous.set(id, entry.session);
      this.#remove(id);
    }
    for (const s of statics) {
      // A static session that stays keeps its window and history across a reload.
      this.#put({ id: s.id, user: s.user, role: s.role, type: s.type, addresses: [...s.addresses], origin: 'static', expiresAtMs: Infinity, registeredAtMs: nowMs }, previous.get(s.id));
    }
    this.#changed();
  }

  setKeys(keys: ReadonlyMap<string, VerifyKey>, maxTtlSec: number, maxAddresses = DEFAULT_MAX_ADDRESSES): void {
    this.#keys = keys;
    this.#maxTtlSec = maxTtlSec;
    this.#maxAddresses = maxAddresses;
  }

  /** Restores registered sessions from the store at start (expired ones are skipped). */
  restore(metas: readonly SessionMeta[], nowMs: number): void {
    for (const m of metas) if (m.expiresAtMs > nowMs && !this.#byId.has(m.id)) this.#put(m);
    this.#changed();
  }

  /** Adds (or replaces) a session under its id and addresses. */
  #put(meta: SessionMeta, keep?: Session<S>): Session<S> {
    const cidrs = keysOf(meta.addresses);
    this.#remove(meta.id);
    const session: Session<S> = { ...meta, state: keep?.state ?? this.#newState(), history: keep?.history ?? this.#loadHistory(meta.id) };
    this.#byId.set(meta.id, { session, cidrs });
    for (const c of cidrs) this.#index.add(c.key, c.len, session);
    if (this.#live !== null) {
      this.#live.count++;
      this.#live.untilMs = Math.min(this.#live.untilMs, session.expiresAtMs);
    }
    return session;
  }

  #remove(id: string): void {
    const entry = this.#byId.get(id);
    if (entry === undefined) return;
    this.#byId.delete(id);
    for (const c of entry.cidrs) this.#index.remove(c.key, c.len, entry.session);
    // Counted sessions are exactly those expiring at or after untilMs (see #countLive).
    if (this.#live !== null && entry.session.expiresAtMs >= this.#live.untilMs) this.#live.count--;
  }

  #loadHistory(id: string): HistoryEntry[] {
    const stored = this.#hooks?.loadHistory(id) ?? [];
    return stored.slice(-this.#historyMax);
  }

  /** After any change: an address may now belong to another session, or to none. */
  #changed(): void {
    this.#byAddress.clear();
  }

  /** The live session for a source address (hot path). */
  admit(address: string, atMs: number): Admission<S> {
    let admitted = this.#byAddress.get(address);
    // Not cached yet, or cached but expired: an address may since belong to a newer, live session.
    if (admitted === undefined || (admitted !== null && admitted.session.expiresAtMs <= atMs)) {
      const found = this.#lookup(address, atMs);
      if (this.#byAddress.size >= ADDRESS_CACHE_MAX) this.#byAddress.clear();
      // The admission object itself is cached: a query allocates nothing here.
      const fresh = found === undefined ? null : { session: found };
      this.#byAddress.set(address, fresh);
      if (fresh === null) return admitted === undefined || admitted === null ? NO_SESSION : EXPIRED;
      return fresh;
    }
    return admitted ?? NO_SESSION;
  }

  /** The live session owning `address`, or undefined. */
  #lookup(address: string, atMs: number): Session<S> | undefined {
    const key = addressKey(address); // "::ffff:10.0.0.1" and "10.0.0.1" are one key
    return key === undefined ? undefined : this.#index.lookup(key, (s) => s.expiresAtMs > atMs);
  }

  get(id: string): Session<S> | undefined {
    return this.#byId.get(id)?.session;
  }

  /** Starts the session's window afresh (an analyst released it: what led to the quarantine is forgiven). */
  resetWindow(id: string): void {
    const entry = this.#byId.get(id);
    // the same session object (the address index, the rate limiter and queries in flight hold it), a new window
    if (entry !== undefined) (entry.session as { state: S }).state = this.#newState();
  }

  list(): Session<S>[] {
    return [...this.#byId.values()].map((e) => e.session);
  }

  /**
   * Makes the gauge (dnswarden_sessions_live) read liveCount when it is scraped: the directory is the one owner of
   * that number, so nothing that adds, ends or expires a session has to remember to set it.
   */
  exposeLiveCount(gauge: { collect?: () => void; set(value: number): void }, nowMs: () => number): void {
    gauge.collect = () => gauge.set(this.liveCount(nowMs()));
  }

  /** Sessions not expired at nowMs; a scan only once a session may have expired since the last one. */
  liveCount(nowMs: number): number {
    if (this.#live === null || nowMs >= this.#live.untilMs) this.#live = this.#countLive(nowMs);
    return this.#live.count;
  }

  // Counts the sessions live at nowMs; untilMs is the earliest expiry among them, so every counted session
  // expires at or after untilMs and every uncounted one before it (expired ones have expiresAtMs <= nowMs).
  // #put and #remove keep that true, so the count stays exact until nowMs reaches untilMs.
  #countLive(nowMs: number): { count: number; untilMs: number } {
    let count = 0;
    let untilMs = Infinity;
    for (const { session } of this.#byId.values()) {
      if (session.expiresAtMs <= nowMs) continue;
      count++;
      untilMs = Math.min(untilMs, session.expiresAtMs);
    }
    return { count, untilMs };
  }

  /** Verifies a registration JWT and registers (or renews) its session. Throws WardenError saying why. */
  async register(token: string, nowMs: number): Promise<Session<S>> {
    let kid: string | undefined;
    try {
      kid = (await jose()).decodeProtectedHeader(token).kid;
    } catch {
      throw new WardenError('ERR_BAD_TOKEN', 'token is not a compact JWS/JWT');
    }
    if (kid === undefined) throw new WardenError('ERR_UNKNOWN_KEY', 'token header has no "kid"');
    const key = this.#keys.get(kid);
    if (key === undefined) throw new WardenError('ERR_UNKNOWN_KEY', `no signing key with kid "${kid}"`);
    let payload: unknown;
    try {
      ({ payload } = await (await jose()).jwtVerify(token, key.key, { algorithms: [key.alg], currentDate: new Date(nowMs), requiredClaims: ['exp'] }));
    } catch (err) {
      const joseErrors = (await jose()).errors;
      if (err instanceof joseErrors.JWTExpired) throw new WardenError('ERR_TOKEN_EXPIRED', 'token has expired');
      if (err instanceof joseErrors.JWSSignatureVerificationFailed) throw new WardenError('ERR_BAD_SIGNATURE', 'token signature does not verify');
      if (err instanceof joseErrors.JOSEAlgNotAllowed) throw new WardenError('ERR_BAD_SIGNATURE', `token algorithm is not ${key.alg} (the key's)`);
      if (err instanceof joseErrors.JWTClaimValidationFailed) throw new WardenError('ERR_BAD_CLAIMS', `claim "${err.claim}": ${err.reason}`);
      throw new WardenError('ERR_BAD_TOKEN', `token rejected: ${messageOf(err)}`);
    }
    const parsed = claimsSchema.safeParse(payload);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new WardenError('ERR_BAD_CLAIMS', `claim "${issue.path.join('.')}": ${issue.message}`);
    }
    const c = parsed.data;
    // A token whose session was ended stays dead: ending a session must not be undone by replaying its token.
    const tokenId = tokenIdOf(kid, c);
    const ended = this.#hooks?.endedToken(tokenId);
    if (ended !== undefined) {
      throw new WardenError('ERR_TOKEN_REVOKED', `this token registered session "${ended.sessionId}", which was ended at ${new Date(ended.endedAtMs).toISOString()}; sign a new token to register again`);
    }
    // A registration may not claim the Internet: the cap counts every address of every CIDR.
    const claimed = addressCount(c.addresses);
    if (claimed > this.#maxAddresses) {
      throw new WardenError('ERR_BAD_CLAIMS', `claim "addresses": ${claimed} addresses, over the limit of ${this.#maxAddresses} per session (sessions.max_addresses_per_session)`);
    }
    const expiresAtMs = Math.min(c.exp * 1000, nowMs + this.#maxTtlSec * 1000);
    const others = (s: Session<S>): boolean => s.id !== c.sid && s.expiresAtMs > nowMs;
    const checkOverlap = (): void => {
      for (const k of keysOf(c.addresses)) {
        const owner = this.#index.overlapping(k.key, k.len, others);
        if (owner !== undefined) {
          throw new WardenError('ERR_SESSION_CONFLICT', `an address in ${JSON.stringify(c.addresses)} is already owned by live session "${owner.id}"`);
        }
      }
      if (this.#byId.get(c.sid)?.session.origin === 'static') throw new WardenError('ERR_SESSION_CONFLICT', `session id "${c.sid}" is a static session`);
    };
    checkOverlap();
    const meta: SessionMeta = { id: c.sid, user: c.user, role: c.role, type: c.session_type, addresses: c.addresses, origin: 'registered', expiresAtMs, registeredAtMs: nowMs };
    if (this.#hooks?.claim !== undefined) {
      await this.#hooks.claim(meta, { id: tokenId, expiresAtMs: c.exp * 1000 });
    }
    const previous = this.#byId.get(c.sid);
    try {
      if (this.#hooks?.claim !== undefined) checkOverlap(); // sessions may have arrived from other replicas meanwhile
      this.#hooks?.registering?.(meta); // e.g. gated under a quarantine before its first query
      this.#hooks?.saveRegistered(meta, { id: tokenId, expiresAtMs: c.exp * 1000 }); // persisted before it takes effect
    } catch (err) {
      // Refused after all: what this registration claimed anew is free again (a renewal's old addresses stay its own).
      const added = previous === undefined ? meta.addresses : cidrsNotIn(meta.addresses, previous.session.addresses);
      if (added.length > 0) this.#hooks?.unclaim?.({ ...meta, addresses: added });
      throw err;
    }
    // A renewal that left addresses out gives them back.
    const left = previous === undefined || previous.session.origin !== 'registered' ? [] : cidrsNotIn(previous.session.addresses, meta.addresses);
    if (left.length > 0) this.#hooks?.unclaim?.({ ...meta, addresses: left });
    const session = this.#put(meta, previous?.session);
    this.#changed();
    return session;
  }

  /**
   * A registration made elsewhere, without the addresses a static session here overlaps (this process's config is
   * never shadowed by another replica's registration): what is left (undefined if nothing), and what was left out.
   */
  withoutStatic(meta: SessionMeta): { meta: SessionMeta | undefined; refused: { address: string; staticId: string }[] } {
    const refused: { address: string; staticId: string }[] = [];
    const keys = keysOf(meta.addresses);
    const kept = meta.addresses.filter((address, i) => {
      const owner = this.#index.overlapping(keys[i]!.key, keys[i]!.len, (s) => s.origin === 'static');
      if (owner !== undefined) refused.push({ address, staticId: owner.id });
      return owner === undefined;
    });
    return { meta: kept.length === 0 ? undefined : kept.length === meta.addresses.length ? meta : { ...meta, addresses: kept }, refused };
  }

  /**
   * A registration (or renewal) another worker or replica verified and stored: takes effect here too, its state
   * kept, without the addresses a static session here overlaps (see withoutStatic; left with none, it is dropped).
   */
  adopt(meta: SessionMeta): void {
    const previous = this.#byId.get(meta.id)?.session;
    if (previous?.origin === 'static') return;
    const adopted = this.withoutStatic(meta).meta;
    if (adopted === undefined) {
      if (previous !== undefined) this.#remove(meta.id);
    } else this.#put(adopted, previous);
    this.#changed();
  }

  /** A registered session another worker ended (the store already forgot it). */
  drop(id: string): void {
    if (this.#byId.get(id)?.session.origin !== 'registered') return;
    this.#remove(id);
    this.#changed();
  }

  /** Ends a registered session at once. Returns false if there is no such registered session. */
  deregister(id: string, nowMs = Date.now()): boolean {
    const entry = this.#byId.get(id);
    if (entry === undefined || entry.session.origin !== 'registered') return false;
    this.#hooks?.deleteRegistered(id, nowMs);
    this.#remove(id);
    this.#changed();
    return true;
  }

  /** Drops registered sessions past their expiry (called periodically). */
  sweepExpired(nowMs: number): number {
    let n = 0;
    for (const [id, e] of this.#byId) {
      if (e.session.origin === 'registered' && e.session.expiresAtMs <= nowMs) {
        this.#hooks?.deleteRegistered(id);
        this.#remove(id);
        n++;
      }
    }
    if (n > 0) this.#changed();
    return n;
  }

  remember(session: Session<S>, entry: HistoryEntry): void {
    if (this.#historyMax === 0) return;
    const h = session.history;
    if (h.length >= this.#historyMax) h.shift();
    h.push(entry);
    this.#dirty.add(session);
  }

  /**
   * Counts one more query on the session's last history row if that row is a block of the same kind (action,
   * rule, enforcement, rcode) begun less than `windowMs` ago: a flood of blocks is one row with a count, not a
   * row (and an allocation) per query. Returns false when the query needs a row of its own.
   */
  repeatLast(session: Session<S>, action: string, rule: string, enforced: boolean, rcode: number, atMs: number, windowMs: number): boolean {
    const h = session.history;
    const last = h[h.length - 1];
    if (last === undefined || last.action !== action || last.rule !== rule || last.enforced !== enforced || last.rcode !== rcode) return false;
    if (atMs < last.atMs || atMs - last.atMs >= windowMs) return false;
    last.count = (last.count ?? 1) + 1;
    last.lastAtMs = atMs;
    this.#dirty.add(session);
    return true;
  }

  /** Sessions whose history changed since the last call. */
  takeDirty(): Session<S>[] {
    const out = [...this.#dirty];
    this.#dirty.clear();
    return out;
  }
}
