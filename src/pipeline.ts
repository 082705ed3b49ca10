// The query path, in the one fixed order the product has: admit → gate → judge → enforce → resolve (and account)
// → re-judge the answer → finish. Each step either ends the query with an Outcome or carries on. Stages return
// values; only transport.ts writes bytes. All decisions live in src/policy/judge.ts; the session's window is
// written only through Policy.account, from the account step. The reply for an outcome is src/outcome/edge.ts's;
// its metrics and log lines src/outcome/record.ts's.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { getDomain } from 'tldts';
import { assertNever, WardenError } from './errors.js';
import type { QuarantineBook } from './analyst/quarantine.js';
import type { HistoryEntry, Session, SessionDirectory, SessionMeta } from './sessions/directory.js';
import type { Metrics } from './ops/telemetry.js';
import { qtypeText } from './ops/qtypes.js';
import type { Resolution } from './dns/upstream.js';
import type { SlottedResolver } from './dns/cache.js';
import { encodeQuestion, encodeSlipReply, type LocalReplyOptions, type Peer, type Query } from './dns/wire.js';
import type { ZoneSet } from './zones/zone-set.js';
import type { Zone } from './zones/zone.js';
import { rpzRedirect } from './zones/rpz.js';
import type { ZoneRecord } from './zones/master-file.js';
import type { RefusalLimiter } from './dns/refusal-limit.js';
import type { SessionRateLimiter } from './sessions/rate-limit.js';
import { verdictOf, type NameMemoHandle, type Policy, type SessionState, type Verdict } from './policy/judge.js';
import type { RefusedLog } from './ops/refused-log.js';
import type { QueryLogSink } from './analyst/query-log.js';
import type { Outcome } from './outcome/outcome.js';
import { decodePacket, encodeOutcome, rcodeOf } from './outcome/edge.js';
import { signalValues } from './outcome/verdict-log.js';
import { createOutcomeRecorder } from './outcome/record.js';

export interface DomainAgeLookup {
  lookup(registrableDomain: string, budgetMs?: number): Promise<number | undefined>;
}

/** What the pipeline needs of the quarantines: whether a session is held, and raising one. */
export type QuarantineGate = Pick<QuarantineBook, 'holds' | 'raise'>;

export interface PipelineDeps {
  readonly sessions: SessionDirectory<SessionState>;
  /** The quarantine gate: what the pipeline asks and raises (a QuarantineBook; replay's stand-in). */
  readonly quarantines: QuarantineGate;
  readonly resolver: SlottedResolver;
  readonly policy: () => Policy; // a function: SIGHUP swaps the policy without dropping queries
  /** false: skip judging (benchmark baseline). */
  readonly judging: () => boolean;
  readonly domainAge: DomainAgeLookup | undefined;
  readonly ageBudgetMs: number;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Where refused sources are logged (rate-limited per source); undefined: not logged (replay). */
  readonly refusedLog?: RefusedLog;
  readonly nowMs: () => number;
  readonly udpPayloadSize: number;
  /** Rate limit of REFUSED answers over UDP per source prefix; undefined: none. */
  readonly refusals?: RefusalLimiter;
  /** Per-session query rate limit (policy.session_types.<type>.rate_limit); undefined: none. */
  readonly sessionRates?: SessionRateLimiter;
  /** The local zones (a function: SIGHUP swaps them); undefined: none. */
  readonly zones?: () => ZoneSet;
  /**
   * Repeated blocks of one kind from one session within this long are one history row and one log line with
   * a count (logging.repeat_window_ms): a flood costs no more per query than a cache hit. A function: SIGHUP.
   */
  readonly repeatWindowMs: () => number;
  /** The searchable query log (query_log.enabled): one buffered row per query, written in batches elsewhere. */
  readonly queryLog?: QueryLogSink;
}

