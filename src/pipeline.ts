// The query path, in the one fixed order the product has: admit → gate → judge → enforce →
// resolve → re-judge the answer → finish. Each step either ends the query with an Outcome or
// carries on. Stages return values; only transport.ts writes bytes. All decisions live in policy.ts.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { getDomain } from 'tldts';
import { assertNever, WardenError } from './errors.js';
import type { QuarantineBook } from './quarantine.js';
import type { HistoryEntry, Session, SessionDirectory, SessionMeta } from './sessions.js';
import { qtypeText, queryKey, verdictKey, type Metrics } from './telemetry.js';
import type { Resolution, Resolver } from './upstream.js';
import { RCODE, decodeQuery, encodeForwardedReply, encodeSynthReply, type Peer, type Query, type Reply } from './wire.js';
import type { Policy, SessionState, Verdict } from './policy.js';

export type Outcome =
  | { readonly kind: 'answered'; readonly via: 'cache' | 'upstream'; readonly reply: Reply; readonly ageSec: number; readonly verdict: Verdict | undefined; readonly eventId: string | undefined }
  | { readonly kind: 'blocked'; readonly verdict: Verdict; readonly eventId: string; readonly text: string }
  | { readonly kind: 'refused'; readonly reason: 'no_session' | 'expired' | 'unsupported' }
  | { readonly kind: 'failed'; /** 22 No Reachable Authority, 23 Network Error, 0 Other (a fault of ours) */ readonly ede: 0 | 22 | 23; readonly error: WardenError };

export interface DomainAgeLookup {
  lookup(registrableDomain: string, budgetMs?: number): Promise<number | undefined>;
}

