// src/policy/replay.ts — `dnswarden replay`: score a logged JSONL query stream offline with the same Policy code as the
// server and report what would have been blocked or quarantined, per verdict, per signal and, for labelled
// input, detection and false-positive figures. No sockets, no clock: times come from the lines. The only I/O
// is replayFile() reading its file (or stdin) line by line: memory never grows with the file's length.
// Why it is long: one offline tool — the replayer, the threshold sweep, the streaming reader and the report.
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { deflateRawSync } from 'node:zlib';
import { z } from 'zod';
import { SIGNAL_IDS, splitName, platformSet, type SignalId } from '../../scoring/index.js';
import { WardenError } from '../errors.js';
import { qtypeOf } from '../ops/qtypes.js';
import { loadRpzSet } from '../zones/zone-set.js';
import type { RpzSet } from '../zones/rpz.js';
import { SESSION_TYPES } from './schema.js';
import { Policy, type PolicyConfig, type ScoringConfig, type SessionInfo, type SessionState, type SessionType, type Verdict } from './judge.js';

// Query types by name (`qtype: "TXT"`, `TYPE65399`) through the one table (src/ops/qtypes.ts); `PRIVATE` is the
// corpus generator's name for 65399 (fixtures/corpora/generate.mjs), read here only.
const INPUT_ALIASES: Readonly<Record<string, number>> = { PRIVATE: 65399 };
const qtypeField = z.union([z.number(), z.string()]).transform((q, ctx) => {
  const upper = typeof q === 'string' ? q.toUpperCase() : '';
  const n = typeof q === 'number' ? q : (INPUT_ALIASES[upper] ?? qtypeOf(upper) ?? (upper.startsWith('TYPE') ? Number(upper.slice(4)) : NaN));
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    ctx.addIssue({ code: 'custom', message: `unknown query type "${String(q)}"` });
    return z.NEVER;
  }
  return n;
});

// dnswarden's verdict log lines (src/outcome/verdict-log.ts VerdictLogLine) name the query `name`; query logs say `qname`.
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
  session_type: z.enum(SESSION_TYPES).optional(),
  qname: z.string().min(1),
  qtype: qtypeField,
  label: z.enum(['benign', 'exfil']).optional(),
  age_days: z.number().optional(),
  rcode: z.number().int().optional(),
  /** The query carries payload (tunnel handshakes and polls do not); used for the "first data query" figures. */
  data: z.boolean().optional(),
  /** Stream kind, for figures per kind. */
  kind: z.string().optional(),
  /** Secret bytes the query carries (generated exfiltration streams): what left is counted in these. */
  payload: z.number().int().min(0).optional(),
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

/** Parse JSONL text strictly (blank lines skipped); any other bad line throws naming its line number. `replayFile` streams instead, with readLine. */
export function parseJsonl(text: string): ReplayLine[] {
  return parseJsonlCounted(text).lines;
}

/**
 * parseJsonl, and how many blocks dnswarden's verdict log recorded only as a count (`verdict_repeat` lines,
 * src/outcome/verdict-log.ts): their names were not logged, so they cannot be re-scored; the report says how many there were.
 */
export function parseJsonlCounted(text: string): { lines: ReplayLine[]; repeatedBlocks: number } {
  const out: ReplayLine[] = [];
  let repeatedBlocks = 0;
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
    if (isRepeatLine(raw)) {
      repeatedBlocks += raw.count;
      continue;
    }
    const parsed = lineSchema.safeParse(normalise(raw));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new WardenError('ERR_BAD_REQUEST', `line ${i + 1}: ${issue.path.join('.') || '(line)'}: ${issue.message}`);
    }
    out.push(parsed.data);
  }
  return { lines: out, repeatedBlocks };
}

