// src/policy/replay-report.ts — what `dnswarden replay` reports: the figures per verdict, signal, label, session and
// stream kind, the changes against the logged verdicts, the threshold sweep, and the report as terminal text.
// Never judges or reads anything: the driver (src/replay/) fills these in from the pipeline's outcomes.
import { SIGNAL_IDS, type SignalId } from '../../scoring/index.js';
import { SESSION_TYPES } from './schema.js';
import type { SessionType } from './judge.js';


export interface SessionResult {
  readonly session: string;
  readonly type: SessionType;
  readonly label: 'benign' | 'exfil' | undefined;
  readonly kind: string | undefined;
  readonly queries: number;
  /** Blocked by the per-query rule or the lists (before any quarantine). */
  readonly blocked: number;
  /** Refused because the session was already quarantined (`nxdomain/quarantined`). */
  readonly blockedWhileQuarantined: number;
  /** 1-based index of the first query blocked or quarantined; undefined = never. */
  readonly firstBlockAt: number | undefined;
  /** 1-based index among data-carrying queries of the first one that did not leave; undefined = all left. */
  readonly firstDataBlockAt: number | undefined;
  /** 1-based index of the quarantining query; undefined = never quarantined. */
  readonly quarantineAt: number | undefined;
  readonly quarantineRule: string | undefined;
  /** The quarantining verdict's reason (which budget, how many bytes). */
  readonly quarantineReason: string | undefined;
  /** Data-carrying queries judged up to and including the quarantining one; undefined = never quarantined. */
  readonly dataQueriesAtQuarantine: number | undefined;
  /** Queries forwarded before the first block / before the quarantine (or in all, if none). */
  readonly forwardedBeforeBlock: number;
  readonly forwardedBeforeQuarantine: number;
  /** Name bytes forwarded before the first block / quarantine. */
  readonly bytesBeforeBlock: number;
  readonly bytesBeforeQuarantine: number;
  /** deflate of the unique forwarded subdomains (sorted, '\n'-joined) of the busiest domain, when quarantined (or at the end). */
  readonly maxDomainInfoBytes: number;
  /** Σ of that over domains younger than 30 days. */
  readonly youngInfoBytes: number;
  /** Highest score total of any judged query, and the highest estimated volume to one domain (the policy's view). */
  readonly maxScore: number;
  readonly maxVolumeEstimate: number;
  /** Highest estimated volume to the domains not established for the session (the session-wide budget's account). */
  readonly maxSessionVolumeEstimate: number;
  /** Deflate of every unique subdomain forwarded to any domain, at the quarantine (or the end): the payload that left. */
  readonly sessionInfoBytes: number;
  /** Highest novel label bytes a minute (the bandwidth cap's account). */
  readonly maxBytesPerMinute: number;
  /** Highest estimated bytes of encoded-looking labels (the encoded-label budget's account). */
  readonly maxEncodedEstimate: number;
  /** Highest estimated bytes in the choice of known names and domains asked again (the repeat budget's account). */
  readonly maxRepeatEstimate: number;
  /** Σ `payload` of the lines forwarded before the quarantine (or in all) / before the first block. */
  readonly payloadBeforeQuarantine: number;
  readonly payloadBeforeBlock: number;
}

export interface ReplayReport {
  readonly queries: number;
  readonly sessions: number;
  /** Lines that were neither a query nor a verdict (npm's banner, lifecycle log lines, a cut last line). */
  readonly skippedLines: number;
  readonly firstSkippedLine: number | undefined;
  /** Verdict lines from older releases whose query type was logged as "other": not replayed. */
  readonly skippedUnknownType: number;
  /** Every query that did not get an answer: byRule + whileQuarantined = the non-answer verdicts. */
  readonly blocked: { readonly queries: number; readonly byRule: number; readonly whileQuarantined: number };
  readonly modes: Readonly<Record<SessionType, 'enforce' | 'observe'>>;
  /** Verdict counts keyed `action/rule` (queries after a quarantine count as `nxdomain/quarantined`). */
  readonly verdicts: Readonly<Record<string, number>>;
  /** Per signal: queries where it contributed ≥ 0.05, and among blocked queries. */
  readonly signals: Readonly<Record<SignalId, { readonly fired: number; readonly firedWhenBlocked: number }>>;
  readonly benign: LabelFigures;
  readonly exfil: LabelFigures;
  readonly perSession: readonly SessionResult[];
  /** Against the verdicts the log recorded (lines with `action`): what the candidate policy changes. */
  readonly changes: ChangeFigures | undefined;
  /** Blocks the verdict log recorded only as counts (`verdict_repeat` lines): not re-scored (replayFile fills it). */
  readonly repeatedBlocksNotReplayed?: number;
  /** Block threshold → blocked queries and quarantined sessions (replayFile fills it; [] otherwise). */
  readonly sweep: readonly SweepRow[];
}

