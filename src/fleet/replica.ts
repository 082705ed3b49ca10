// fleet.redis: how this replica takes in what the other replicas changed — into its store, its session directory,
// its quarantine book and its learned deny list — and what it writes back when the shared record lacks it. Owns
// the learned deny list's rule per entry here (the later add or removal of a domain wins; at the same instant an
// add) and what is applied of a session another replica registered (never an address a static session here holds).
// Never talks to Redis (src/fleet/redis-fleet.ts receives and sends, src/fleet/shared-record.ts writes) and never
// decides a change itself: every change it applies was decided and stored on another replica.
import type { Logger } from 'pino';
import type { QuarantineBook } from '../analyst/quarantine.js';
import type { AuditEntry, QuarantineGate, QuarantineRecord, Store } from '../store.js';
import type { RegistrationToken, SessionDirectory, SessionMeta } from '../sessions/directory.js';
import type { Metrics } from '../ops/telemetry.js';
import type { DenyTombstone, FleetEvent, LearnedDenyEntry } from './shared-record.js';

/** How a replica applies what others changed (already decided and stored there): into its own store and gates. */
export interface Replica {
  /** With its token when known: this replica's own record then refuses the token once the session is ended. */
  putSession(meta: SessionMeta, token?: RegistrationToken): void;
  /** `endedAtMs`: ended (its tokens refused from then on), not expired. */
  dropSession(id: string, endedAtMs?: number): void;
  /** A registration this replica accepted while Redis was away used the token of a session ended before: end it. */
  replayed(meta: SessionMeta): void;
  quarantine(record: QuarantineRecord): void;
  gate(gate: QuarantineGate): void;
  /** One learned deny entry added (or replaced) / removed in the store here, as another replica decided it. */
  denyPut(entry: LearnedDenyEntry): void;
  denyDrop(domain: string): void;
  /** The learned deny list in the store changed: read into the policy (once for a whole catch-up). */
  denyChanged(): void;
  denyEntry(domain: string): LearnedDenyEntry | undefined;
  audit(entry: Omit<AuditEntry, 'id'>): void;
  /** Quarantines held here (open or confirmed): written back to a shared record that lost them (Redis restarted empty). */
  held(): QuarantineRecord[];
  /** Live registered sessions and the learned deny list here: written back when Redis lost everything. */
  registered(): SessionMeta[];
  learnedDeny(): LearnedDenyEntry[];
}

export interface ReplicaDeps<S> {
  readonly store: Store;
  readonly sessions: SessionDirectory<S>;
  readonly quarantines: QuarantineBook;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly nowMs: () => number;
  /**
   * With server.workers > 1, false on all but the admin worker (the workers share one store): that one records
   * another replica's audit rows, and counts and logs what every worker refused to adopt.
   */
  readonly recordsAudit: boolean;
  /** The learned deny list changed in the store: re-read into the policy. */
  readonly learnedDenyChanged: () => void;
}

/** This replica's store, sessions and quarantines as a Replica. */
export function replicaOf<S>(d: ReplicaDeps<S>): Replica {
  const { store, sessions, quarantines } = d;
  return {
    putSession: (m, token) => {
      // An address a static session here overlaps stays the static session's: left out here, counted and logged.
      const { meta, refused } = sessions.withoutStatic(m);
      if (refused.length > 0 && d.recordsAudit) { // every worker applies it; one counts and logs it
        d.metrics.fleetAdoptionsRefused.inc(refused.length);
        d.log.warn({ session: m.id, refused }, 'a session registered on another replica overlaps a static session here: those addresses stay the static session\'s on this replica');
      }
      if (meta === undefined) {
        store.deleteSession(m.id);
        sessions.drop(m.id);
        return;
      }
      if (token === undefined) store.saveSession(meta);
      else store.saveRegisteredSession(meta, token);
      sessions.adopt(meta);
    },
    dropSession: (id, endedAtMs) => { store.deleteRegisteredSession(id, endedAtMs); sessions.drop(id); },
    // Only if it is still that registration (a later renewal here with another token stands).
    replayed: (m) => { if (sessions.get(m.id)?.registeredAtMs === m.registeredAtMs) sessions.deregister(m.id, d.nowMs()); },
    quarantine: (q) => quarantines.mirror(q),
    gate: (g) => quarantines.mirrorGate(g),
    denyPut: (e) => store.addLearnedDeny(e.domain, e.addedAtMs, e.addedBy, e.quarantineId, e.reason),
    denyDrop: (domain) => void store.removeLearnedDeny(domain),
    denyChanged: () => d.learnedDenyChanged(),
    denyEntry: (domain) => store.learnedDenyEntry(domain),
    // Workers share one store: one of them records another replica's audit row.
    audit: (entry) => { if (d.recordsAudit) store.audit(entry, true); },
    held: () => quarantines.held(),
    registered: () => sessions.list().filter((m) => m.origin === 'registered' && m.expiresAtMs > d.nowMs()).map(({ state: _state, history: _history, ...meta }) => meta),
    learnedDeny: () => store.listLearnedDeny(),
  };
}

