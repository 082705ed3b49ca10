// Who may resolve: static sessions from config and sessions registered by the agent runtime with a
// signed JWT. Maps a source address to its live session; owns each session's per-session state
// (the policy's window) and its bounded recent-query history. Never decides a verdict.
import { BlockList, isIP } from 'node:net';
import { createSecretKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
// jose is loaded when a registration key or token is first handled: a resolver without dynamic
// sessions never needs it (it costs ~10 MB of RSS).
const jose = (): Promise<typeof import('jose')> => import('jose');
import { z } from 'zod';
import { cidr, parseCidr, sessionTypeSchema, type SigningKeyConfig, type StaticSession } from '../ops/config.js';
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
  /** Per-session behaviour window owned by the policy (plain data). */
  state: S;
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
});

interface VerifyKey {
  readonly alg: 'HS256' | 'EdDSA';
  readonly key: KeyObject | CryptoKey;
}

/** Loads signing keys once at start (files read, PEM parsed): bad keys fail the start, naming the field. */
export async function loadSigningKeys(keys: readonly SigningKeyConfig[]): Promise<ReadonlyMap<string, VerifyKey>> {
  const out = new Map<string, VerifyKey>();
  for (const [i, k] of keys.entries()) {
    const path = `sessions.signing_keys[${i}]`;
    if (out.has(k.kid)) throw new ConfigError(`${path}.kid`, `duplicate key id "${k.kid}"`);
    const read = (file: string, field: string): string => {
      try {
        return readFileSync(file, 'utf8').trim();
      } catch (err) {
        throw new ConfigError(`${path}.${field}`, `cannot read ${file}: ${messageOf(err)}`);
      }
    };
    if (k.alg === 'HS256') {
      const secret = k.secret ?? read(k.secret_file!, 'secret_file');
      if (secret.length < 32) throw new ConfigError(`${path}.secret`, 'HS256 secrets must be at least 32 characters');
      out.set(k.kid, { alg: 'HS256', key: createSecretKey(Buffer.from(secret, 'utf8')) });
    } else {
      const pem = k.public_key ?? read(k.public_key_file!, 'public_key_file');
      try {
        out.set(k.kid, { alg: 'EdDSA', key: await (await jose()).importSPKI(pem, 'EdDSA') });
      } catch (err) {
        throw new ConfigError(`${path}.public_key`, `not an Ed25519 public key in PEM (SPKI): ${messageOf(err)}`);
      }
    }
  }
  return out;
}

/** Two CIDRs overlap when either contains the other's network address. */
function overlaps(a: BlockList, aCidrs: readonly string[], b: BlockList, bCidrs: readonly string[]): boolean {
  for (const c of bCidrs) {
    const p = parseCidr(c)!;
    if (a.check(p.address, p.family === 4 ? 'ipv4' : 'ipv6')) return true;
  }
  for (const c of aCidrs) {
    const p = parseCidr(c)!;
    if (b.check(p.address, p.family === 4 ? 'ipv4' : 'ipv6')) return true;
  }
  return false;
}

/** Whether two address lists (CIDRs) share an address. */
export function addressesOverlap(a: readonly string[], b: readonly string[]): boolean {
  return overlaps(blockListOf(a), a, blockListOf(b), b);
}