// Event ids: a random per-process prefix and a counter, so an id is unique across restarts and
// costs nothing per query. They appear in EDE text, logs and quarantine evidence.
const EVENT_PREFIX = randomBytes(4).toString('hex');
let eventCounter = 0;
export function newEventId(): string {
  return `${EVENT_PREFIX}-${(++eventCounter).toString(36)}`;
}

// Zone transfers and meta queries are not for agents.
const UNSUPPORTED_QTYPES: ReadonlySet<number> = new Set([251, 252, 253, 254]); // IXFR, AXFR, MAILB, MAILA
const CLASS_IN = 1;
// One outcome for every rate-limited query (read-only): a session over its limit allocates nothing here.
const RATE_LIMITED: Outcome = Object.freeze({ kind: 'refused', reason: 'rate_limited' });
// A CNAME chain that leaves one local zone for another (and back) is followed this many times, then SERVFAIL.
const MAX_LOCAL_HOPS = 4;
const QTYPE_CNAME = 5;

/**
 * One query on its way through the steps: built once by handle() after admission, read by every step after it.
 * The steps fill in what they learn (the domain's age, the verdict, its event id), each field written once.
 */
interface QueryContext {
  readonly q: Query;
  readonly session: Session<SessionState>;
  readonly policy: Policy;
  /** Local-zone CNAMEs and RPZ redirects followed so far (each target is a query of its own). */
  readonly hops: number;
  ageDays: number | undefined;
  verdict: Verdict | undefined;
  eventId: string | undefined;
  /** The name's memo, as kept on its cache entry (see judgeAndAct): the answer check asks it. */
  memo: NameMemoHandle | undefined;
}

