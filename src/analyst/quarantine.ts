// The quarantine state machine (open → released | confirmed → released) with its evidence, and the gate
// the pipeline checks per query. Order matters: persist, then close the gate in memory, then announce —
// so a quarantine survives kill -9 before its blocking answer leaves, and an alert never names a
// quarantine that is not on disk. A write the store refuses (disk full, I/O error) never makes a
// quarantine vanish: the gate closes all the same, the row (and later its alert) is kept in memory and
// retried with backoff, listed as not durable, counted, logged, and `unsaved()` reports it for
// readiness. A held quarantine follows its session's addresses and user: a new
// registration sharing either is gated under it (ending the session and registering anew sheds nothing).
// With fleet.redis, every record and gate made here is handed to `shared` (queued for the other replicas), and
// `mirror`/`mirrorGate` apply theirs: a state only ever moves forward (open → confirmed → released).
// Never judges a query.
import { WardenError, messageOf } from '../errors.js';
import type { AlertEvent, Alerts } from './alerts.js';
import type { Logger } from 'pino';
import { addressesOverlap, type Session, type SessionMeta } from '../sessions/directory.js';
import type { QuarantineGate, QuarantineRecord, Store } from '../store.js';
import type { Metrics } from '../ops/telemetry.js';
import type { Query } from '../dns/wire.js';
import { summaryOf } from './events.js';
import type { Verdict } from '../policy/judge.js';

// How many of the session's recent queries go into the evidence (the triggering ones are always there).
const EVIDENCE_HISTORY = 50;
// Retrying writes the store refused: soon at first (a transient error), then no more than every 30 s.
const RETRY_INITIAL_MS = 500;
const RETRY_MAX_MS = 30_000;

export class QuarantineBook {
  readonly #store: Store;
  readonly #alerts: Alerts;
  readonly #metrics: Metrics;
  readonly #nowMs: () => number;
  /**
   * Held quarantines (open or confirmed): session id → quarantine id. The gate the pipeline checks per
   * query. A confirmed quarantine holds exactly like an open one until someone releases it.
   */
  readonly #open = new Map<string, string>();

  readonly #onReleased: (sessionId: string) => void;
  readonly #announce: (change: QuarantineChange) => void;
  readonly #log: Logger | undefined;

  /** Quarantines the store refused to write: held (gated) all the same, retried until on disk. */
  readonly #unsavedRows = new Map<string, QuarantineRecord>();
  /** Alerts the outbox refused (it is in the store too), in order, retried with the rows. */
  readonly #unsentAlerts: AlertEvent[] = [];
  #retryTimer: NodeJS.Timeout | undefined;
  #retryDelayMs = RETRY_INITIAL_MS;
  /** fleet.redis: where records and gates made here go for the other replicas. */
  shared: SharedQuarantines | undefined;