function isRepeatLine(raw: unknown): raw is { event: 'verdict_repeat'; count: number } {
  if (raw === null || typeof raw !== 'object' || (raw as { event?: unknown }).event !== 'verdict_repeat') return false;
  const count = (raw as { count?: unknown }).count;
  return typeof count === 'number' && Number.isInteger(count) && count >= 0;
}

interface Tracker {
  readonly info: SessionInfo;
  readonly state: SessionState;
  label: 'benign' | 'exfil' | undefined;
  kind: string | undefined;
  queries: number;
  dataQueries: number;
  blocked: number;
  blockedWhileQuarantined: number;
  firstBlockAt: number | undefined;
  firstDataBlockAt: number | undefined;
  quarantineAt: number | undefined;
  quarantineRule: string | undefined;
  quarantineReason: string | undefined;
  dataAtQuarantine: number | undefined;
  forwarded: number;
  bytes: number;
  forwardedBeforeBlock: number | undefined;
  bytesBeforeBlock: number | undefined;
  /** unique forwarded subdomains per registrable, and the domain's age as last seen */
  readonly sent: Map<string, { subs: Set<string>; ageDays: number | undefined }>;
  sentChars: number;
  info1: Info | undefined;
  maxScore: number;
  maxFresh: number; maxRate: number; maxEncoded: number; payload: number; payloadBeforeBlock: number | undefined; // highest freshVolumeBytes, rateBytes and encodedBytes after a forwarded query
}

/** Forwarded subdomain characters a session keeps for the information figures (a floor beyond it). */
const MAX_SENT_CHARS = 4 * 1024 * 1024;

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

/**
 * Replays lines one at a time (in time order per session) through `policy`, simulating enforcement whatever
 * the mode says; `report()` at any point. Memory grows with sessions and unique names, never with lines:
 * cache entries expire by the lines' own times and each session keeps at most MAX_SENT_CHARS of forwarded
 * subdomains for the information figures (beyond that they are a floor).
 */
export class Replayer {
  private readonly cacheTtlMs: number;
  private readonly platforms = platformSet();
  /** `qtype/name` → ts last forwarded, in that order (re-set entries move to the end), so expiry is from the front. */
  private readonly cache = new Map<string, number>();
  private latestTs = -Infinity;
  private readonly sessions = new Map<string, Tracker>();
  private readonly verdicts: Record<string, number> = {};
  private readonly signals = Object.fromEntries(SIGNAL_IDS.map((id) => [id, { fired: 0, firedWhenBlocked: 0 }])) as Record<SignalId, { fired: number; firedWhenBlocked: number }>;
  private readonly names = { benign: new Map<string, boolean>(), exfil: new Map<string, boolean>() };
  private readonly change = {
    compared: 0, newlyBlocked: 0, newlyAllowed: 0,
    bySessionType: { interactive: { newlyBlocked: 0, newlyAllowed: 0 }, batch: { newlyBlocked: 0, newlyAllowed: 0 }, scheduled: { newlyBlocked: 0, newlyAllowed: 0 } },
    newlyBlockedBySignal: Object.fromEntries(SIGNAL_IDS.map((id) => [id, 0])) as Record<SignalId, number>,
  };
  private queries = 0;

  /** false: verdict and block counts only (the sweep's replayers), no per-name or information figures. */
  private readonly detail: boolean;

  constructor(private readonly policy: Policy, options: ReplayOptions & { readonly detail?: boolean } = {}) {
    this.cacheTtlMs = options.cacheTtlMs ?? 60_000;
    this.detail = options.detail ?? true;
  }

  private compare(l: ReplayLine, type: SessionType, v: Verdict | undefined): void {
    if (l.action === undefined) return;
    const change = this.change;
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
  }

  /** Drops cache entries older than the TTL as of the latest line's time: the cache stays as small as the server's. */
  private expireCache(): void {
    const cutoff = this.latestTs - this.cacheTtlMs;
    for (const [key, ts] of this.cache) {
      if (ts > cutoff) break;
      this.cache.delete(key);
    }
  }

