// src/policy/replay.ts — `dnswarden replay`: score a logged JSONL query stream offline with the same Policy code as the
// server and report what would have been blocked or quarantined, per verdict, per signal and, for labelled
// input, detection and false-positive figures. No sockets, no clock: times come from the lines. The only I/O
// is replayFile() reading its file.
import { readFile } from 'node:fs/promises';
import { deflateRawSync } from 'node:zlib';
import { z } from 'zod';
import { SIGNAL_IDS, splitName, platformSet, type SignalId } from '../../scoring/index.js';
import { WardenError } from '../errors.js';
import { Policy, type PolicyConfig, type ScoringConfig, type SessionInfo, type SessionState, type SessionType, type Verdict } from './judge.js';

// Query types by name, for dnswarden's own verdict log lines (`qtype: "TXT"`).
const QTYPE_BY_NAME: Readonly<Record<string, number>> = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, NULL: 10, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, NAPTR: 35, DS: 43, DNSKEY: 48, SVCB: 64, HTTPS: 65, CAA: 257, ANY: 255, PRIVATE: 65399,
};
const qtypeField = z.union([z.number(), z.string()]).transform((q, ctx) => {
  const upper = typeof q === 'string' ? q.toUpperCase() : '';
  const n = typeof q === 'number' ? q : (QTYPE_BY_NAME[upper] ?? (upper.startsWith('TYPE') ? Number(upper.slice(4)) : NaN));
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    ctx.addIssue({ code: 'custom', message: `unknown query type "${String(q)}"` });
    return z.NEVER;
  }
  return n;
});

// dnswarden's verdict log lines (pipeline.ts VerdictLogLine) name the query `name`; query logs say `qname`.
const normalise = (raw: unknown): unknown => {
  if (raw !== null && typeof raw === 'object' && !('qname' in raw) && 'name' in raw) {
    const { name, ...rest } = raw as Record<string, unknown>;
    return { ...rest, qname: name };
  }
  return raw;
};

const lineSchema = z.object({
  ts: z.number(),
  session: z.string().min(1),
  session_type: z.enum(['interactive', 'batch', 'scheduled']).optional(),
  qname: z.string().min(1),
  qtype: qtypeField,
  label: z.enum(['benign', 'exfil']).optional(),
  age_days: z.number().optional(),
  rcode: z.number().int().optional(),
  /** The query carries payload (tunnel handshakes and polls do not); used for the "first data query" figures. */
  data: z.boolean().optional(),
  /** Stream kind, for figures per kind. */
  kind: z.string().optional(),
  /** The verdict the server logged for this query (dnswarden's verdict log lines): replay reports what changes. */
  action: z.enum(['answer', 'nxdomain', 'quarantine']).optional(),
});
export type ReplayLine = z.output<typeof lineSchema>;

export interface ReplayOptions {
  /** A (name, qtype) forwarded within this long is a cache hit and does not leave again. Default 60 s. */
  readonly cacheTtlMs?: number;
}

export interface SessionResult {
  readonly session: string;
  readonly type: SessionType;
  readonly label: 'benign' | 'exfil' | undefined;
  readonly kind: string | undefined;
  readonly queries: number;
  /** Blocked by the per-query rule or the lists (before any quarantine). */
  readonly blocked: number;
  /** 1-based index of the first query blocked or quarantined; undefined = never. */
  readonly firstBlockAt: number | undefined;
  /** 1-based index among data-carrying queries of the first one that did not leave; undefined = all left. */
  readonly firstDataBlockAt: number | undefined;
  /** 1-based index of the quarantining query; undefined = never quarantined. */
  readonly quarantineAt: number | undefined;
  readonly quarantineRule: string | undefined;
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
}

export interface ReplayReport {
  readonly queries: number;
  readonly sessions: number;
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
  readonly blockedQueries: number;
  readonly uniqueNames: number;
  readonly uniqueNamesBlocked: number;
  readonly sessions: number;
  readonly sessionsWithBlock: number;
  readonly sessionsQuarantined: number;
}

/** Parse JSONL (blank lines skipped); a bad line throws naming its line number. */
export function parseJsonl(text: string): ReplayLine[] {
  const out: ReplayLine[] = [];
  const rows = text.split('\n');
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!.trim();
    if (row === '') continue;
    let raw: unknown;
    try {
      raw = JSON.parse(row);
    } catch (err) {
      throw new WardenError('ERR_BAD_REQUEST', `line ${i + 1}: not JSON`, { cause: err });
    }
    const parsed = lineSchema.safeParse(normalise(raw));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new WardenError('ERR_BAD_REQUEST', `line ${i + 1}: ${issue.path.join('.') || '(line)'}: ${issue.message}`);
    }
    out.push(parsed.data);
  }
  return out;
}

