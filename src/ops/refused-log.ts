// Refused queries in the log, rate-limited per source address: the first refusal from a source is one
// info line at once; later ones are counted and summed up in at most one line per source per interval,
// with counts by reason. Memory is bounded: past MAX_SOURCES tracked sources, the rest are summed up as
// "other sources" (a flood of spoofed addresses cannot grow the map). Owns no metric and never logs names.
import type { Logger } from 'pino';

export type RefusedReason = 'no_session' | 'expired' | 'unsupported' | 'rate_limited';

interface SourceEntry {
  lastLineAtMs: number;
  count: number; // refusals since the last line
  byReason: Partial<Record<RefusedReason, number>>;
}

const MAX_SOURCES = 10_000;

export class RefusedLog {
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #sources = new Map<string, SourceEntry>();
  /** Refusals from sources beyond MAX_SOURCES, summed up together. */
  #other: { count: number; byReason: Partial<Record<RefusedReason, number>>; lastLineAtMs: number } = { count: 0, byReason: {}, lastLineAtMs: -Infinity };
  readonly #timer: NodeJS.Timeout;

  constructor(log: Logger, intervalMs: number, nowMs: () => number) {
    this.#log = log;
    this.#intervalMs = intervalMs;
    // Ticks four times an interval, so a summary is at most a quarter interval late.
    this.#timer = setInterval(() => this.flush(nowMs()), Math.max(50, Math.floor(intervalMs / 4)));
    this.#timer.unref();
  }

  note(source: string, reason: RefusedReason, atMs: number): void {
    const entry = this.#sources.get(source);
    if (entry !== undefined) {
      entry.count++;
      entry.byReason[reason] = (entry.byReason[reason] ?? 0) + 1;
      return;
    }
    if (this.#sources.size >= MAX_SOURCES) {
      this.#other.count++;
      this.#other.byReason[reason] = (this.#other.byReason[reason] ?? 0) + 1;
      return;
    }
    this.#sources.set(source, { lastLineAtMs: atMs, count: 0, byReason: {} });
    this.#log.info({ event: 'refused', source, reason, count: 1 }, 'query refused');
  }

  /** Logs a summary for every source whose interval is over and that was refused since; forgets quiet ones. */
  flush(nowMs: number): void {
    for (const [source, e] of this.#sources) {
      if (nowMs - e.lastLineAtMs < this.#intervalMs) continue;
      if (e.count === 0) {
        this.#sources.delete(source); // quiet for a whole interval: its next refusal is logged at once
        continue;
      }
      this.#log.info({ event: 'refused', source, count: e.count, reasons: e.byReason, interval_s: this.#intervalMs / 1000 }, 'queries refused');
      e.lastLineAtMs = nowMs;
      e.count = 0;
      e.byReason = {};
    }
    const o = this.#other;
    if (o.count > 0 && nowMs - o.lastLineAtMs >= this.#intervalMs) {
      this.#log.info({ event: 'refused', source: 'other', refusals_from_untracked_sources: o.count, reasons: o.byReason, tracked_sources: MAX_SOURCES, interval_s: this.#intervalMs / 1000 }, 'queries refused from sources beyond the tracked ones');
      this.#other = { count: 0, byReason: {}, lastLineAtMs: nowMs };
    }
  }

  /** Stops the timer after logging what is still counted (nothing is lost at shutdown). */
  close(): void {
    clearInterval(this.#timer);
    this.flush(Infinity);
  }
}