  push(l: ReplayLine): void {
    const policy = this.policy;
    this.queries++;
    if (l.ts > this.latestTs) this.latestTs = l.ts;
    let t = this.sessions.get(l.session);
    if (t === undefined) {
      const info: SessionInfo = { id: l.session, user: 'replay', role: 'replay', type: l.session_type ?? 'interactive' };
      t = {
        info, state: policy.newSessionState(), label: l.label, kind: l.kind, queries: 0, dataQueries: 0, blocked: 0, blockedWhileQuarantined: 0,
        firstBlockAt: undefined, firstDataBlockAt: undefined, quarantineAt: undefined, quarantineRule: undefined, quarantineReason: undefined, dataAtQuarantine: undefined,
        forwarded: 0, bytes: 0, forwardedBeforeBlock: undefined, bytesBeforeBlock: undefined, sent: new Map(), sentChars: 0, info1: undefined, maxScore: 0, maxFresh: 0, maxRate: 0, maxEncoded: 0, payload: 0, payloadBeforeBlock: undefined,
      };
      this.sessions.set(l.session, t);
    }
    const tr = t;
    const name = l.qname.toLowerCase().replace(/\.$/, '');
    tr.queries++;
    if (l.data === true) tr.dataQueries++;
    const labelNames = l.label === undefined || !this.detail ? undefined : this.names[l.label];
    const noteBlocked = (): void => {
      tr.firstBlockAt ??= tr.queries;
      if (l.data === true) tr.firstDataBlockAt ??= tr.dataQueries;
      tr.forwardedBeforeBlock ??= tr.forwarded;
      tr.bytesBeforeBlock ??= tr.bytes;
      tr.payloadBeforeBlock ??= tr.payload;
    };
    if (tr.quarantineAt !== undefined) {
      this.verdicts['nxdomain/quarantined'] = (this.verdicts['nxdomain/quarantined'] ?? 0) + 1;
      tr.blockedWhileQuarantined++;
      noteBlocked();
      this.compare(l, tr.info.type, undefined);
      return;
    }
    const v = policy.judge({ name, qtype: l.qtype, session: tr.info, state: tr.state, ageDays: l.age_days, atMs: l.ts });
    const vkey = `${v.action}/${v.rule}`;
    this.verdicts[vkey] = (this.verdicts[vkey] ?? 0) + 1;
    this.compare(l, tr.info.type, v);
    const blocked = v.action !== 'answer';
    if (labelNames !== undefined) labelNames.set(name, (labelNames.get(name) ?? false) || v.action === 'nxdomain');
    if (v.score !== undefined) {
      if (v.score.total > tr.maxScore) tr.maxScore = v.score.total;
      for (const s of v.score.signals) {
        if (s.value * s.weight < 0.05) continue;
        this.signals[s.id].fired++;
        if (blocked) this.signals[s.id].firedWhenBlocked++;
      }
    }
    if (blocked) {
      tr.blocked++;
      noteBlocked();
      if (v.action === 'quarantine') {
        tr.quarantineAt = tr.queries;
        tr.quarantineRule = v.rule;
        tr.quarantineReason = v.reason;
        tr.dataAtQuarantine = tr.dataQueries;
        if (this.detail) tr.info1 = infoOf(tr);
      }
      policy.account(tr.state, { kind: 'query', name, qtype: l.qtype, atMs: l.ts, ageDays: l.age_days, verdict: v, sent: false });
      return;
    }
    const key = `${l.qtype}/${name}`;
    const last = this.cache.get(key);
    const forwarded = last === undefined || l.ts - last >= this.cacheTtlMs;
    if (forwarded) {
      this.cache.delete(key);
      this.cache.set(key, l.ts);
      if (this.cache.size % 4096 === 0) this.expireCache();
      tr.forwarded++;
      tr.bytes += name.length;
      tr.payload += l.payload ?? 0;
      if (this.detail) this.noteSent(tr, name, l.age_days);
    }
    policy.account(tr.state, { kind: 'query', name, qtype: l.qtype, atMs: l.ts, ageDays: l.age_days, verdict: v, sent: forwarded });
    if (forwarded) policy.account(tr.state, { kind: 'answer', atMs: l.ts, rcode: l.rcode ?? 0 });
    if (tr.state.freshVolumeBytes > tr.maxFresh) tr.maxFresh = tr.state.freshVolumeBytes;
    if (tr.state.rateBytes > tr.maxRate) tr.maxRate = tr.state.rateBytes;
    if (tr.state.encodedBytes > tr.maxEncoded) tr.maxEncoded = tr.state.encodedBytes;
  }