interface Tracker {
  readonly info: SessionInfo;
  readonly state: SessionState;
  label: 'benign' | 'exfil' | undefined;
  kind: string | undefined;
  queries: number;
  dataQueries: number;
  blocked: number;
  firstBlockAt: number | undefined;
  firstDataBlockAt: number | undefined;
  quarantineAt: number | undefined;
  quarantineRule: string | undefined;
  dataAtQuarantine: number | undefined;
  forwarded: number;
  bytes: number;
  forwardedBeforeBlock: number | undefined;
  bytesBeforeBlock: number | undefined;
  /** unique forwarded subdomains per registrable, and the domain's age as last seen */
  readonly sent: Map<string, { subs: Set<string>; ageDays: number | undefined }>;
  info1: Info | undefined;
  maxScore: number;
  maxFresh: number; maxRate: number; // highest freshVolumeBytes and rateBytes after a forwarded query
}

/** Deflated unique subdomains: the most to one domain, summed over young domains, and of all domains together. */
type Info = { readonly max: number; readonly young: number; readonly all: number };

function infoOf(t: Tracker): Info {
  let max = 0;
  let young = 0;
  const every: string[] = [];
  for (const d of t.sent.values()) {
    if (d.subs.size === 0) continue;
    const bytes = deflateRawSync([...d.subs].sort().join('\n')).length;
    if (bytes > max) max = bytes;
    if (d.ageDays !== undefined && d.ageDays < 30) young += bytes;
    for (const sub of d.subs) every.push(sub);
  }
  return { max, young, all: every.length === 0 ? 0 : deflateRawSync(every.sort().join('\n')).length };
}

function maxVolume(state: SessionState): number {
  let max = 0;
  for (const key in state.domains) max = Math.max(max, state.domains[key]!.volumeBytes);
  return max;
}

