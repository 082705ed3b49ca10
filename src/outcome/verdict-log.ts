// The verdict log: one warn line per blocking verdict (debug for answers), in the shape `dnswarden replay` reads.
// Owns the repeat aggregation: a block that can repeat without end (the closed gate, a list, anything in observe
// mode) is logged once per session, kind and window, then counted, and one `verdict_repeat` line says how many
// when the window has passed (`flush`, from a timer, or all at close) — a flood costs no log line per query.
// Never decides, never counts metrics (src/outcome/record.ts does), never writes the store or sockets; never logs tokens.
import type { Logger } from 'pino';
import { qtypeName } from '../ops/telemetry.js';
import { qtypeText } from '../ops/qtypes.js';
import type { Query } from '../dns/wire.js';
import type { SessionMeta } from '../sessions/directory.js';
import type { Verdict } from '../policy/judge.js';

export interface VerdictLogDeps {
  readonly log: Logger;
  readonly nowMs: () => number;
  /** logging.repeat_window_ms (a function: SIGHUP). */
  readonly repeatWindowMs: () => number;
}

export interface VerdictLog {
  /**
   * Logs a verdict (a block at warn, an answer at debug). `repeatable`: a block that may be only counted when one
   * like it from the session opened the current window.
   */
  /** `key`: verdictKey(action, rule, mode, session type) of `verdict` (the recorder has it at hand). */
  record(q: Query, session: SessionMeta, verdict: Verdict, eventId: string | undefined, repeatable: boolean, key: number): void;
  /** Logs the counts of repeated blocks whose window has passed (every window, from a timer), or all of them (`all`: at close). */
  flush(all?: boolean): void;
}

/** Blocks of one kind (action, rule, mode, enforced) from one session in the current window, counted, not logged. */
interface Repeats {
  readonly session: SessionMeta;
  readonly windowStartMs: number;
  count: number;
  firstTs: number;
  lastTs: number;
  firstEventId: string | undefined;
  lastEventId: string | undefined;
  lastName: string;
  lastQtype: number;
  verdict: Verdict;
}

export function createVerdictLog(d: VerdictLogDeps): VerdictLog {
  // Per session, per kind of block (verdictKey × enforced): the repeats counted in the current window.
  const repeats = new Map<SessionMeta, Map<number, Repeats>>();
  // The answer's debug line is asked for on every answered query: the level's number read and compared (a SIGHUP
  // may change log.level), not pino's isLevelEnabled (a name lookup and a comparator call per query).
  const debugLevel = d.log.levels.values.debug ?? 20;

  function record(q: Query, session: SessionMeta, verdict: Verdict, eventId: string | undefined, repeatable: boolean, key: number): void {
    if (verdict.action !== 'answer') {
      if (repeatable && isRepeat(q, session, verdict, eventId, key * 2 + (verdict.enforced ? 1 : 0))) return;
      d.log.warn(verdictLogLine(q, session, verdict, eventId), verdictMessage(verdict));
    } else if (d.log.levelVal <= debugLevel) {
      d.log.debug(verdictLogLine(q, session, verdict, eventId), verdictMessage(verdict));
    }
  }

  // The first block of a kind from a session is logged in full and opens a window; the blocks like it within
  // the window are only counted (no log line, no allocation), and one line says how many when the window has
  // passed. Metrics still count every query.
  function isRepeat(q: Query, session: SessionMeta, verdict: Verdict, eventId: string | undefined, key: number): boolean {
    let kinds = repeats.get(session);
    const open = kinds?.get(key);
    if (open !== undefined && q.atMs >= open.windowStartMs && q.atMs - open.windowStartMs < d.repeatWindowMs()) {
      if (open.count === 0) {
        open.firstTs = q.atMs;
        open.firstEventId = eventId;
      }
      open.count++;
      open.lastTs = q.atMs;
      open.lastEventId = eventId;
      open.lastName = q.name;
      open.lastQtype = q.type;
      open.verdict = verdict;
      return true;
    }
    if (open !== undefined) logRepeats(open);
    if (kinds === undefined) repeats.set(session, (kinds = new Map()));
    kinds.set(key, { session, windowStartMs: q.atMs, count: 0, firstTs: q.atMs, lastTs: q.atMs, firstEventId: undefined, lastEventId: undefined, lastName: q.name, lastQtype: q.type, verdict });
    return false;
  }

  function logRepeats(r: Repeats): void {
    if (r.count === 0) return;
    const v = r.verdict;
    const s = r.session;
    const line: VerdictRepeatLogLine = {
      event: 'verdict_repeat', count: r.count, session: s.id, user: s.user, role: s.role, session_type: s.type,
      action: v.action, rule: v.rule, enforced: v.enforced, mode: v.mode, reason: v.reason,
      first_ts: r.firstTs, last_ts: r.lastTs, first_event_id: r.firstEventId, last_event_id: r.lastEventId,
      last_name: r.lastName, last_qtype: qtypeName(r.lastQtype), ts: r.lastTs,
    };
    d.log.warn(line, `${verdictMessage(v)}: ${r.count} more like this`);
  }

  function flush(all = false): void {
    const nowMs = d.nowMs();
    const windowMs = d.repeatWindowMs();
    for (const [session, kinds] of repeats) {
      for (const [key, r] of kinds) {
        if (!all && nowMs >= r.windowStartMs && nowMs - r.windowStartMs < windowMs) continue;
        logRepeats(r);
        kinds.delete(key);
      }
      if (kinds.size === 0) repeats.delete(session);
    }
  }

  return { record, flush };
}

function verdictMessage(v: Verdict): string {
  return v.enforced ? `query ${v.action}` : `query would ${v.action} (observe)`;
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

/**
 * The line for blocks counted within a window after the first one (logged in full as a VerdictLogLine): how many,
 * when, the event-id range (ids count up within a process), the last name asked, and the last verdict's fields.
 */
export interface VerdictRepeatLogLine {
  readonly event: 'verdict_repeat';
  readonly count: number;
  readonly session: string;
  readonly user: string;
  readonly role: string;
  readonly session_type: string;
  readonly action: string;
  readonly rule: string;
  readonly enforced: boolean;
  readonly mode: string;
  readonly reason: string;
  readonly first_ts: number;
  readonly last_ts: number;
  readonly first_event_id: string | undefined;
  readonly last_event_id: string | undefined;
  readonly last_name: string;
  readonly last_qtype: string;
  readonly ts: number;
}

export function signalValues(score: NonNullable<Verdict['score']>): Record<string, number> {
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