export interface PipelineDeps {
  readonly sessions: SessionDirectory<SessionState>;
  readonly quarantines: QuarantineBook;
  readonly resolver: Resolver;
  readonly policy: () => Policy; // a function: SIGHUP swaps the policy without dropping queries
  /** false: skip judging (benchmark baseline). */
  readonly judging: () => boolean;
  readonly domainAge: DomainAgeLookup | undefined;
  readonly ageBudgetMs: number;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly nowMs: () => number;
  readonly udpPayloadSize: number;
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
// Blocked answers carry an SOA so stub resolvers cache them briefly (RFC 2308) but not past a release.
const BLOCK_NEGATIVE_TTL_SEC = 5;

export function createPipeline(d: PipelineDeps): {
  handle(q: Query): Outcome | Promise<Outcome>;
  answerPacket(packet: Buffer, peer: Peer): Buffer | undefined | Promise<Buffer | undefined>;
} {
  const m = d.metrics;

  // The decide phase is synchronous, and so is a cache hit: only a domain-age wait or an upstream
  // round trip makes a query asynchronous. Promise hops cost a measurable share of a cache hit
  // (`npm run bench`, scoring off vs the bare Node ceiling), so none is taken where none is needed.
  function handle(q: Query): Outcome | Promise<Outcome> {
    // 1 admit: unknown or expired source → REFUSED; we are never an open resolver.
    const admission = d.sessions.admit(q.peer.address, q.atMs);
    if (!('session' in admission)) return { kind: 'refused', reason: admission.refused };
    const session = admission.session;
    if (q.class !== CLASS_IN || UNSUPPORTED_QTYPES.has(q.type)) return finish(q, session, { kind: 'refused', reason: 'unsupported' });

    const policy = d.policy();
    // 2 gate: a quarantined session gets nothing until an analyst releases it.
    const quarantineId = d.quarantines.holds(session.id);
    if (quarantineId !== undefined) {
      return finish(q, session, { kind: 'blocked', verdict: quarantinedVerdict(policy, session.type), eventId: quarantineId, text: `session quarantined (${quarantineId})` });
    }

    if (!d.judging()) return resolveAndCheck(q, session, policy, undefined, undefined);

    // 3 judge: lists, then the score against the session type's thresholds. The domain-age wait is
    // the only wait here, and it is bounded by the budget.
    const registrable = d.domainAge === undefined ? undefined : registrableOf(q.name);
    if (registrable !== undefined) {
      return d.domainAge!.lookup(registrable, d.ageBudgetMs).then((ageDays) => judgeAndAct(q, session, policy, ageDays));
    }
    return judgeAndAct(q, session, policy, undefined);
  }

  function judgeAndAct(q: Query, session: Session<SessionState>, policy: Policy, ageDays: number | undefined): Outcome | Promise<Outcome> {
    const verdict = policy.judge({ name: q.name, qtype: q.type, session, state: session.state, ageDays, atMs: q.atMs });

    // 4 enforce: the quarantine is on disk before the blocking answer leaves.
    if (verdict.action !== 'answer') {
      const eventId = newEventId();
      if (verdict.action === 'quarantine' && verdict.enforced) {
        const record = d.quarantines.raise(session, verdict, q, eventId);
        return finish(q, session, { kind: 'blocked', verdict, eventId, text: `session quarantined (${record.id}): ${verdict.reason}` });
      }
      if (verdict.enforced) return finish(q, session, { kind: 'blocked', verdict, eventId, text: `${verdict.rule}: ${verdict.reason} (${eventId})` });
      return resolveAndCheck(q, session, policy, verdict, eventId); // observe mode: answer, but log as would-block
    }
    return resolveAndCheck(q, session, policy, verdict, undefined);
  }

  function resolveAndCheck(q: Query, session: Session<SessionState>, policy: Policy, verdict: Verdict | undefined, eventId: string | undefined): Outcome | Promise<Outcome> {
    // 5 resolve: cache → upstreams; an upstream failure is a value.
    const resolution = d.resolver.resolve(q);
    if (resolution instanceof Promise) return resolution.then((r) => checkAnswer(q, session, policy, verdict, eventId, r));
    return checkAnswer(q, session, policy, verdict, eventId, resolution);
  }

  function checkAnswer(q: Query, session: Session<SessionState>, policy: Policy, verdict: Verdict | undefined, eventId: string | undefined, resolution: Resolution): Outcome {
    if (!resolution.ok) return finish(q, session, { kind: 'failed', ede: resolution.ede, error: resolution.error });
    // 6 re-judge the answer: a public name pointing at private or link-local space is rebinding/SSRF.
    if (verdict !== undefined && resolution.reply.addresses.length > 0) {
      const answerVerdict = policy.judgeAnswer(q.name, resolution.reply.addresses, session);
      if (answerVerdict !== undefined) {
        const id = eventId ?? newEventId();
        if (answerVerdict.enforced) return finish(q, session, { kind: 'blocked', verdict: answerVerdict, eventId: id, text: `${answerVerdict.rule}: ${answerVerdict.reason} (${id})` });
        return finish(q, session, { kind: 'answered', via: resolution.via, reply: resolution.reply, ageSec: resolution.ageSec, verdict: answerVerdict, eventId: id });
      }
    }
    return finish(q, session, { kind: 'answered', via: resolution.via, reply: resolution.reply, ageSec: resolution.ageSec, verdict, eventId });
  }

  // 7 finish: feed the session's window, remember the query, record the outcome — in one place.
  function finish(q: Query, session: Session<SessionState>, outcome: Outcome): Outcome {
    const policy = d.policy();
    const rcode = rcodeOf(outcome);
    const verdict = outcome.kind === 'answered' || outcome.kind === 'blocked' ? outcome.verdict : undefined;
    // Only what was forwarded upstream changes the session's window (a cache hit left nothing new).
    if (outcome.kind === 'answered' && outcome.via === 'upstream' && d.judging()) policy.observe(session.state, {
      name: q.name,
      qtype: q.type,
      atMs: q.atMs,
      forwarded: true,
      rcode,
      blocked: false,
      facts: verdict?.facts,
    });
    const eventId = outcome.kind === 'blocked' || outcome.kind === 'answered' ? outcome.eventId : undefined;
    const entry: { -readonly [K in keyof HistoryEntry]: HistoryEntry[K] } = {
      atMs: q.atMs,
      name: q.name,
      qtype: q.type,
      // Without a verdict (policy.enabled: false) an answered query is still an answer, not a refusal.
      action: verdict?.action ?? (outcome.kind === 'answered' ? 'answer' : outcome.kind === 'failed' ? 'failed' : 'refused'),
      rule: verdict?.rule ?? 'none',
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
    if (verdict !== undefined) recordVerdict(q, session, verdict, eventId);
    return outcome;
  }

  function recordVerdict(q: Query, session: SessionMeta, verdict: Verdict, eventId: string | undefined): void {
    m.verdicts.inc(verdictKey(verdict.action, verdict.rule, verdict.mode, session.type));
    if (verdict.score !== undefined) {
      m.scoreTotal.observe(session.type, verdict.score.total);
      for (const s of verdict.score.signals) m.signalValue.observe(s.id, s.value);
    }
    if (verdict.action !== 'answer' || d.log.isLevelEnabled('debug')) {
      d.log[verdict.action === 'answer' ? 'debug' : 'warn'](verdictLogLine(q, session, verdict, eventId), verdict.enforced ? `query ${verdict.action}` : `query would ${verdict.action} (observe)`);
    }
  }

  function answerPacket(packet: Buffer, peer: Peer): Buffer | undefined | Promise<Buffer | undefined> {
    const started = performance.now();
    const decoded = decodeQuery(packet, peer, d.nowMs(), d.udpPayloadSize);
    if (!decoded.ok) {
      d.metrics.malformed.inc({ transport: peer.transport, reason: decoded.reason });
      return decoded.reply;
    }
    const q = decoded.query;
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

  function replyFor(q: Query, outcome: Outcome, started: number): Buffer {
    const peer = q.peer;
    const reply = encodeOutcome(q, outcome);
    m.queries.inc(queryKey(peer.transport, q.type, rcodeOf(outcome)));
    m.queryDuration.observe(outcome.kind, (performance.now() - started) / 1000);
    if (outcome.kind === 'failed') logUpstreamFailure(q, outcome.error);
    return reply;
  }

  // During an outage every query fails: one log line per second says so, with how many were suppressed.
  let failureLogAtMs = -Infinity;
  let failuresSuppressed = 0;
  function logUpstreamFailure(q: Query, error: WardenError): void {
    if (q.atMs - failureLogAtMs < 1000) {
      failuresSuppressed++;
      return;
    }
    d.log.warn({ name: q.name, qtype: qtypeText(q.type), err: error.message, suppressed: failuresSuppressed }, 'upstream failure');
    failureLogAtMs = q.atMs;
    failuresSuppressed = 0;
  }

  function encodeOutcome(q: Query, outcome: Outcome): Buffer {
    const size = d.udpPayloadSize;
    switch (outcome.kind) {
      case 'answered':
        return encodeForwardedReply(q, outcome.reply, outcome.ageSec, size);
      case 'blocked': {
        const code = outcome.verdict.rule === 'deny_list' || outcome.verdict.rule === 'learned_deny' ? 17 : 15; // 17 Filtered, 15 Blocked
        return encodeSynthReply(q, { rcode: 'NXDOMAIN', ede: { code, text: outcome.text }, negativeTtlSec: BLOCK_NEGATIVE_TTL_SEC }, size);
      }
      case 'refused': {
        const text = outcome.reason === 'no_session' ? 'no session registered for this source address'
          : outcome.reason === 'expired' ? 'session expired: no session registered for this source address'
          : 'query class or type not supported';
        return encodeSynthReply(q, { rcode: 'REFUSED', ede: { code: outcome.reason === 'unsupported' ? 21 : 18, text } }, size);
      }
      case 'failed':
        // The agent learns that the upstreams failed, not where they are; the log has the detail.
        return encodeSynthReply(q, { rcode: 'SERVFAIL', ede: { code: outcome.ede, text: outcome.ede === 22 ? 'no upstream answered in time' : outcome.ede === 23 ? 'upstream unreachable' : outcome.error.message } }, size);
      default:
        return assertNever(outcome);
    }
  }

  return { handle, answerPacket };
}

/** The ICANN registrable domain (what RDAP/WHOIS know and what a learned deny names). */
export function registrableOf(name: string): string | undefined {
  return getDomain(name) ?? undefined;
}

function quarantinedVerdict(policy: Policy, type: SessionMeta['type']): Verdict {
  return { action: 'nxdomain', rule: 'quarantined', enforced: true, mode: policy.mode(type), reason: 'session quarantined' };
}

export function rcodeOf(outcome: Outcome): number {
  switch (outcome.kind) {
    case 'answered': return outcome.reply.rcode;
    case 'blocked': return RCODE.NXDOMAIN;
    case 'refused': return RCODE.REFUSED;
    case 'failed': return RCODE.SERVFAIL;
    default: return assertNever(outcome);
  }
}

/** The shape of the log line for every non-allow verdict; `replay` reads the same shape. */
export interface VerdictLogLine {
  readonly event: 'verdict';
  readonly eventId: string | undefined;
  readonly session: string;
  readonly user: string;
  readonly role: string;
  readonly session_type: string;
  readonly name: string;
  readonly qtype: string;
  readonly action: string;
  readonly rule: string;
  readonly enforced: boolean;
  readonly mode: string;
  readonly reason: string;
  readonly score: number | undefined;
  readonly signals: Record<string, number> | undefined;
  readonly ts: number;
}

function signalValues(score: NonNullable<Verdict['score']>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of score.signals) out[s.id] = round(s.value);
  return out;
}

export function verdictLogLine(q: Query, session: SessionMeta, v: Verdict, eventId: string | undefined): VerdictLogLine {
  const signals = v.score === undefined ? undefined : signalValues(v.score);
  return {
    event: 'verdict', eventId, session: session.id, user: session.user, role: session.role, session_type: session.type,
    name: q.name, qtype: qtypeText(q.type), action: v.action, rule: v.rule, enforced: v.enforced, mode: v.mode, reason: v.reason,
    score: v.score === undefined ? undefined : round(v.score.total), signals, ts: q.atMs,
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export { RCODE };