/** Replay `lines` (in time order per session) through `policy`, simulating enforcement whatever the mode says. */
export function replayLines(lines: readonly ReplayLine[], policy: Policy, options: ReplayOptions = {}): ReplayReport {
  const cacheTtlMs = options.cacheTtlMs ?? 60_000;
  const platforms = platformSet();
  const cache = new Map<string, number>();
  const sessions = new Map<string, Tracker>();
  const verdicts: Record<string, number> = {};
  const signals = Object.fromEntries(SIGNAL_IDS.map((id) => [id, { fired: 0, firedWhenBlocked: 0 }])) as Record<SignalId, { fired: number; firedWhenBlocked: number }>;
  const names = { benign: new Map<string, boolean>(), exfil: new Map<string, boolean>() };
  const change = {
    compared: 0, newlyBlocked: 0, newlyAllowed: 0,
    bySessionType: { interactive: { newlyBlocked: 0, newlyAllowed: 0 }, batch: { newlyBlocked: 0, newlyAllowed: 0 }, scheduled: { newlyBlocked: 0, newlyAllowed: 0 } },
    newlyBlockedBySignal: Object.fromEntries(SIGNAL_IDS.map((id) => [id, 0])) as Record<SignalId, number>,
  };
  const compare = (l: ReplayLine, type: SessionType, v: Verdict | undefined): void => {
    if (l.action === undefined) return;
    change.compared++;
    const wasBlocked = l.action !== 'answer';
    const isBlocked = v === undefined || v.action !== 'answer'; // undefined: the session is already quarantined
    if (isBlocked && !wasBlocked) {
      change.newlyBlocked++;
      change.bySessionType[type].newlyBlocked++;
      for (const s of v?.score?.signals ?? []) if (s.value * s.weight >= 0.05) change.newlyBlockedBySignal[s.id]++;
    } else if (!isBlocked && wasBlocked) {
      change.newlyAllowed++;
      change.bySessionType[type].newlyAllowed++;
    }
  };
  const count = (v: Verdict): void => {
    const key = `${v.action}/${v.rule}`;
    verdicts[key] = (verdicts[key] ?? 0) + 1;
  };

  for (const l of lines) {
    let t = sessions.get(l.session);
    if (t === undefined) {
      const info: SessionInfo = { id: l.session, user: 'replay', role: 'replay', type: l.session_type ?? 'interactive' };
      t = {
        info, state: policy.newSessionState(), label: l.label, kind: l.kind, queries: 0, dataQueries: 0, blocked: 0,
        firstBlockAt: undefined, firstDataBlockAt: undefined, quarantineAt: undefined, quarantineRule: undefined, dataAtQuarantine: undefined,
        forwarded: 0, bytes: 0, forwardedBeforeBlock: undefined, bytesBeforeBlock: undefined, sent: new Map(), info1: undefined, maxScore: 0, maxFresh: 0, maxRate: 0,
      };
      sessions.set(l.session, t);
    }
    const name = l.qname.toLowerCase().replace(/\.$/, '');
    t.queries++;
    if (l.data === true) t.dataQueries++;
    const labelNames = l.label === undefined ? undefined : names[l.label];
    const noteBlocked = (): void => {
      t.firstBlockAt ??= t.queries;
      if (l.data === true) t.firstDataBlockAt ??= t.dataQueries;
      t.forwardedBeforeBlock ??= t.forwarded;
      t.bytesBeforeBlock ??= t.bytes;
    };
    if (t.quarantineAt !== undefined) {
      verdicts['nxdomain/quarantined'] = (verdicts['nxdomain/quarantined'] ?? 0) + 1;
      noteBlocked();
      compare(l, t.info.type, undefined);
      continue;
    }
    const v = policy.judge({ name, qtype: l.qtype, session: t.info, state: t.state, ageDays: l.age_days, atMs: l.ts });
    count(v);
    compare(l, t.info.type, v);
    const blocked = v.action !== 'answer';
    if (labelNames !== undefined) labelNames.set(name, (labelNames.get(name) ?? false) || v.action === 'nxdomain');
    if (v.score !== undefined) {
      if (v.score.total > t.maxScore) t.maxScore = v.score.total;
      for (const s of v.score.signals) {
        if (s.value * s.weight < 0.05) continue;
        signals[s.id].fired++;
        if (blocked) signals[s.id].firedWhenBlocked++;
      }
    }
    if (blocked) {
      t.blocked++;
      noteBlocked();
      if (v.action === 'quarantine') {
        t.quarantineAt = t.queries;
        t.quarantineRule = v.rule;
        t.dataAtQuarantine = t.dataQueries;
        t.info1 = infoOf(t);
      }
      policy.observe(t.state, { name, qtype: l.qtype, atMs: l.ts, forwarded: false, rcode: 3, blocked: true });
      continue;
    }
    const key = `${l.qtype}/${name}`;
    const last = cache.get(key);
    const forwarded = last === undefined || l.ts - last >= cacheTtlMs;
    if (forwarded) {
      cache.set(key, l.ts);
      t.forwarded++;
      t.bytes += name.length;
      const split = splitName(name, platforms);
      let d = t.sent.get(split.registrable);
      if (d === undefined) t.sent.set(split.registrable, (d = { subs: new Set(), ageDays: l.age_days }));
      d.ageDays = l.age_days;
      if (split.subdomain !== '') d.subs.add(split.subdomain);
    }
    policy.observe(t.state, { name, qtype: l.qtype, atMs: l.ts, forwarded, rcode: l.rcode ?? 0, blocked: false, facts: v.facts });
    if (t.state.freshVolumeBytes > t.maxFresh) t.maxFresh = t.state.freshVolumeBytes;
    if (t.state.rateBytes > t.maxRate) t.maxRate = t.state.rateBytes;
  }

  const perSession: SessionResult[] = [];
  const fig = (label: 'benign' | 'exfil'): LabelFigures => {
    let q = 0, bq = 0, s = 0, sb = 0, sq = 0;
    for (const t of sessions.values()) {
      if (t.label !== label) continue;
      s++;
      q += t.queries;
      bq += t.blocked;
      if (t.firstBlockAt !== undefined) sb++;
      if (t.quarantineAt !== undefined) sq++;
    }
    let ub = 0;
    for (const b of names[label].values()) if (b) ub++;
    return { queries: q, blockedQueries: bq, uniqueNames: names[label].size, uniqueNamesBlocked: ub, sessions: s, sessionsWithBlock: sb, sessionsQuarantined: sq };
  };
  for (const t of sessions.values()) {
    const info = t.info1 ?? infoOf(t);
    perSession.push({
      session: t.info.id, type: t.info.type, label: t.label, kind: t.kind, queries: t.queries, blocked: t.blocked,
      firstBlockAt: t.firstBlockAt, firstDataBlockAt: t.firstDataBlockAt, quarantineAt: t.quarantineAt, quarantineRule: t.quarantineRule, dataQueriesAtQuarantine: t.dataAtQuarantine,
      forwardedBeforeBlock: t.forwardedBeforeBlock ?? t.forwarded, bytesBeforeBlock: t.bytesBeforeBlock ?? t.bytes,
      forwardedBeforeQuarantine: t.forwarded, bytesBeforeQuarantine: t.bytes,
      maxDomainInfoBytes: info.max, youngInfoBytes: info.young,
      maxScore: t.maxScore, maxVolumeEstimate: maxVolume(t.state), maxSessionVolumeEstimate: t.maxFresh, sessionInfoBytes: info.all, maxBytesPerMinute: t.maxRate,
    });
  }
  return {
    queries: lines.length, sessions: sessions.size,
    modes: { interactive: policy.mode('interactive'), batch: policy.mode('batch'), scheduled: policy.mode('scheduled') },
    verdicts, signals, benign: fig('benign'), exfil: fig('exfil'), perSession,
    changes: change.compared > 0 ? change : undefined, sweep: [],
  };
}