  /** Keeps the forwarded subdomain per registrable for the information figures, within MAX_SENT_CHARS. */
  private noteSent(tr: Tracker, name: string, ageDays: number | undefined): void {
    const split = splitName(name, this.platforms);
    let d = tr.sent.get(split.registrable);
    if (d === undefined) {
      if (tr.sentChars >= MAX_SENT_CHARS) return;
      tr.sent.set(split.registrable, (d = { subs: new Set(), ageDays }));
      tr.sentChars += split.registrable.length;
    }
    d.ageDays = ageDays;
    if (split.subdomain !== '' && tr.sentChars < MAX_SENT_CHARS && !d.subs.has(split.subdomain)) {
      d.subs.add(split.subdomain);
      tr.sentChars += split.subdomain.length;
    }
  }

  report(): ReplayReport {
    const perSession: SessionResult[] = [];
    const fig = (label: 'benign' | 'exfil'): LabelFigures => {
      let q = 0, br = 0, bq = 0, s = 0, sb = 0, sq = 0;
      for (const t of this.sessions.values()) {
        if (t.label !== label) continue;
        s++;
        q += t.queries;
        br += t.blocked;
        bq += t.blockedWhileQuarantined;
        if (t.firstBlockAt !== undefined) sb++;
        if (t.quarantineAt !== undefined) sq++;
      }
      let ub = 0;
      for (const b of this.names[label].values()) if (b) ub++;
      return { queries: q, blockedQueries: br + bq, blockedByRule: br, blockedWhileQuarantined: bq, uniqueNames: this.names[label].size, uniqueNamesBlocked: ub, sessions: s, sessionsWithBlock: sb, sessionsQuarantined: sq };
    };
    let byRule = 0;
    let whileQuarantined = 0;
    for (const t of this.sessions.values()) {
      byRule += t.blocked;
      whileQuarantined += t.blockedWhileQuarantined;
      const info = t.info1 ?? (this.detail ? infoOf(t) : { max: 0, young: 0, all: 0 });
      perSession.push({
        session: t.info.id, type: t.info.type, label: t.label, kind: t.kind, queries: t.queries, blocked: t.blocked, blockedWhileQuarantined: t.blockedWhileQuarantined,
        firstBlockAt: t.firstBlockAt, firstDataBlockAt: t.firstDataBlockAt, quarantineAt: t.quarantineAt, quarantineRule: t.quarantineRule, quarantineReason: t.quarantineReason, dataQueriesAtQuarantine: t.dataAtQuarantine,
        forwardedBeforeBlock: t.forwardedBeforeBlock ?? t.forwarded, bytesBeforeBlock: t.bytesBeforeBlock ?? t.bytes,
        forwardedBeforeQuarantine: t.forwarded, bytesBeforeQuarantine: t.bytes,
        maxDomainInfoBytes: info.max, youngInfoBytes: info.young,
        maxScore: t.maxScore, maxVolumeEstimate: maxVolume(t.state), maxSessionVolumeEstimate: t.maxFresh, sessionInfoBytes: info.all, maxBytesPerMinute: t.maxRate, maxEncodedEstimate: t.maxEncoded, payloadBeforeQuarantine: t.payload, payloadBeforeBlock: t.payloadBeforeBlock ?? t.payload,
      });
    }
    const policy = this.policy;
    return {
      queries: this.queries, sessions: this.sessions.size, skippedLines: 0, firstSkippedLine: undefined, skippedUnknownType: 0,
      blocked: { queries: byRule + whileQuarantined, byRule, whileQuarantined },
      modes: { interactive: policy.mode('interactive'), batch: policy.mode('batch'), scheduled: policy.mode('scheduled') },
      verdicts: { ...this.verdicts }, signals: structuredClone(this.signals), benign: fig('benign'), exfil: fig('exfil'), perSession,
      changes: this.change.compared > 0 ? structuredClone(this.change) : undefined, sweep: [],
    };
  }
}

