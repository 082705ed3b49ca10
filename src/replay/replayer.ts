// src/replay/replayer.ts — one replay: every logged query decided by the server's own query path (the pipeline that
// src/replay/harness.ts builds on in-memory stand-ins), and the figures read off the Outcomes it returns: per verdict,
// per signal, per session and, for labelled input, detection and false-positive figures; against the verdicts the
// log recorded, what changes. Never reads a file, the clock or a socket; never decides anything itself.
import { deflateRawSync } from 'node:zlib';
import { SIGNAL_IDS, splitName, platformSet, type SignalId } from '../../scoring/index.js';
import type { Policy, SessionState, SessionType, Verdict } from '../policy/judge.js';
import type { ReplayLine } from '../policy/replay-lines.js';
import type { ChangeFigures, LabelFigures, ReplayReport, SessionResult } from '../policy/replay-report.js';
import type { Outcome } from '../outcome/outcome.js';
import { createReplayHarness, type HarnessOptions, type ReplayHarness } from './harness.js';

export interface ReplayOptions extends HarnessOptions {
  /** Called with every replayed query's decision (`answer`, `nxdomain`, `quarantine`, `refused`, `failed`) and rule. */
  readonly onDecision?: (line: ReplayLine, action: string, rule: string) => void;
}

interface Tracker {
  readonly id: string;
  readonly type: SessionType;
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
  maxFresh: number; maxRate: number; maxEncoded: number; maxRepeat: number; payload: number; payloadBeforeBlock: number | undefined; // highest freshVolumeBytes, rateBytes and encodedBytes after a forwarded query
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

function maxVolume(state: SessionState | undefined): number {
  let max = 0;
  if (state !== undefined) for (const key in state.domains) max = Math.max(max, state.domains[key]!.volumeBytes);
  return max;
}

/**
 * Replay simulates enforcement whatever the mode says (what *would* have been blocked): a policy in observe mode
 * is judged as it is, and its verdicts taken as enforced, so the pipeline closes the gate as an enforcing server would.
 */
function enforcing(policy: Policy): Policy {
  if (policy.mode('interactive') === 'enforce' && policy.mode('batch') === 'enforce' && policy.mode('scheduled') === 'enforce') return policy;
  const enforce = (v: Verdict): Verdict => (v.enforced ? v : { ...v, enforced: true });
  // The instance is the prototype: every other method (account, newSessionState, …) is the policy's own, on its own state.
  const wrapped = Object.create(policy) as Policy;
  wrapped.judge = (input) => enforce(policy.judge(input));
  wrapped.judgeAnswer = (name, addresses, session) => {
    const v = policy.judgeAnswer(name, addresses, session);
    return v === undefined ? undefined : enforce(v);
  };
  return wrapped;
}

/**
 * Replays lines one at a time (in time order per session) through the pipeline; `report()` at any point. Memory
 * grows with sessions and unique names, never with lines: the harness's cache entries expire by the lines' own
 * times and each session keeps at most MAX_SENT_CHARS of forwarded subdomains for the information figures.
 */
export class Replayer {
  private readonly platforms = platformSet();
  private readonly harness: ReplayHarness;
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
  private readonly onDecision: ReplayOptions['onDecision'];

  constructor(private readonly policy: Policy, options: ReplayOptions & { readonly detail?: boolean } = {}) {
    this.detail = options.detail ?? true;
    this.onDecision = options.onDecision;
    this.harness = createReplayHarness(enforcing(policy), options);
  }

  /**
   * Decides one line (a query log row standing for `count` queries: that many) through the pipeline; a promise
   * while a line with a domain age is decided, which must settle before the next line is pushed.
   */
  push(l: ReplayLine): void | Promise<void> {
    const count = l.count ?? 1;
    if (count === 1) return this.one(l);
    // The repeats of a query log row: the first at `ts`, the rest at `last_ts` (their own times were not kept).
    const rest = { ...l, count: 1, ts: l.last_ts ?? l.ts };
    let chain = this.one({ ...l, count: 1 });
    for (let i = 1; i < count; i++) chain = chain instanceof Promise ? chain.then(() => this.one(rest)) : this.one(rest);
    return chain;
  }