  constructor(
    store: Store,
    alerts: Alerts,
    metrics: Metrics,
    nowMs: () => number,
    onReleased: (sessionId: string) => void,
    announce: (change: QuarantineChange) => void = () => undefined,
    log?: Logger,
  ) {
    this.#log = log;
    this.#onReleased = onReleased;
    this.#announce = announce;
    this.#store = store;
    this.#alerts = alerts;
    this.#metrics = metrics;
    this.#nowMs = nowMs;
    // Both held states come back after a restart: a confirmed session stays blocked until released.
    for (const state of ['open', 'confirmed'] as const) {
      for (const q of store.listQuarantines({ state, limit: 1_000_000 })) this.#open.set(q.sessionId, q.id);
    }
    for (const g of store.heldGates()) this.#open.set(g.sessionId, g.quarantineId);
    metrics.sessionsQuarantined.set(this.#open.size);
  }

  /** The quarantine (open or confirmed) holding this session, if any (hot path: one Map lookup). */
  holds(sessionId: string): string | undefined {
    return this.#open.get(sessionId);
  }

  /** A quarantine, on disk or held in memory only (not yet durable). */
  get(id: string): QuarantineRecord | undefined {
    return this.#unsavedRows.get(id) ?? this.#store.getQuarantine(id);
  }

  /** false while the store has refused this quarantine's write (it is being retried). */
  isDurable(id: string): boolean {
    return !this.#unsavedRows.has(id);
  }

  /** Quarantines held in memory only: the store refused their write, which is being retried. */
  notDurable(): QuarantineRecord[] {
    return [...this.#unsavedRows.values()];
  }

  /**
   * Writes not yet on disk: quarantines and their alerts (the outbox). Above 0 this process holds decisions
   * that a restart would lose — a readiness check should report not-ready.
   */
  unsaved(): number {
    return this.#unsavedRows.size + this.#unsentAlerts.length;
  }

  raise(session: Session<unknown>, verdict: Verdict, q: Query, eventId: string): QuarantineRecord {
    const existing = this.#open.get(session.id);
    if (existing !== undefined) return this.get(existing)!;
    const meta = metaOf(session);
    const record: QuarantineRecord = {
      id: `qr-${eventId}`,
      sessionId: session.id,
      session: meta,
      state: 'open',
      raisedAtMs: q.atMs,
      evidence: {
        trigger: {
          eventId, atMs: q.atMs, name: q.name, qtype: q.type, action: verdict.action, rule: verdict.rule, reason: verdict.reason,
          score: verdict.score?.total, signals: verdict.score?.signals.map((s) => ({ id: s.id, value: s.value, weight: s.weight, reason: s.reason })),
        },
        recent: session.history.slice(-EVIDENCE_HISTORY),
      },
    };
    let saved = true;
    try {
      this.#store.insertQuarantine(record); // synchronous, WAL + synchronous=FULL: on disk now
    } catch (err) {
      // Fail closed and lose nothing: the session is stopped all the same, and the write is retried.
      saved = false;
      this.#unsavedRows.set(record.id, record);
      this.#log?.error({ quarantine: record.id, session: session.id, user: session.user, err: messageOf(err) }, 'quarantine not saved (the store refused the write): it holds in memory and the write is retried');
      this.#retrySoon();
    }
    this.#open.set(session.id, record.id); // only now does the gate close
    this.#announce({ state: 'open', sessionId: session.id, id: record.id });
    this.#share(() => this.shared?.record(record));
    this.#metrics.quarantinesRaised.inc({ session_type: session.type });
    this.#metrics.sessionsQuarantined.set(this.#open.size);
    if (saved) this.#emit({ type: 'quarantine_raised', atMs: q.atMs, quarantine: summaryOf(record) });
    this.#metrics.quarantineWritesUnsaved.set(this.unsaved());
    return record;
  }

  /** An alert, or queued behind the ones the outbox refused (order kept). */
  #emit(event: AlertEvent): void {
    if (this.#unsentAlerts.length === 0) {
      try {
        this.#alerts.emit(event);
        return;
      } catch (err) {
        this.#log?.error({ alert: event.type, quarantine: event.quarantine.id, err: messageOf(err) }, 'alert not queued (the store refused the write): kept in memory and retried');
      }
    }
    this.#unsentAlerts.push(event);
    this.#retrySoon();
  }

  #retrySoon(): void {
    if (this.#retryTimer !== undefined) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.retryUnsaved();
    }, this.#retryDelayMs);
    this.#retryTimer.unref();
  }