/** Replay `lines` (in time order per session) through `policy`, simulating enforcement whatever the mode says. */
export function replayLines(lines: Iterable<ReplayLine>, policy: Policy, options: ReplayOptions = {}): ReplayReport {
  const r = new Replayer(policy, options);
  for (const l of lines) r.push(l);
  return r.report();
}

/** The thresholds the sweep tries, for every session type at once. */
export const SWEEP_THRESHOLDS: readonly number[] = [0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0, 1.2];

/** One Replayer per threshold with every session type's block_at set to it, fed the same lines in one pass. */
export class Sweep {
  private readonly replayers: readonly { blockAt: number; replayer: Replayer }[];

  constructor(config: { readonly policy: PolicyConfig; readonly scoring: ScoringConfig }, options: ReplayOptions = {}, rpz?: RpzSet) {
    const types = config.policy.session_types;
    this.replayers = SWEEP_THRESHOLDS.map((blockAt) => {
      const policy = new Policy({
        ...config.policy,
        session_types: { interactive: { ...types.interactive, block_at: blockAt }, batch: { ...types.batch, block_at: blockAt }, scheduled: { ...types.scheduled, block_at: blockAt } },
      }, config.scoring);
      if (rpz !== undefined) policy.setRpz(rpz);
      return { blockAt, replayer: new Replayer(policy, { ...options, detail: false }) };
    });
  }

  push(l: ReplayLine): void {
    for (const r of this.replayers) r.replayer.push(l);
  }

  rows(): SweepRow[] {
    return this.replayers.map(({ blockAt, replayer }) => {
      const r = replayer.report();
      return { blockAt, blockedQueries: r.blocked.queries, quarantinedSessions: r.perSession.filter((s) => s.quarantineAt !== undefined).length };
    });
  }
}

/** Replays `lines` once per threshold with every session type's block_at set to it. */
export function sweepThresholds(lines: Iterable<ReplayLine>, config: { readonly policy: PolicyConfig; readonly scoring: ScoringConfig }, options: ReplayOptions = {}): SweepRow[] {
  const sweep = new Sweep(config, options);
  for (const l of lines) sweep.push(l);
  return sweep.rows();
}

/** Lines read so far, for a progress line while a large file replays. */
export interface ReplayProgress {
  readonly lines: number;
  readonly queries: number;
  readonly skipped: number;
  readonly bytes: number;
  /** The file's size (undefined for stdin). */
  readonly totalBytes: number | undefined;
}

export interface StreamOptions extends ReplayOptions {
  /** Called about every `progressEveryMs` (default 2 s) while lines are read. */
  readonly onProgress?: (p: ReplayProgress) => void;
  readonly progressEveryMs?: number;
  /** The input's size, for the progress figures. */
  readonly totalBytes?: number;
}

/**
 * Reads one line of a query log or of dnswarden's own log: a query (or verdict) to replay, `undefined` for a
 * line that is neither (blank lines, npm's banner, lifecycle log lines: skipped and counted by the caller).
 * A line that is a query or verdict but does not validate throws naming its line number.
 */