export interface ChangeFigures {
  /** Lines that carried a logged verdict. */
  readonly compared: number;
  readonly newlyBlocked: number;
  readonly newlyAllowed: number;
  readonly bySessionType: Readonly<Record<SessionType, { readonly newlyBlocked: number; readonly newlyAllowed: number }>>;
  /** Per signal: newly blocked queries where it contributed ≥ 0.05. */
  readonly newlyBlockedBySignal: Readonly<Record<SignalId, number>>;
}

export interface SweepRow {
  readonly blockAt: number;
  readonly blockedQueries: number;
  readonly quarantinedSessions: number;
}

export interface LabelFigures {
  readonly queries: number;
  /** blockedByRule + blockedWhileQuarantined. */
  readonly blockedQueries: number;
  readonly blockedByRule: number;
  readonly blockedWhileQuarantined: number;
  readonly uniqueNames: number;
  readonly uniqueNamesBlocked: number;
  readonly sessions: number;
  readonly sessionsWithBlock: number;
  readonly sessionsQuarantined: number;
}

export interface KindFigures {
  readonly kind: string;
  readonly streams: number;
  readonly quarantined: number;
  /** Worst case over the kind's streams. */
  readonly maxQueriesBeforeBlock: number;
  readonly maxBytesBeforeBlock: number;
  readonly maxQueriesBeforeQuarantine: number;
  readonly maxBytesBeforeQuarantine: number;
  readonly maxInfoAtQuarantine: number;
}

/** Exfiltration figures per stream kind (worst case across the kind's streams). */
export function figuresByKind(report: ReplayReport): KindFigures[] {
  const by = new Map<string, SessionResult[]>();
  for (const s of report.perSession) {
    if (s.label !== 'exfil') continue;
    const k = s.kind ?? s.session;
    by.get(k)?.push(s) ?? by.set(k, [s]);
  }
  return [...by.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([kind, ss]) => ({
    kind,
    streams: ss.length,
    quarantined: ss.filter((s) => s.quarantineAt !== undefined).length,
    maxQueriesBeforeBlock: Math.max(...ss.map((s) => s.forwardedBeforeBlock)),
    maxBytesBeforeBlock: Math.max(...ss.map((s) => s.bytesBeforeBlock)),
    maxQueriesBeforeQuarantine: Math.max(...ss.map((s) => s.forwardedBeforeQuarantine)),
    maxBytesBeforeQuarantine: Math.max(...ss.map((s) => s.bytesBeforeQuarantine)),
    maxInfoAtQuarantine: Math.max(...ss.map((s) => s.maxDomainInfoBytes)),
  }));
}

const pct = (n: number, d: number): string => (d === 0 ? '-' : `${((100 * n) / d).toFixed(n === 0 ? 0 : 3)}%`);

/**
 * The highest value each information budget's account reached in any one session (estimated bytes), so a budget
 * can be set from an operator's own traffic: the budgets are in policy.session_types.<type>.
 */
function accountPeaks(sessions: readonly SessionResult[]): string {
  const peak = (f: (s: SessionResult) => number): number => Math.round(sessions.reduce((m, s) => Math.max(m, f(s)), 0));
  return `one domain ${peak((s) => s.maxVolumeEstimate)} B, not established ${peak((s) => s.maxSessionVolumeEstimate)} B, a minute ${peak((s) => s.maxBytesPerMinute)} B, `
    + `encoded-looking ${peak((s) => s.maxEncodedEstimate)} B, repeats ${peak((s) => s.maxRepeatEstimate)} B`;
}