/** The thresholds the sweep tries, for every session type at once. */
export const SWEEP_THRESHOLDS: readonly number[] = [0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0, 1.2];

/** Replays `lines` once per threshold with every session type's block_at set to it. */
export function sweepThresholds(lines: readonly ReplayLine[], config: { readonly policy: PolicyConfig; readonly scoring: ScoringConfig }, options: ReplayOptions = {}): SweepRow[] {
  return SWEEP_THRESHOLDS.map((blockAt) => {
    const types = config.policy.session_types;
    const policy = new Policy({
      ...config.policy,
      session_types: { interactive: { ...types.interactive, block_at: blockAt }, batch: { ...types.batch, block_at: blockAt }, scheduled: { ...types.scheduled, block_at: blockAt } },
    }, config.scoring);
    const r = replayLines(lines, policy, options);
    let blocked = 0;
    let quarantined = 0;
    for (const s of r.perSession) {
      blocked += s.blocked;
      if (s.quarantineAt !== undefined) quarantined++;
    }
    return { blockAt, blockedQueries: blocked + (r.verdicts['nxdomain/quarantined'] ?? 0), quarantinedSessions: quarantined };
  });
}

/** The entry point for `dnswarden replay FILE [--config X]`: the cli passes the validated config sections. */
export async function replayFile(path: string, config: { readonly policy: PolicyConfig; readonly scoring: ScoringConfig }, options: ReplayOptions = {}): Promise<ReplayReport> {
  const text = await readFile(path, 'utf8');
  const lines = parseJsonl(text);
  const report = replayLines(lines, new Policy(config.policy, config.scoring), options);
  return { ...report, sweep: sweepThresholds(lines, config, options) };
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

/** The report as terminal text. */
export function formatReport(r: ReplayReport): string {
  const out: string[] = [];
  out.push(`${r.queries} queries, ${r.sessions} sessions; modes: interactive ${r.modes.interactive}, batch ${r.modes.batch}, scheduled ${r.modes.scheduled} (replay simulates enforcement)`);
  out.push('', 'verdicts (action/rule):');
  for (const [k, n] of Object.entries(r.verdicts).sort(([, a], [, b]) => b - a)) out.push(`  ${k.padEnd(24)} ${n}`);
  out.push('', 'signals (queries where weight×value ≥ 0.05 / of those blocked):');
  for (const id of SIGNAL_IDS) out.push(`  ${id.padEnd(14)} ${String(r.signals[id].fired).padStart(8)} ${String(r.signals[id].firedWhenBlocked).padStart(8)}`);
  for (const label of ['benign', 'exfil'] as const) {
    const f = r[label];
    if (f.sessions === 0) continue;
    out.push('', `${label}: ${f.sessions} sessions, ${f.queries} queries`);
    out.push(`  queries blocked           ${f.blockedQueries} (${pct(f.blockedQueries, f.queries)})`);
    out.push(`  unique names blocked      ${f.uniqueNamesBlocked} of ${f.uniqueNames} (${pct(f.uniqueNamesBlocked, f.uniqueNames)})`);
    out.push(`  sessions with any block   ${f.sessionsWithBlock} (${pct(f.sessionsWithBlock, f.sessions)})`);
    out.push(`  sessions quarantined      ${f.sessionsQuarantined} (${pct(f.sessionsQuarantined, f.sessions)})`);
  }
  if (r.changes !== undefined) {
    const c = r.changes;
    out.push('', `against the logged verdicts (${c.compared} lines): newly blocked ${c.newlyBlocked}, newly allowed ${c.newlyAllowed}`);
    for (const type of ['interactive', 'batch', 'scheduled'] as const) {
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
    out.push('', 'exfil per kind (worst stream): streams quarantined | forwarded queries,bytes before block | before quarantine | deflate info at quarantine');
    for (const k of kinds) {
      out.push(`  ${k.kind.padEnd(30)} ${k.quarantined}/${k.streams} | ${k.maxQueriesBeforeBlock},${k.maxBytesBeforeBlock} B | ${k.maxQueriesBeforeQuarantine},${k.maxBytesBeforeQuarantine} B | ${k.maxInfoAtQuarantine} B`);
    }
  }
  return `${out.join('\n')}\n`;
}
