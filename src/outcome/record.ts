// What a finished query leaves behind besides its reply: the metrics of its verdict, local answer and reply, the
// verdict log line (src/outcome/verdict-log.ts, with repeats aggregated), the refused-sources log, and one line a
// second for upstream failures during an outage. The pipeline calls it; it is the only place query metrics are
// counted (a packet that never became a query is counted by the edge, src/outcome/edge.ts). Never decides, never changes a session, never writes the store or sockets; never logs tokens.
import type { Logger } from 'pino';
import { WardenError } from '../errors.js';
import { qtypeName, queryKey, rcodeName, SIGNAL_KEYS, verdictKey, type Metrics } from '../ops/telemetry.js';
import { qtypeText } from '../ops/qtypes.js';
import type { RefusedLog } from '../ops/refused-log.js';
import { RCODE, type Query } from '../dns/wire.js';
import type { SessionMeta } from '../sessions/directory.js';
import type { Verdict } from '../policy/judge.js';
import type { Outcome } from './outcome.js';
import { rcodeOf } from './edge.js';
import { createVerdictLog } from './verdict-log.js';

export interface OutcomeRecorderDeps {
  readonly metrics: Metrics;
  readonly log: Logger;
  /** undefined: refused sources are not logged (replay). */
  readonly refusedLog: RefusedLog | undefined;
  readonly nowMs: () => number;
  /** logging.repeat_window_ms (a function: SIGHUP). */
  readonly repeatWindowMs: () => number;
}

export interface OutcomeRecorder {
  /** A verdict: counted by action, rule, mode and session type, its score and signals observed, its log line. */
  verdict(q: Query, session: SessionMeta, verdict: Verdict, eventId: string | undefined, repeatable: boolean): void;
  /** An answer from a local zone. */
  local(q: Query, session: SessionMeta, zone: string, rcode: number): void;
  /** The reply that left: counted by transport, qtype and rcode, its duration; a refusal or a failure logged. */
  reply(q: Query, outcome: Outcome, elapsedMs: number): void;
  /** A refusal to a source without a session, slipped (TC=1) or dropped by the REFUSED rate limit. */
  limited(q: Query, action: 'slipped' | 'dropped'): void;
  /** A session's query refused for its rate limit (policy.session_types.<type>.rate_limit). */
  rateLimited(sessionType: SessionMeta['type']): void;
  /** Logs the counts of repeated blocks whose window has passed, or all of them (`all`: at close). */
  flushRepeats(all?: boolean): void;
}

export function createOutcomeRecorder(d: OutcomeRecorderDeps): OutcomeRecorder {
  const m = d.metrics;
  const verdictLog = createVerdictLog({ log: d.log, nowMs: d.nowMs, repeatWindowMs: d.repeatWindowMs });

  let lastVerdict: Verdict | undefined;
  let lastType: SessionMeta['type'] | undefined;
  let lastKey = 0;
  // ... and its score's and signals' histogram positions (a reused scored verdict — an observe-mode flood of cached
  // names, a quarantine racing the gate — observes the same values on every query): found once per verdict.
  let scorePosition = 0;
  let signalPositions: number[] = [];

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

  return {
    verdict(q, session, verdict, eventId, repeatable) {
      // Cache hits of one session type mostly hand back the same verdict object (a list's, a zero score's, a reused
      // answer): its series is remembered rather than encoded again from four strings on every query.
      const score = verdict.score;
      if (verdict !== lastVerdict || session.type !== lastType) {
        lastVerdict = verdict;
        lastType = session.type;
        lastKey = verdictKey(verdict.action, verdict.rule, verdict.mode, session.type);
        if (score !== undefined) {
          scorePosition = m.scoreTotal.positionOf(session.type, score.total);
          const keys = SIGNAL_KEYS[verdict.action];
          signalPositions = score.signals.map((s) => m.signalValue.positionOf(keys[s.id] ?? `${s.id}|${verdict.action}`, s.value));
        }
      }
      m.verdicts.inc(lastKey);
      if (verdict.rpz !== undefined) m.rpzHits.inc({ zone: verdict.rpz.zone, action: verdict.rpz.action.kind });
      if (score !== undefined) {
        m.scoreTotal.observeAt(scorePosition, score.total);
        const signals = score.signals;
        for (let i = 0; i < signals.length; i++) m.signalValue.observeAt(signalPositions[i]!, signals[i]!.value);
      }
      verdictLog.record(q, session, verdict, eventId, repeatable, lastKey);
    },
    local(q, session, zone, rcode) {
      m.localAnswers.inc(m.localAnswerKey(zone, rcode));
      if (d.log.isLevelEnabled('debug')) d.log.debug({ session: session.id, name: q.name, qtype: qtypeName(q.type), zone, rcode: rcodeName(rcode) }, 'local zone answer');
    },
    reply(q, outcome, elapsedMs) {
      m.queries.inc(queryKey(q.peer.transport, q.type, rcodeOf(outcome)));
      m.queryDuration.observe(outcome.kind, elapsedMs / 1000);
      if (outcome.kind === 'failed') logUpstreamFailure(q, outcome.error);
      else if (outcome.kind === 'refused') {
        m.refused.inc({ reason: outcome.reason });
        d.refusedLog?.note(q.peer.address, outcome.reason, q.atMs);
      }
    },
    rateLimited(sessionType) {
      m.sessionRateLimited.inc({ session_type: sessionType });
    },
    limited(q, action) {
      m.refusedLimited.inc({ action });
      if (action === 'slipped') m.queries.inc(queryKey(q.peer.transport, q.type, RCODE.REFUSED));
    },
    flushRepeats: verdictLog.flush,
  };
}