export function createPipeline(d: PipelineDeps): {
  handle(q: Query): Outcome | Promise<Outcome>;
  answerPacket(packet: Buffer, peer: Peer): Buffer | undefined | Promise<Buffer | undefined>;
  /** Logs the counts of repeated blocks whose window has passed (every window, from a timer), or all of them (`all`: at close). */
  flushRepeats(all?: boolean): void;
} {
  // The closed gate's answer, built once per quarantine (and policy): a quarantined session's flood allocates nothing here.
  const rec = createOutcomeRecorder({ metrics: d.metrics, log: d.log, refusedLog: d.refusedLog, nowMs: d.nowMs, repeatWindowMs: d.repeatWindowMs });
  const gated = new WeakMap<Session<SessionState>, { readonly id: string; readonly policy: Policy; readonly outcome: Outcome }>();

  // The decide phase is synchronous, and so is a cache hit: only a domain-age wait or an upstream
  // round trip makes a query asynchronous. Promise hops cost a measurable share of a cache hit
  // (`npm run bench`, scoring off vs the bare Node ceiling), so none is taken where none is needed.
  function handle(q: Query, hops = 0): Outcome | Promise<Outcome> {
    // 1 admit: unknown or expired source → REFUSED; we are never an open resolver.
    const admission = d.sessions.admit(q.peer.address, q.atMs);
    if (!('session' in admission)) return { kind: 'refused', reason: admission.refused };
    const session = admission.session;
    // Over its session's rate limit: REFUSED at once (never dropped), before any other work; not in its history.
    if (d.sessionRates !== undefined && !d.sessionRates.take(session, q.atMs)) {
      rec.rateLimited(session.type);
      return RATE_LIMITED;
    }
    // The policy is read once: a SIGHUP while this query waits judges and accounts it on one policy, not two.
    const c: QueryContext = { q, session, policy: d.policy(), hops, ageDays: undefined, verdict: undefined, eventId: undefined, memo: undefined };
    if (q.class !== CLASS_IN || UNSUPPORTED_QTYPES.has(q.type)) return finish(c, { kind: 'refused', reason: 'unsupported' });

    // 2 gate: a quarantined session gets nothing until an analyst releases it. First and cheapest: one map
    // lookup, and the blocking outcome is the same object for every query while the quarantine lasts.
    const quarantineId = d.quarantines.holds(session.id);
    if (quarantineId !== undefined) return gateBlocked(c, quarantineId);

    // Local zones: answered here, authoritatively, and never scored (the name never leaves the node). A
    // name at or below a delegation inside the zone goes on like any other query.
    const zone = d.zones?.().find(q.name);
    if (zone !== undefined) {
      const local = answerLocally(c, zone);
      if (local !== undefined) return local;
    }

    if (!d.judging()) return resolveAndCheck(c);

    // 3 judge: lists, then the score against the session type's thresholds. The domain-age wait is
    // the only wait here, and it is bounded by the budget.
    const registrable = d.domainAge === undefined ? undefined : registrableOf(q.name);
    if (registrable !== undefined) {
      return d.domainAge!.lookup(registrable, d.ageBudgetMs).then((ageDays) => {
        // The gate again: while this query waited for its domain's age, another may have quarantined the session;
        // it must not be judged (and possibly answered) as if the session were free.
        const heldBy = d.quarantines.holds(session.id);
        if (heldBy !== undefined) return gateBlocked(c, heldBy);
        c.ageDays = ageDays;
        return judgeAndAct(c);
      });
    }
    return judgeAndAct(c);
  }

  function answerLocally(c: QueryContext, zone: Zone): Outcome | Promise<Outcome> | undefined {
    const q = c.q;
    const r = zone.lookup(q.name, q.type);
    switch (r.kind) {
      case 'delegated':
        return undefined;
      case 'answer':
        return finish(c, { kind: 'local', zone: zone.origin, reply: { rcode: 'NOERROR', authoritative: true, answer: r.answer, authority: r.authority, additional: r.additional } });
      case 'nxdomain':
        return finish(c, { kind: 'local', zone: zone.origin, reply: { rcode: 'NXDOMAIN', authoritative: true, answer: r.answer, authority: r.authority, additional: [] } });
      case 'cname-out': {
        // The target is asked like any query of this session (admitted, gated, judged, resolved, remembered);
        // its answer is appended to the chain, and a block or failure of the target is the answer to all of it.
        if (c.hops >= MAX_LOCAL_HOPS) return finish(c, { kind: 'failed', ede: 0, error: new WardenError('ERR_INTERNAL', `CNAME chain through local zones longer than ${MAX_LOCAL_HOPS} zones`) });
        const target: Query = { ...q, name: r.target, question: encodeQuestion(r.target, q.type), maxReplyBytes: 65_535 };
        const then = (o: Outcome): Outcome => {
          let reply: LocalReplyOptions;
          if (o.kind === 'answered') reply = { rcode: 'NOERROR', authoritative: true, answer: r.answer, authority: [], additional: [], tail: { query: target, reply: o.reply, ageSec: o.ageSec } };
          else if (o.kind === 'local') reply = { ...o.reply, authoritative: true, answer: [...r.answer, ...o.reply.answer] };
          else return o; // blocked or failed: the target's own finish recorded it (once)
          return finish(c, { kind: 'local', zone: zone.origin, reply });
        };
        const outcome = handle(target, c.hops + 1);
        return outcome instanceof Promise ? outcome.then(then) : then(outcome);
      }
      default:
        return assertNever(r);
    }
  }

  /** The quarantine gate's answer: the same outcome object for every query while the quarantine lasts. */
  function gateBlocked(c: QueryContext, quarantineId: string): Outcome {
    const { session, policy } = c;
    let g = gated.get(session);
    if (g === undefined || g.id !== quarantineId || g.policy !== policy) {
      g = { id: quarantineId, policy, outcome: { kind: 'blocked', verdict: quarantinedVerdict(policy, session.type), eventId: quarantineId, text: `session quarantined (${quarantineId})` } };
      gated.set(session, g);
    }
    return finish(c, g.outcome);
  }

  function judgeAndAct(c: QueryContext): Outcome | Promise<Outcome> {
    const { q, session, policy } = c;
    // A cache hit reaches its name's memo through the entry it will be answered from (pipeline.ts is the memo's one
    // writer there) rather than the policy's map of names, and a verdict still valid on it is given again without
    // judging afresh (`npm run bench`).
    const slot = d.resolver.slotFor?.(q);
    let memo = slot?.judged as NameMemoHandle | undefined;
    let verdict = policy.reuse(memo, q.type, session.type, session.state, c.ageDays, q.atMs);
    if (verdict === undefined) {
      verdict = policy.judge({ name: q.name, qtype: q.type, session, state: session.state, ageDays: c.ageDays, atMs: q.atMs });
      memo = policy.lastMemoHandle;
      if (slot !== undefined) slot.judged = memo;
    }
    c.memo = memo;
    c.verdict = verdict;

    // 4 enforce: the block is accounted, and the quarantine on disk, before the blocking answer leaves.
    if (verdict.action !== 'answer') {
      const eventId = newEventId();
      c.eventId = eventId;
      if (!verdict.enforced) return resolveAndCheck(c); // observe mode: answer, but log as would-block
      account(c, false);
      if (verdict.action === 'quarantine') {
        const record = d.quarantines.raise(session, verdict, q, eventId);
        return finish(c, { kind: 'blocked', verdict, eventId, text: `session quarantined (${record.id}): ${verdict.reason}` });
      }
      const text = `${verdict.rule}: ${verdict.reason} (${eventId})`;
      if (verdict.rpz !== undefined) {
        const redirect = rpzRedirect(verdict.rpz, q.type);
        if (redirect !== undefined) return followRpzRedirect(c, verdict, eventId, text, redirect);
      }
      return finish(c, { kind: 'blocked', verdict, eventId, text });
    }
    return resolveAndCheck(c);
  }

  /**
   * Step 4½, the window's one input: what became of the judged query (it left for an upstream, or its block is
   * evidence). Told at once — when the query is sent, not when an answer comes — so an attacker's nameserver that
   * never answers, or many queries in flight at once, cannot keep labels out of the accounts.
   */
  function account(c: QueryContext, sent: boolean): void {
    if (!sent && c.verdict?.block === undefined && c.ageDays === undefined) return; // a cache hit or a list block: nothing to note, nothing allocated
    c.policy.account(c.session.state, { kind: 'query', name: c.q.name, qtype: c.q.type, atMs: c.q.atMs, ageDays: c.ageDays, verdict: c.verdict, sent });
  }

  /**
   * An RPZ trigger whose local data is a CNAME (a walled garden elsewhere): the target is asked like any query of
   * this session and its answer appended after the CNAME, as BIND does; the reply carries the block's EDE.
   * A blocked or failed target leaves the CNAME alone.
   */
  function followRpzRedirect(c: QueryContext, verdict: Verdict, eventId: string, text: string, cname: ZoneRecord): Outcome | Promise<Outcome> {
    const q = c.q;
    const chain = [{ name: q.name, type: QTYPE_CNAME, ttl: cname.ttl, rdata: cname.rdata }];
    const bare: LocalReplyOptions = { rcode: 'NOERROR', authoritative: false, answer: chain, authority: [], additional: [] };
    if (c.hops >= MAX_LOCAL_HOPS || cname.target === undefined) return finish(c, { kind: 'blocked', verdict, eventId, text, rewrite: bare });
    const target: Query = { ...q, name: cname.target, question: encodeQuestion(cname.target, q.type), maxReplyBytes: 65_535 };
    const then = (o: Outcome): Outcome => {
      const rewrite: LocalReplyOptions = o.kind === 'answered' ? { ...bare, tail: { query: target, reply: o.reply, ageSec: o.ageSec } }
        : o.kind === 'local' ? { ...o.reply, authoritative: false, answer: [...chain, ...o.reply.answer] }
        : o.kind === 'blocked' && o.rewrite !== undefined ? { ...o.rewrite, answer: [...chain, ...o.rewrite.answer] }
        : bare;
      return finish(c, { kind: 'blocked', verdict, eventId, text, rewrite });
    };
    const outcome = handle(target, c.hops + 1);
    return outcome instanceof Promise ? outcome.then(then) : then(outcome);
  }

  function resolveAndCheck(c: QueryContext): Outcome | Promise<Outcome> {
    // 5 resolve: cache → upstreams; an upstream failure is a value. A promise means the query went out (so does an
    // answer at hand that says it came from upstream: a stand-in such as replay's answers at once).
    const resolution = d.resolver.resolve(c.q);
    const sent = resolution instanceof Promise || (resolution.ok && resolution.via === 'upstream');
    if (c.verdict !== undefined) account(c, sent);
    if (resolution instanceof Promise) return resolution.then((r) => checkAnswer(c, r));
    return checkAnswer(c, resolution);
  }

  function checkAnswer(c: QueryContext, resolution: Resolution): Outcome {
    const { q, session, verdict, eventId } = c;
    if (!resolution.ok) return finish(c, { kind: 'failed', ede: resolution.ede, error: resolution.error });
    // An upstream's answer feeds the session's NXDOMAIN ratio (a cache hit left nothing new).
    if (verdict !== undefined && resolution.via === 'upstream') c.policy.account(session.state, { kind: 'answer', atMs: q.atMs, rcode: resolution.reply.rcode });
    // 6 re-judge the answer: a public name pointing at private or link-local space is rebinding/SSRF.
    if (verdict !== undefined && resolution.reply.addresses.length > 0 && !c.policy.answerCleared(c.memo, resolution.reply.addresses)) {
      const answerVerdict = c.policy.judgeAnswer(q.name, resolution.reply.addresses, session);
      if (answerVerdict !== undefined) {
        const id = eventId ?? newEventId();
        if (answerVerdict.enforced) return finish(c, { kind: 'blocked', verdict: answerVerdict, eventId: id, text: `${answerVerdict.rule}: ${answerVerdict.reason} (${id})` });
        return finish(c, { kind: 'answered', via: resolution.via, reply: resolution.reply, ageSec: resolution.ageSec, verdict: answerVerdict, eventId: id, staleTtlSec: resolution.staleTtlSec });
      }
    }
    return finish(c, { kind: 'answered', via: resolution.via, reply: resolution.reply, ageSec: resolution.ageSec, verdict, eventId, staleTtlSec: resolution.staleTtlSec });
  }

  // 7 finish: remember the query, record the outcome — in one place. (The window was accounted already.)
  function finish(c: QueryContext, outcome: Outcome): Outcome {
    const { q, session } = c;
    const rcode = rcodeOf(outcome);
    const verdict = outcome.kind === 'answered' || outcome.kind === 'blocked' ? outcome.verdict : undefined;
    const eventId = outcome.kind === 'blocked' || outcome.kind === 'answered' ? outcome.eventId : undefined;
    // Without a verdict (policy.enabled: false) an answered query is still an answer, not a refusal.
    const action = verdict?.action ?? (outcome.kind === 'answered' || outcome.kind === 'local' ? 'answer' : outcome.kind === 'failed' ? 'failed' : 'refused');
    const rule = verdict?.rule ?? (outcome.kind === 'local' ? 'local_zone' : 'none');
    d.queryLog?.record(q.atMs, q.name, q.type, session, outcome.kind, action, rule, rcode, verdict?.score?.total);
    // A block that can repeat without end (the closed gate, a list, anything in observe mode) is counted on the
    // history row of the one like it before, within the window, not added as a row of its own. An enforced scored
    // block is evidence of its own, and cannot flood: the session is quarantined after a few in a window.
    const repeatable = verdict !== undefined && verdict.action !== 'answer' && (verdict.score === undefined || !verdict.enforced);
    if (repeatable && d.sessions.repeatLast(session, verdict.action, verdict.rule, verdict.enforced, rcode, q.atMs, d.repeatWindowMs())) {
      rec.verdict(q, session, verdict, eventId, true);
      return outcome;
    }
    const entry: { -readonly [K in keyof HistoryEntry]: HistoryEntry[K] } = {
      atMs: q.atMs,
      name: q.name,
      qtype: q.type,
      action,
      rule,
      rcode,
      enforced: verdict?.enforced ?? true,
    };
    if (eventId !== undefined) entry.eventId = eventId;
    if (verdict?.score !== undefined) entry.score = round(verdict.score.total);
    if (verdict !== undefined && verdict.action !== 'answer') {
      entry.reason = verdict.reason;
      if (verdict.score !== undefined) entry.signals = signalValues(verdict.score);
    }
    d.sessions.remember(session, entry);
    if (verdict !== undefined) rec.verdict(q, session, verdict, eventId, repeatable);
    else if (outcome.kind === 'local') rec.local(q, session, outcome.zone, rcode);
    return outcome;
  }

  function answerPacket(packet: Buffer, peer: Peer): Buffer | undefined | Promise<Buffer | undefined> {
    const started = performance.now();
    const q = decodePacket(packet, peer, d.nowMs(), d.udpPayloadSize, d.metrics);
    if ('reply' in q) return q.reply;
    let outcome: Outcome | Promise<Outcome>;
    try {
      outcome = handle(q);
    } catch (err) {
      outcome = internalFailure(q, err);
    }
    if (outcome instanceof Promise) return outcome.then((o) => replyFor(q, o, started), (err: unknown) => replyFor(q, internalFailure(q, err), started));
    return replyFor(q, outcome, started);
  }

  // A fault of ours (a bug, the store failing) still gets an answer — SERVFAIL + EDE 0 with an event
  // id — and one error line with that id, never a silent drop the agent would wait out.
  function internalFailure(q: Query, err: unknown): Outcome {
    const eventId = newEventId();
    d.log.error({ eventId, name: q.name, qtype: qtypeText(q.type), err: err instanceof Error ? err.stack ?? err.message : String(err) }, 'internal error while answering a query');
    return { kind: 'failed', ede: 0, error: new WardenError('ERR_INTERNAL', `internal error (${eventId})`, { cause: err }) };
  }

  function replyFor(q: Query, outcome: Outcome, started: number): Buffer | undefined {
    const peer = q.peer;
    // A refusal goes to whatever source the packet claims: over UDP, past the source prefix's budget, it is
    // slipped (TC=1, no EDE text, no bigger than the query) or dropped, so we amplify nothing toward a victim.
    // A session's rate-limited query is answered in full: its source is a registered one, and a drop would cost
    // the agent a timeout instead of telling it to slow down.
    // Only sources without a session are rate-limited here (the amplification a spoofed source could buy); a
    // session's own refusals (its rate limit, a zone transfer) are always answered in full.
    if (outcome.kind === 'refused' && (outcome.reason === 'no_session' || outcome.reason === 'expired') && peer.transport === 'udp' && d.refusals !== undefined) {
      const decision = d.refusals.decide(peer.address, q.atMs);
      if (decision === 'drop') {
        rec.limited(q, 'dropped');
        return undefined;
      }
      if (decision === 'slip') {
        rec.limited(q, 'slipped');
        return encodeSlipReply(q, 'REFUSED');
      }
    }
    const reply = encodeOutcome(q, outcome, d.udpPayloadSize);
    rec.reply(q, outcome, performance.now() - started);
    return reply;
  }

  return { handle, answerPacket, flushRepeats: rec.flushRepeats };
}

/** The ICANN registrable domain (what RDAP/WHOIS know and what a learned deny names). */
export function registrableOf(name: string): string | undefined {
  return getDomain(name) ?? undefined;
}

function quarantinedVerdict(policy: Policy, type: SessionMeta['type']): Verdict {
  return verdictOf('nxdomain', 'quarantined', true, policy.mode(type), 'session quarantined');
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