  private one(l: ReplayLine): void | Promise<void> {
    const name = l.qname.toLowerCase().replace(/\.$/, '');
    const outcome = this.harness.feed(l, name);
    if (outcome instanceof Promise) return outcome.then((o) => this.account(l, name, o));
    this.account(l, name, outcome);
  }

  private trackerOf(l: ReplayLine): Tracker {
    let t = this.sessions.get(l.session);
    if (t === undefined) {
      t = {
        id: l.session, type: this.harness.session(l.session)!.type, label: l.label, kind: l.kind, queries: 0, dataQueries: 0, blocked: 0, blockedWhileQuarantined: 0,
        firstBlockAt: undefined, firstDataBlockAt: undefined, quarantineAt: undefined, quarantineRule: undefined, quarantineReason: undefined, dataAtQuarantine: undefined,
        forwarded: 0, bytes: 0, forwardedBeforeBlock: undefined, bytesBeforeBlock: undefined, sent: new Map(), sentChars: 0, info1: undefined, maxScore: 0, maxFresh: 0, maxRate: 0, maxEncoded: 0, maxRepeat: 0, payload: 0, payloadBeforeBlock: undefined,
      };
      this.sessions.set(l.session, t);
    }
    return t;
  }

  /** The figures of one query from what the pipeline made of it. */
  private account(l: ReplayLine, name: string, o: Outcome): void {
    this.queries++;
    const tr = this.trackerOf(l);
    tr.queries++;
    if (l.data === true) tr.dataQueries++;
    const v = o.kind === 'answered' || o.kind === 'blocked' ? o.verdict : undefined;
    const action = v?.action ?? (o.kind === 'answered' || o.kind === 'local' ? 'answer' : o.kind);
    const rule = v?.rule ?? (o.kind === 'refused' ? o.reason : o.kind === 'failed' ? 'upstream' : 'none');
    const key = `${action}/${rule}`;
    this.verdicts[key] = (this.verdicts[key] ?? 0) + 1;
    this.onDecision?.(l, action, rule);
    const blocked = o.kind === 'blocked' || o.kind === 'refused';
    this.compare(l, tr.type, blocked, v);
    const noteBlocked = (): void => {
      tr.firstBlockAt ??= tr.queries;
      if (l.data === true) tr.firstDataBlockAt ??= tr.dataQueries;
      tr.forwardedBeforeBlock ??= tr.forwarded;
      tr.bytesBeforeBlock ??= tr.bytes;
      tr.payloadBeforeBlock ??= tr.payload;
    };
    if (rule === 'quarantined') { // the closed gate: the session was quarantined before this query
      tr.blockedWhileQuarantined++;
      noteBlocked();
      return;
    }
    const labelNames = l.label === undefined || !this.detail ? undefined : this.names[l.label];
    if (labelNames !== undefined) labelNames.set(name, (labelNames.get(name) ?? false) || action === 'nxdomain');
    if (v?.score !== undefined) {
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
      if (action === 'quarantine') {
        tr.quarantineAt = tr.queries;
        tr.quarantineRule = rule;
        tr.quarantineReason = v?.reason;
        tr.dataAtQuarantine = tr.dataQueries;
        if (this.detail) tr.info1 = infoOf(tr);
      }
      return;
    }
    if (o.kind === 'answered' && o.via === 'upstream') {
      tr.forwarded++;
      tr.bytes += name.length;
      tr.payload += l.payload ?? 0;
      if (this.detail) this.noteSent(tr, name, l.age_days);
    }
    const state = this.harness.session(l.session)!.state;
    if (state.freshVolumeBytes > tr.maxFresh) tr.maxFresh = state.freshVolumeBytes;
    if (state.rateBytes > tr.maxRate) tr.maxRate = state.rateBytes;
    if (state.encodedBytes > tr.maxEncoded) tr.maxEncoded = state.encodedBytes;
    if (state.repeatBytes > tr.maxRepeat) tr.maxRepeat = state.repeatBytes;
  }