export function readLine(row: string, lineNo: number): ReplayLine | 'blank' | 'unknown-qtype' | { readonly repeatedBlocks: number } | undefined {
  const text = row.trim();
  if (text === '') return 'blank';
  if (!text.startsWith('{')) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  // A verdict_repeat line stands for blocks logged only as a count (their names were not kept).
  if (isRepeatLine(raw)) return { repeatedBlocks: raw.count };
  const r = raw as Record<string, unknown>;
  // dnswarden's log: only `event: "verdict"` lines are queries; other events and plain log lines (`msg`, no event) are not.
  if (r.event !== undefined ? r.event !== 'verdict' : 'msg' in r) return undefined;
  // Releases before qtypeText logged every uncommon query type as "other": such a verdict cannot be re-scored.
  if (r.event === 'verdict' && r.qtype === 'other') return 'unknown-qtype';
  const parsed = lineSchema.safeParse(normalise(raw));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new WardenError('ERR_BAD_REQUEST', `line ${lineNo}: ${issue.path.join('.') || '(line)'}: ${issue.message}`);
  }
  return parsed.data;
}

/**
 * Replays a stream line by line, the candidate policy and every sweep threshold in one pass: memory does not
 * grow with the number of lines, so a log of any length replays.
 */
export async function replayStream(input: Readable, config: { readonly policy: PolicyConfig; readonly scoring: ScoringConfig }, options: StreamOptions = {}): Promise<ReplayReport> {
  // The policy zones the config names judge the replay as they judge live queries (a bad file: a ConfigError).
  const rpz = config.policy.rpz.length === 0 ? undefined : loadRpzSet(config.policy.rpz);
  const policy = new Policy(config.policy, config.scoring);
  if (rpz !== undefined) policy.setRpz(rpz);
  const main = new Replayer(policy, options);
  const sweep = new Sweep(config, options, rpz);
  const every = options.progressEveryMs ?? 2000;
  let nextProgress = Date.now() + every;
  let lineNo = 0;
  let queries = 0;
  let skipped = 0;
  let firstSkipped: number | undefined;
  let unknownType = 0;
  let repeatedBlocks = 0;
  const rl = createInterface({ input, crlfDelay: Infinity });
  for await (const row of rl) {
    lineNo++;
    // The clock is read once per 1,024 lines, whatever they are.
    if (options.onProgress !== undefined && (lineNo & 1023) === 0 && Date.now() >= nextProgress) {
      nextProgress = Date.now() + every;
      options.onProgress({ lines: lineNo, queries, skipped, bytes: (input as { bytesRead?: number }).bytesRead ?? 0, totalBytes: options.totalBytes });
    }
    const l = readLine(row, lineNo);
    if (l === 'blank') continue;
    if (l === 'unknown-qtype') {
      unknownType++;
      continue;
    }
    if (l !== undefined && 'repeatedBlocks' in l) {
      repeatedBlocks += l.repeatedBlocks;
      continue;
    }
    if (l === undefined) {
      skipped++;
      firstSkipped ??= lineNo;
      continue;
    }
    queries++;
    main.push(l);
    sweep.push(l);
  }
  return { ...main.report(), skippedLines: skipped, firstSkippedLine: firstSkipped, skippedUnknownType: unknownType, sweep: sweep.rows(), repeatedBlocksNotReplayed: repeatedBlocks };
}

/** The entry point for `dnswarden replay FILE|- [--config X]`: the cli passes the validated config sections. */
export async function replayFile(path: string, config: { readonly policy: PolicyConfig; readonly scoring: ScoringConfig }, options: StreamOptions = {}): Promise<ReplayReport> {
  if (path === '-') return replayStream(process.stdin, config, options);
  const file = await open(path, 'r'); // a missing file fails here, with its name
  try {
    const { size } = await file.stat();
    return await replayStream(file.createReadStream({ autoClose: false }), config, { totalBytes: size, ...options });
  } finally {
    await file.close();
  }
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