  /** Writes what the store refused before; returns how many writes are still unsaved. */
  retryUnsaved(): number {
    for (const record of [...this.#unsavedRows.values()]) {
      try {
        this.#store.insertQuarantine(record);
      } catch (err) {
        this.#log?.warn({ quarantine: record.id, err: messageOf(err), retry_in_ms: Math.min(this.#retryDelayMs * 2, RETRY_MAX_MS) }, 'quarantine still not saved');
        break; // the store is still refusing: the rest would fail alike
      }
      this.#unsavedRows.delete(record.id);
      this.#log?.info({ quarantine: record.id, session: record.sessionId }, 'quarantine saved after the store refused it');
      this.#unsentAlerts.push({ type: 'quarantine_raised', atMs: record.raisedAtMs, quarantine: summaryOf(record) });
    }
    while (this.#unsentAlerts.length > 0) {
      try {
        this.#alerts.emit(this.#unsentAlerts[0]!);
      } catch {
        break;
      }
      this.#unsentAlerts.shift();
    }
    const left = this.unsaved();
    this.#metrics.quarantineWritesUnsaved.set(left);
    if (left === 0) {
      this.#retryDelayMs = RETRY_INITIAL_MS;
    } else {
      this.#retryDelayMs = Math.min(this.#retryDelayMs * 2, RETRY_MAX_MS);
      this.#retrySoon();
    }
    return left;
  }

  /** At shutdown: a last attempt; what is still unsaved is named in the log (it is lost with the process). */
  close(): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.unsaved() === 0 || this.retryUnsaved() === 0) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#log?.error({ quarantines: [...this.#unsavedRows.keys()], alerts: this.#unsentAlerts.map((a) => `${a.quarantine.id}:${a.type}`) }, 'stopping with quarantine writes the store refused: they are lost');
  }

  /** Lifts an open or a confirmed quarantine. */
  release(id: string, actor: string, reason: string): QuarantineRecord {
    return this.#decide(id, 'released', actor, reason);
  }

  /** `alsoWrite` runs in the decision's transaction (the learned deny entries and their audit rows): all or nothing. */
  confirm(id: string, actor: string, reason: string, detail: unknown = {}, alsoWrite: (nowMs: number) => void = () => undefined): QuarantineRecord {
    return this.#decide(id, 'confirmed', actor, reason, detail, alsoWrite);
  }

  #decide(id: string, state: 'released' | 'confirmed', actor: string, reason: string, detail: unknown = {}, alsoWrite: (nowMs: number) => void = () => undefined): QuarantineRecord {
    const unsaved = this.#unsavedRows.get(id);
    const record = unsaved ?? this.#store.getQuarantine(id);
    if (record === undefined) throw new WardenError('ERR_NOT_FOUND', `no quarantine with id "${id}"`);
    // open → confirmed | released; confirmed → released (a confirmed block lasts until someone lifts it).
    if (record.state === 'released' || record.state === state) throw new WardenError('ERR_BAD_REQUEST', `quarantine "${id}" is already ${record.state}`);
    const nowMs = this.#nowMs();
    const decided: QuarantineRecord = { ...record, state, decidedAtMs: nowMs, decidedBy: actor, decisionReason: reason };
    try {
      this.#store.transaction(() => {
        if (unsaved !== undefined) this.#store.insertQuarantine(unsaved); // a decision on one not yet on disk saves it too
        this.#store.updateQuarantine(decided);
        this.#store.audit({ atMs: nowMs, actor, action: `quarantine.${state === 'released' ? 'release' : 'confirm'}`, target: id, reason, detail });
        alsoWrite(nowMs);
        this.shared?.record(decided); // queued for the fleet in the decision's transaction: both or neither
      });
    } catch (err) {
      if (err instanceof WardenError) throw err;
      throw new WardenError('ERR_STORE', `the decision on quarantine "${id}" could not be stored, nothing changed: ${messageOf(err)}`, { cause: err });
    }
    if (unsaved !== undefined) {
      this.#unsavedRows.delete(id);
      this.#emit({ type: 'quarantine_raised', atMs: unsaved.raisedAtMs, quarantine: summaryOf(unsaved) });
    }
    // A confirmed session stays blocked; a released one is answered again at once.
    if (state === 'released') {
      this.adopt({ state: 'released', sessionId: record.sessionId, id });
      this.#announce({ state: 'released', sessionId: record.sessionId, id });
    }
    this.#metrics.quarantineDecisions.inc({ decision: state });
    this.#metrics.sessionsQuarantined.set(this.#open.size);
    this.#emit({ type: state === 'released' ? 'quarantine_released' : 'quarantine_confirmed', atMs: nowMs, quarantine: summaryOf(decided), actor, reason });
    this.#metrics.quarantineWritesUnsaved.set(this.unsaved());
    return decided;
  }

  /**
   * A registration (or renewal) about to take effect: if it shares an address or the user with a session a
   * quarantine holds (the one it was raised on or one already gated under it), it is gated under that
   * quarantine, on disk first. Throws if the store refuses, which refuses the registration.
   */
  follow(meta: SessionMeta): QuarantineGate | undefined {
    if (this.#open.has(meta.id)) return undefined; // held under its own id already
    const held = [...this.#unsavedRows.values(), ...this.#store.listQuarantines({ state: 'open', limit: 1_000_000 }), ...this.#store.listQuarantines({ state: 'confirmed', limit: 1_000_000 })]
      .sort((a, b) => b.raisedAtMs - a.raisedAtMs);
    for (const q of held) {
      for (const holder of [q.session, ...this.#store.gatesOf(q.id).map((g) => g.session)]) {
        const matched = addressesOverlap(holder.addresses, meta.addresses) ? 'address' : holder.user === meta.user ? 'user' : undefined;
        if (matched === undefined) continue;
        const gate: QuarantineGate = { sessionId: meta.id, quarantineId: q.id, session: metaOf(meta), matched, atMs: this.#nowMs() };
        try {
          this.#store.insertGate(gate);
        } catch (err) {
          throw new WardenError('ERR_STORE', `session "${meta.id}" shares ${matched === 'address' ? 'an address' : 'the user'} with a session quarantine ${q.id} holds, and the store refused to record that; not registered: ${messageOf(err)}`, { cause: err });
        }
        this.#open.set(meta.id, q.id);
        this.#announce({ state: 'open', sessionId: meta.id, id: q.id });
        this.#share(() => this.shared?.gate(gate));
        this.#metrics.sessionsQuarantined.set(this.#open.size);
        this.#log?.warn({ quarantine: q.id, session: meta.id, user: meta.user, matched, held_session: holder.id }, 'registration gated under an existing quarantine');
        return gate;
      }
    }
    return undefined;
  }

  /** Queueing for the fleet is best effort after the fact: a failure is logged, never undoes the quarantine. */
  #share(send: () => void): void {
    try {
      send();
    } catch (err) {
      this.#log?.error({ err: messageOf(err) }, 'quarantine change not queued for the fleet');
    }
  }

  /**
   * A quarantine record another replica raised or decided (fleet.redis): stored here and the gate set to match.
   * Only a later state applies (open → confirmed → released), so the order records arrive in does not matter.
   * A held one closes the gate first: if the store refuses the row, the session is stopped all the same.
   */
  mirror(record: QuarantineRecord): void {
    const local = this.#unsavedRows.get(record.id) ?? this.#store.getQuarantine(record.id);
    const newer = local === undefined || STATE_RANK[local.state] < STATE_RANK[record.state];
    // The gate follows the furthest state known, even when the store has it already (server.workers > 1 share
    // one store: another worker may have written this very change a moment ago).
    const state = newer ? record.state : local.state;
    if (state !== 'released') this.adopt({ state: 'open', sessionId: record.sessionId, id: record.id });
    if (newer) {
      this.#store.transaction(() => {
        if (local === undefined) this.#store.insertQuarantine(record);
        if (record.state !== 'open') this.#store.updateQuarantine(record);
      });
    }
    if (state === 'released') this.adopt({ state: 'released', sessionId: record.sessionId, id: record.id });
  }

  /** A session another replica gated under a quarantine: held here too (before the record, if it comes later). */
  mirrorGate(gate: QuarantineGate): void {
    const q = this.#store.getQuarantine(gate.quarantineId);
    if (q?.state !== 'released' && !this.#open.has(gate.sessionId)) this.adopt({ state: 'open', sessionId: gate.sessionId, id: gate.quarantineId });
    this.#store.insertGate(gate);
  }

  /** Held here (open or confirmed), from the store and those it refused. */
  held(): QuarantineRecord[] {
    return [...this.#unsavedRows.values(), ...this.#store.listQuarantines({ state: 'open', limit: 1_000_000 }), ...this.#store.listQuarantines({ state: 'confirmed', limit: 1_000_000 })];
  }

  /** A change another worker made (it is already on disk): the gate here opens or closes to match. */
  adopt(change: QuarantineChange): void {
    if (change.state === 'open') {
      if (!this.#open.has(change.sessionId)) this.#open.set(change.sessionId, change.id);
    } else {
      // A release opens every session held under that quarantine: the one it was raised on and those that followed.
      for (const [sessionId, id] of [...this.#open]) {
        if (id !== change.id) continue;
        this.#open.delete(sessionId);
        this.#onReleased(sessionId); // its accumulated evidence starts afresh
      }
    }
    this.#metrics.sessionsQuarantined.set(this.#open.size);
  }
}

/** fleet.redis: the records and gates this replica makes, queued for the others. */
export interface SharedQuarantines {
  record(q: QuarantineRecord): void;
  gate(g: QuarantineGate): void;
}

const STATE_RANK: Readonly<Record<QuarantineRecord['state'], number>> = { open: 0, confirmed: 1, released: 2 };

/** A gate change, as announced to the other workers (server.workers > 1). */
export interface QuarantineChange {
  readonly state: 'open' | 'released';
  readonly sessionId: string;
  readonly id: string;
}

function metaOf(s: SessionMeta): SessionMeta {
  return { id: s.id, user: s.user, role: s.role, type: s.type, addresses: s.addresses, origin: s.origin, expiresAtMs: s.expiresAtMs, registeredAtMs: s.registeredAtMs };
}

// The rules whose verdicts carry exfiltration evidence: a scored block (the labels themselves looked like
// data), a sticky block (a new name to a domain blocked for that) and the information-volume budget. A block for being quarantined, a list hit or rebinding says
// nothing about the domain asked for.
const EXFILTRATION_RULES: ReadonlySet<string> = new Set(['threshold', 'accumulation', 'sticky']);

/**
 * The registrable domains a quarantine's evidence shows data going to — the candidates for `confirm` with
 * deny: the trigger and the session's scored or volume blocks since `sinceMs` (its last release: what came
 * before was judged benign by an analyst). Ordinary lookups, even ones blocked while quarantined, never count.
 */
export function exfiltrationDomains(q: QuarantineRecord, sinceMs: number | undefined, registrableOf: (name: string) => string | undefined): string[] {
  const e = q.evidence;
  const after = sinceMs ?? -Infinity;
  const evidence = [...e.recent, ...(e.trigger === null ? [] : [{ atMs: e.trigger.atMs, name: e.trigger.name, action: 'quarantine', rule: e.trigger.rule }])];
  const out = new Set<string>();
  for (const r of evidence) {
    if (r.action === 'answer' || !EXFILTRATION_RULES.has(r.rule) || r.atMs <= after) continue;
    const d = registrableOf(r.name);
    if (d !== undefined) out.add(d);
  }
  return [...out].sort();
}
