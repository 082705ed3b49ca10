// src/policy/replay-lines.ts — what `dnswarden replay` reads: one line of a JSONL query stream (`ts`, `session`,
// `qname`, `qtype`, …), of dnswarden's own log (its `event: "verdict"` lines) or of dnswarden's query log as
// exported (`GET /v1/queries?format=jsonl`: `time`, `name`, `result`, `rcode`, `count`), validated into a ReplayLine.
// Never judges, never reads a file or the clock: the driver (src/replay/) feeds these lines to the pipeline.
import { z } from 'zod';
import { WardenError } from '../errors.js';
import { qtypeOf } from '../ops/qtypes.js';
import { SESSION_TYPES } from './schema.js';

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

// dnswarden's query log as exported (src/analyst/query-log.ts queryLogJson) says `time` (ISO) and `result`; a row
// stands for `count` identical queries, the first at `time`, the last at `last_time`. A refused or failed row carries
// no verdict to compare against (its `action` is the result), but its result is replayed (a failure is not observed).
const fromQueryLog = (raw: Record<string, unknown>): Record<string, unknown> => {
  const { time, last_time: lastTime, action, result, ...rest } = raw;
  const ts = typeof time === 'string' ? Date.parse(time) : NaN;
  const lastTs = typeof lastTime === 'string' ? Date.parse(lastTime) : NaN;
  const out: Record<string, unknown> = { ...rest, result, ts: Number.isNaN(ts) ? time : ts };
  if (!Number.isNaN(lastTs)) out['last_ts'] = lastTs;
  if (result === 'answered' || result === 'blocked') out['action'] = action;
  return out;
};

const isQueryLogRow = (raw: object): raw is Record<string, unknown> => !('ts' in raw) && 'time' in raw && 'result' in raw;

// dnswarden's verdict log lines (src/outcome/verdict-log.ts VerdictLogLine) and query log rows name the query `name`;
// other query logs say `qname`.
const normalise = (raw: unknown): unknown => {
  if (raw === null || typeof raw !== 'object') return raw;
  const r = isQueryLogRow(raw) ? fromQueryLog(raw) : (raw as Record<string, unknown>);
  if (!('qname' in r) && 'name' in r) {
    const { name, ...rest } = r;
    return { ...rest, qname: name };
  }
  return r;
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
  /** dnswarden's query log: what became of the query (a `failed` one is replayed as an upstream failure). */
  result: z.enum(['answered', 'blocked', 'failed', 'refused', 'local']).optional(),
  /** dnswarden's query log: the row stands for this many identical queries (the last at `last_ts`). */
  count: z.number().int().min(1).optional(),
  last_ts: z.number().optional(),
});
export type ReplayLine = z.output<typeof lineSchema>;

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