  private compare(l: ReplayLine, type: SessionType, isBlocked: boolean, v: Verdict | undefined): void {
    if (l.action === undefined) return;
    const change = this.change;
    change.compared++;
    const wasBlocked = l.action !== 'answer';
    if (isBlocked && !wasBlocked) {
      change.newlyBlocked++;
      change.bySessionType[type].newlyBlocked++;
      for (const s of v?.score?.signals ?? []) if (s.value * s.weight >= 0.05) change.newlyBlockedBySignal[s.id]++;
    } else if (!isBlocked && wasBlocked) {
      change.newlyAllowed++;
      change.bySessionType[type].newlyAllowed++;
    }
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
        session: t.id, type: t.type, label: t.label, kind: t.kind, queries: t.queries, blocked: t.blocked, blockedWhileQuarantined: t.blockedWhileQuarantined,
        firstBlockAt: t.firstBlockAt, firstDataBlockAt: t.firstDataBlockAt, quarantineAt: t.quarantineAt, quarantineRule: t.quarantineRule, quarantineReason: t.quarantineReason, dataQueriesAtQuarantine: t.dataAtQuarantine,
        forwardedBeforeBlock: t.forwardedBeforeBlock ?? t.forwarded, bytesBeforeBlock: t.bytesBeforeBlock ?? t.bytes,
        forwardedBeforeQuarantine: t.forwarded, bytesBeforeQuarantine: t.bytes,
        maxDomainInfoBytes: info.max, youngInfoBytes: info.young,
        maxScore: t.maxScore, maxVolumeEstimate: maxVolume(this.harness.session(t.id)?.state), maxSessionVolumeEstimate: t.maxFresh, sessionInfoBytes: info.all, maxBytesPerMinute: t.maxRate, maxEncodedEstimate: t.maxEncoded, maxRepeatEstimate: t.maxRepeat, payloadBeforeQuarantine: t.payload, payloadBeforeBlock: t.payloadBeforeBlock ?? t.payload,
      });
    }
    const policy = this.policy;
    return {
      queries: this.queries, sessions: this.sessions.size, skippedLines: 0, firstSkippedLine: undefined, skippedUnknownType: 0,
      blocked: { queries: byRule + whileQuarantined, byRule, whileQuarantined },
      modes: { interactive: policy.mode('interactive'), batch: policy.mode('batch'), scheduled: policy.mode('scheduled') },
      verdicts: { ...this.verdicts }, signals: structuredClone(this.signals), benign: fig('benign'), exfil: fig('exfil'), perSession,
      changes: this.change.compared > 0 ? (structuredClone(this.change) as ChangeFigures) : undefined, sweep: [],
    };
  }

  close(): void {
    this.harness.close();
  }
}

/** Replay `lines` (in time order per session) through the pipeline under `policy`, simulating enforcement whatever the mode says. */
export async function replayLines(lines: Iterable<ReplayLine>, policy: Policy, options: ReplayOptions = {}): Promise<ReplayReport> {
  const r = new Replayer(policy, options);
  try {
    await pushAll(lines, r);
    return r.report();
  } finally {
    r.close();
  }
}

/** Pushes every line in order, awaiting only the lines that wait (a domain's age): most lines cost no promise. */
export async function pushAll(lines: Iterable<ReplayLine>, into: { push(l: ReplayLine): void | Promise<void> }): Promise<void> {
  for (const l of lines) {
    const pending = into.push(l);
    if (pending !== undefined) await pending;
  }
}
