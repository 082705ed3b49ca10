// src/replay/replay.ts — `dnswarden replay`: a logged query stream decided offline by the server's own query path
// (src/replay/replayer.ts over src/replay/harness.ts's pipeline), the candidate policy and a threshold sweep (one
// pipeline per block_at, fed the same stream) in one pass. Times come from the lines, never the clock; the only I/O
// is replayFile() reading its file (or stdin) line by line: memory never grows with the file's length.
// Never writes a store, opens a socket or logs. The line formats are src/policy/replay-lines.ts's, the report's
// shape and text src/policy/replay-report.ts's; this is the one entry point (the CLI's, the tests').
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { loadRpzSet } from '../zones/zone-set.js';
import type { RpzSet } from '../zones/rpz.js';
import { Policy, type PolicyConfig, type ScoringConfig } from '../policy/judge.js';
import { readLine, type ReplayLine } from '../policy/replay-lines.js';
import type { ReplayReport, SweepRow } from '../policy/replay-report.js';
import type { HarnessOptions } from './harness.js';
import { pushAll, Replayer, type ReplayOptions } from './replayer.js';

export { parseJsonl, parseJsonlCounted, readLine, type ReplayLine } from '../policy/replay-lines.js';
export { figuresByKind, formatReport, type ChangeFigures, type KindFigures, type LabelFigures, type ReplayReport, type SessionResult, type SweepRow } from '../policy/replay-report.js';
export { Replayer, replayLines, type ReplayOptions } from './replayer.js';

type Config = { readonly policy: PolicyConfig; readonly scoring: ScoringConfig };

/** The thresholds the sweep tries, for every session type at once. */
export const SWEEP_THRESHOLDS: readonly number[] = [0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0, 1.2];

/** One pipeline (a Replayer) per threshold with every session type's block_at set to it, fed the same lines in one pass. */
export class Sweep {
  private readonly replayers: readonly { blockAt: number; replayer: Replayer }[];

  constructor(config: Config, options: HarnessOptions = {}, rpz?: RpzSet) {
    const types = config.policy.session_types;
    this.replayers = SWEEP_THRESHOLDS.map((blockAt) => {
      const policy = new Policy({
        ...config.policy,
        session_types: { interactive: { ...types.interactive, block_at: blockAt }, batch: { ...types.batch, block_at: blockAt }, scheduled: { ...types.scheduled, block_at: blockAt } },
      }, config.scoring);
      if (rpz !== undefined) policy.setRpz(rpz);
      const { cacheTtlMs, sessionType } = options; // the harness's options only (never the main replay's callback)
      return { blockAt, replayer: new Replayer(policy, { ...(cacheTtlMs === undefined ? {} : { cacheTtlMs }), ...(sessionType === undefined ? {} : { sessionType }), detail: false }) };
    });
  }

  /** Every pipeline decides the line (they are independent: those waiting on a domain age settle together). */
  push(l: ReplayLine): void | Promise<void> {
    let pending: Promise<void>[] | undefined;
    for (const r of this.replayers) {
      const p = r.replayer.push(l);
      if (p !== undefined) (pending ??= []).push(p);
    }
    if (pending !== undefined) return Promise.all(pending).then(() => undefined);
  }

  rows(): SweepRow[] {
    return this.replayers.map(({ blockAt, replayer }) => {
      const r = replayer.report();
      return { blockAt, blockedQueries: r.blocked.queries, quarantinedSessions: r.perSession.filter((s) => s.quarantineAt !== undefined).length };
    });
  }

  close(): void {
    for (const r of this.replayers) r.replayer.close();
  }
}

/** Replays `lines` once per threshold with every session type's block_at set to it. */
export async function sweepThresholds(lines: Iterable<ReplayLine>, config: Config, options: HarnessOptions = {}): Promise<SweepRow[]> {
  const sweep = new Sweep(config, options);
  try {
    await pushAll(lines, sweep);
    return sweep.rows();
  } finally {
    sweep.close();
  }
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
 * Replays a stream line by line, the candidate policy and every sweep threshold in one pass: memory does not
 * grow with the number of lines, so a log of any length replays.
 */
export async function replayStream(input: Readable, config: Config, options: StreamOptions = {}): Promise<ReplayReport> {
  // The policy zones the config names judge the replay as they judge live queries (a bad file: a ConfigError).
  const rpz = config.policy.rpz.length === 0 ? undefined : loadRpzSet(config.policy.rpz);
  const policy = new Policy(config.policy, config.scoring);
  if (rpz !== undefined) policy.setRpz(rpz);
  const main = new Replayer(policy, options);
  const sweep = new Sweep(config, options, rpz);
  try {
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
      const a = main.push(l);
      const b = sweep.push(l);
      if (a !== undefined) await a;
      if (b !== undefined) await b;
    }
    return { ...main.report(), skippedLines: skipped, firstSkippedLine: firstSkipped, skippedUnknownType: unknownType, sweep: sweep.rows(), repeatedBlocksNotReplayed: repeatedBlocks };
  } finally {
    main.close();
    sweep.close();
  }
}

/** The entry point for `dnswarden replay FILE|- [--config X]`: the cli passes the validated config sections. */
export async function replayFile(path: string, config: Config, options: StreamOptions = {}): Promise<ReplayReport> {
  if (path === '-') return replayStream(process.stdin, config, options);
  const file = await open(path, 'r'); // a missing file fails here, with its name
  try {
    const { size } = await file.stat();
    return await replayStream(file.createReadStream({ autoClose: false }), config, { totalBytes: size, ...options });
  } finally {
    await file.close();
  }
}