// A removal is remembered this long here: a snapshot read before it (answered after it arrived) does not undo it.
const DENY_TOMBSTONE_MS = 60_000;

/** The learned deny list's rule per entry, as the shared record's script applies it: the later change of a domain wins. */
export class DenyMerge {
  readonly #replica: Replica;
  readonly #tombstones = new Map<string, number>();

  constructor(replica: Replica) {
    this.#replica = replica;
  }

  /** Whether the store changed (an entry it already holds as is changes nothing). */
  put(entry: LearnedDenyEntry): boolean {
    const removedAt = this.#tombstones.get(entry.domain);
    if (removedAt !== undefined && removedAt > entry.addedAtMs) return false;
    const here = this.#replica.denyEntry(entry.domain);
    if (here !== undefined && here.addedAtMs > entry.addedAtMs) return false;
    this.#tombstones.delete(entry.domain);
    if (here !== undefined && here.addedAtMs === entry.addedAtMs && here.addedBy === entry.addedBy && here.quarantineId === entry.quarantineId && here.reason === entry.reason) return false;
    this.#replica.denyPut(entry);
    return true;
  }

  /** Whether the store changed. */
  drop(domain: string, atMs: number): boolean {
    const here = this.#replica.denyEntry(domain);
    if (here !== undefined && here.addedAtMs >= atMs) return false; // added again since (or at the same instant)
    this.#tombstones.set(domain, Math.max(atMs, this.#tombstones.get(domain) ?? 0));
    if (here === undefined) return false;
    this.#replica.denyDrop(domain);
    return true;
  }

  /** Forgets removals older than DENY_TOMBSTONE_MS (the shared record keeps them). */
  prune(nowMs: number): void {
    for (const [domain, at] of this.#tombstones) if (nowMs - at > DENY_TOMBSTONE_MS) this.#tombstones.delete(domain);
  }

  /**
   * A catch-up: the shared record's entries and tombstones (domain → JSON) applied here, except for domains a change
   * still queued here touches (newer than the record); the policy re-reads the list once. Returns the entries here
   * the record never heard of (to be written back).
   */
  catchUp(record: Readonly<Record<string, string>>, queued: readonly FleetEvent[]): LearnedDenyEntry[] {
    const pending = new Set<string>();
    for (const e of queued) {
      if (e.kind === 'deny.put') pending.add(e.entry.domain);
      else if (e.kind === 'deny.drop') pending.add(e.domain);
      else if (e.kind === 'deny.list') for (const x of e.entries) pending.add(x.domain);
    }
    let changed = false;
    for (const [domain, text] of Object.entries(record)) {
      if (pending.has(domain)) continue;
      const entry = JSON.parse(text) as LearnedDenyEntry | DenyTombstone;
      if ('removedAtMs' in entry ? this.drop(domain, entry.removedAtMs) : this.put(entry)) changed = true;
    }
    if (changed) this.#replica.denyChanged();
    return this.#replica.learnedDeny().filter((e) => record[e.domain] === undefined && !pending.has(e.domain));
  }
}

/** A learned deny change made here (already in the store) as the fleet's changes: one per entry added or removed. */
export function denyChangeEvents(store: Store, change: { readonly added: readonly string[]; readonly removed: readonly { readonly domain: string; readonly atMs: number }[] }): FleetEvent[] {
  const out: FleetEvent[] = [];
  for (const domain of change.added) {
    const entry = store.learnedDenyEntry(domain);
    if (entry !== undefined) out.push({ kind: 'deny.put', entry });
  }
  for (const r of change.removed) out.push({ kind: 'deny.drop', domain: r.domain, atMs: r.atMs });
  return out;
}