/** The report as terminal text. */
export function formatReport(r: ReplayReport): string {
  const out: string[] = [];
  out.push(`${r.queries} queries, ${r.sessions} sessions; modes: interactive ${r.modes.interactive}, batch ${r.modes.batch}, scheduled ${r.modes.scheduled} (replay simulates enforcement)`);
  if ((r.repeatedBlocksNotReplayed ?? 0) > 0) out.push(`${r.repeatedBlocksNotReplayed} more blocks were logged only as counts (verdict_repeat lines: repeats of a logged block, names not kept) and are not re-scored`);
  out.push(`blocked ${r.blocked.queries} queries: ${r.blocked.byRule} by a rule or list, ${r.blocked.whileQuarantined} while the session was quarantined`);
  if (r.skippedLines > 0) out.push(`skipped ${r.skippedLines} lines that are neither queries nor verdicts (the first: line ${r.firstSkippedLine})`);
  if (r.skippedUnknownType > 0) out.push(`skipped ${r.skippedUnknownType} verdicts whose query type an older dnswarden logged as "other" (cannot be re-scored)`);
  out.push('', 'verdicts (action/rule):');
  for (const [k, n] of Object.entries(r.verdicts).sort(([, a], [, b]) => b - a)) out.push(`  ${k.padEnd(24)} ${n}`);
  out.push('', 'signals (queries where weight×value ≥ 0.05 / of those blocked):');
  for (const id of SIGNAL_IDS) out.push(`  ${id.padEnd(14)} ${String(r.signals[id].fired).padStart(8)} ${String(r.signals[id].firedWhenBlocked).padStart(8)}`);
  for (const label of ['benign', 'exfil'] as const) {
    const f = r[label];
    if (f.sessions === 0) continue;
    out.push('', `${label}: ${f.sessions} sessions, ${f.queries} queries`);
    out.push(`  queries blocked           ${f.blockedQueries} (${pct(f.blockedQueries, f.queries)}): ${f.blockedByRule} by a rule or list, ${f.blockedWhileQuarantined} while quarantined`);
    out.push(`  unique names blocked      ${f.uniqueNamesBlocked} of ${f.uniqueNames} (${pct(f.uniqueNamesBlocked, f.uniqueNames)})`);
    out.push(`  sessions with any block   ${f.sessionsWithBlock} (${pct(f.sessionsWithBlock, f.sessions)})`);
    out.push(`  sessions quarantined      ${f.sessionsQuarantined} (${pct(f.sessionsQuarantined, f.sessions)})`);
    out.push(`  highest budget accounts   ${accountPeaks(r.perSession.filter((s) => s.label === label))}`);
  }
  if (r.changes !== undefined) {
    const c = r.changes;
    out.push('', `against the logged verdicts (${c.compared} lines): newly blocked ${c.newlyBlocked}, newly allowed ${c.newlyAllowed}`);
    for (const type of SESSION_TYPES) {
      const t = c.bySessionType[type];
      if (t.newlyBlocked + t.newlyAllowed > 0) out.push(`  ${type.padEnd(12)} newly blocked ${t.newlyBlocked}, newly allowed ${t.newlyAllowed}`);
    }
    const bySignal = SIGNAL_IDS.filter((id) => c.newlyBlockedBySignal[id] > 0);
    if (bySignal.length > 0) out.push(`  newly blocked, by signal: ${bySignal.map((id) => `${id} ${c.newlyBlockedBySignal[id]}`).join(', ')}`);
  }
  if (r.sweep.length > 0) {
    out.push('', 'threshold sweep (block_at for every session type; the rest of the policy as configured):', '  block_at  blocked queries  quarantined sessions');
    for (const row of r.sweep) out.push(`  ${row.blockAt.toFixed(2).padStart(8)}  ${String(row.blockedQueries).padStart(15)}  ${String(row.quarantinedSessions).padStart(20)}`);
  }
  const kinds = figuresByKind(r);
  if (kinds.length > 0) {
    out.push('', 'exfil per kind (worst stream): streams quarantined | forwarded before block | forwarded before quarantine | deflate info at quarantine');
    for (const k of kinds) {
      out.push(`  ${k.kind.padEnd(30)} ${k.quarantined}/${k.streams} | ${k.maxQueriesBeforeBlock} queries ${k.maxBytesBeforeBlock} B | ${k.maxQueriesBeforeQuarantine} queries ${k.maxBytesBeforeQuarantine} B | ${k.maxInfoAtQuarantine} B`);
    }
  }
  return `${out.join('\n')}\n`;
}