function blockListOf(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const p = parseCidr(c)!;
    list.addSubnet(p.address, p.prefix, p.family === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

/** "::ffff:10.0.0.1" (a v4 client on a dual-stack socket) → "10.0.0.1". */
function canonicalAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

// A cache from source address to session, so the hot path is one Map lookup; cleared on any change.
const ADDRESS_CACHE_MAX = 65_536;

export interface SessionStoreHooks {
  /** A verified registration (or renewal), before it is stored or takes effect: a throw refuses it. */
  registering?(meta: SessionMeta): void;
  /** Before `registering`: claims the addresses beyond this process (fleet.redis); a throw refuses it. */
  claim?(meta: SessionMeta): Promise<void>;
  /** A claimed registration refused after all (by a later check or the store): the claim is given back. */
  unclaim?(meta: SessionMeta): void;
  saveRegistered(meta: SessionMeta): void;
  deleteRegistered(id: string): void;
  /** The stored recent-query history of a session (so a restart keeps it). */
  loadHistory(id: string): HistoryEntry[];
}

export class SessionDirectory<S> {
  #entries: { session: Session<S>; list: BlockList }[] = [];
  readonly #byId = new Map<string, { session: Session<S>; list: BlockList }>();
  readonly #byAddress = new Map<string, { readonly session: Session<S> } | null>();
  readonly #newState: () => S;
  readonly #historyMax: number;
  readonly #hooks: SessionStoreHooks | undefined;
  /** Sessions whose history changed since the last takeDirty() (persisted in batches). */
  readonly #dirty = new Set<Session<S>>();
  #keys: ReadonlyMap<string, VerifyKey>;
  #maxTtlSec: number;

  constructor(opts: { newState: () => S; historyMax: number; keys: ReadonlyMap<string, VerifyKey>; maxTtlSec: number; hooks?: SessionStoreHooks }) {
    this.#newState = opts.newState;
    this.#historyMax = opts.historyMax;
    this.#keys = opts.keys;
    this.#maxTtlSec = opts.maxTtlSec;
    this.#hooks = opts.hooks;
  }

  /** Replaces the static sessions (start and SIGHUP); registered sessions and every session's state stay. */
  setStatic(statics: readonly StaticSession[], nowMs: number): void {
    // Validate first: a failed reload must leave the running sessions as they were.
    for (const [i, s] of statics.entries()) {
      if (this.#byId.get(s.id)?.session.origin === 'registered') throw new ConfigError(`sessions.static[${i}].id`, `"${s.id}" is also a registered session`);
    }
    const previous = new Map<string, Session<S>>();
    for (const [id, entry] of this.#byId) {
      if (entry.session.origin !== 'static') continue;
      previous.set(id, entry.session);
      this.#byId.delete(id);
    }
    for (const s of statics) {
      // A static session that stays keeps its window and history across a reload.
      this.#put({ id: s.id, user: s.user, role: s.role, type: s.type, addresses: [...s.addresses], origin: 'static', expiresAtMs: Infinity, registeredAtMs: nowMs }, previous.get(s.id));
    }
    this.#rebuild();
  }

  setKeys(keys: ReadonlyMap<string, VerifyKey>, maxTtlSec: number): void {
    this.#keys = keys;
    this.#maxTtlSec = maxTtlSec;
  }

  /** Restores registered sessions from the store at start (expired ones are skipped). */
  restore(metas: readonly SessionMeta[], nowMs: number): void {
    for (const m of metas) if (m.expiresAtMs > nowMs && !this.#byId.has(m.id)) this.#put(m);
    this.#rebuild();
  }

  #put(meta: SessionMeta, keep?: Session<S>): Session<S> {
    const session: Session<S> = { ...meta, state: keep?.state ?? this.#newState(), history: keep?.history ?? this.#loadHistory(meta.id) };
    this.#byId.set(meta.id, { session, list: blockListOf(meta.addresses) });
    return session;
  }

  #loadHistory(id: string): HistoryEntry[] {
    const stored = this.#hooks?.loadHistory(id) ?? [];
    return stored.slice(-this.#historyMax);
  }

  #rebuild(): void {
    this.#entries = [...this.#byId.values()];
    this.#byAddress.clear();
  }

  /** The live session for a source address (hot path). */
  admit(address: string, atMs: number): Admission<S> {
    let admitted = this.#byAddress.get(address);
    // Not cached yet, or cached but expired: an address may since belong to a newer, live session.
    if (admitted === undefined || (admitted !== null && admitted.session.expiresAtMs <= atMs)) {
      const found = this.#lookup(canonicalAddress(address), atMs);
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
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    for (const e of this.#entries) if (e.session.expiresAtMs > atMs && e.list.check(address, family)) return e.session;
    return undefined;
  }

  get(id: string): Session<S> | undefined {
    return this.#byId.get(id)?.session;
  }

  list(): Session<S>[] {
    return this.#entries.map((e) => e.session);
  }

  liveCount(nowMs: number): number {
    let n = 0;
    for (const e of this.#entries) if (e.session.expiresAtMs > nowMs) n++;
    return n;
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
    const expiresAtMs = Math.min(c.exp * 1000, nowMs + this.#maxTtlSec * 1000);
    const list = blockListOf(c.addresses);
    const checkOverlap = (): void => {
      for (const e of this.#entries) {
        if (e.session.id === c.sid || e.session.expiresAtMs <= nowMs) continue;
        if (overlaps(list, c.addresses, e.list, e.session.addresses)) {
          throw new WardenError('ERR_SESSION_CONFLICT', `an address in ${JSON.stringify(c.addresses)} is already owned by live session "${e.session.id}"`);
        }
      }
      if (this.#byId.get(c.sid)?.session.origin === 'static') throw new WardenError('ERR_SESSION_CONFLICT', `session id "${c.sid}" is a static session`);
    };
    checkOverlap();
    const meta: SessionMeta = { id: c.sid, user: c.user, role: c.role, type: c.session_type, addresses: c.addresses, origin: 'registered', expiresAtMs, registeredAtMs: nowMs };
    if (this.#hooks?.claim !== undefined) {
      await this.#hooks.claim(meta);
    }
    const previous = this.#byId.get(c.sid);
    try {
      if (this.#hooks?.claim !== undefined) checkOverlap(); // sessions may have arrived from other replicas meanwhile
      this.#hooks?.registering?.(meta); // e.g. gated under a quarantine before its first query
      this.#hooks?.saveRegistered(meta); // persisted before it takes effect
    } catch (err) {
      if (previous === undefined) this.#hooks?.unclaim?.(meta); // refused after all: its addresses are free again
      throw err;
    }
    const session = this.#put(meta, previous?.session);
    this.#rebuild();
    return session;
  }

  /** A registration (or renewal) another worker verified and stored: takes effect here too, its state kept. */
  adopt(meta: SessionMeta): void {
    const previous = this.#byId.get(meta.id)?.session;
    if (previous?.origin === 'static') return;
    this.#put(meta, previous);
    this.#rebuild();
  }

  /** A registered session another worker ended (the store already forgot it). */
  drop(id: string): void {
    if (this.#byId.get(id)?.session.origin !== 'registered') return;
    this.#byId.delete(id);
    this.#rebuild();
  }

  /** Ends a registered session at once. Returns false if there is no such registered session. */
  deregister(id: string): boolean {
    const entry = this.#byId.get(id);
    if (entry === undefined || entry.session.origin !== 'registered') return false;
    this.#hooks?.deleteRegistered(id);
    this.#byId.delete(id);
    this.#rebuild();
    return true;
  }

  /** Drops registered sessions past their expiry (called periodically). */
  sweepExpired(nowMs: number): number {
    let n = 0;
    for (const [id, e] of this.#byId) {
      if (e.session.origin === 'registered' && e.session.expiresAtMs <= nowMs) {
        this.#hooks?.deleteRegistered(id);
        this.#byId.delete(id);
        n++;
      }
    }
    if (n > 0) this.#rebuild();
    return n;
  }

  remember(session: Session<S>, entry: HistoryEntry): void {
    if (this.#historyMax === 0) return;
    const h = session.history;
    if (h.length >= this.#historyMax) h.shift();
    h.push(entry);
    this.#dirty.add(session);
  }

  /** Sessions whose history changed since the last call. */
  takeDirty(): Session<S>[] {
    const out = [...this.#dirty];
    this.#dirty.clear();
    return out;
  }
}
