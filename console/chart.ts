// The quarantine's timeline: each scored query of the session as a point (time × score), answered and
// blocked apart, with the session type's threshold as a line. uPlot draws on a canvas (no inline styles).
import uPlot from 'uplot';
import type { HistoryEntry } from './api.js';

export interface ChartRow { readonly atMs: number; readonly score: number; readonly blocked: boolean }

/** Every query of the session; one that was not scored (an ordinary name the judge did not need to score, or a
 * query the closed gate answered) is drawn at 0. */
export function chartRows(entries: readonly HistoryEntry[]): ChartRow[] {
  const rows = entries.map((e) => ({ atMs: e.atMs, score: e.score ?? 0, blocked: e.action !== 'answer' }));
  return rows.sort((a, b) => a.atMs - b.atMs);
}

const points = (stroke: string, fill: string, size: number): Partial<uPlot.Series> => ({
  stroke, fill, paths: () => null, points: { show: true, size, stroke, fill, width: 1 },
});

/** Draws into `el` (emptied first); returns the plot to destroy when the view goes. */
export function drawTimeline(el: HTMLElement, rows: readonly ChartRow[], blockAt: number | null, width: number): uPlot {
  el.replaceChildren();
  const xs = rows.map((r) => r.atMs / 1000);
  const answered = rows.map((r) => (r.blocked ? null : r.score));
  const blocked = rows.map((r) => (r.blocked ? r.score : null));
  const threshold = rows.map(() => blockAt);
  const opts: uPlot.Options = {
    width, height: 260,
    title: 'Session queries: score over time',
    scales: { x: { time: true }, y: { range: [0, 1.05] } },
    axes: [{ label: 'time' }, { label: 'score' }],
    legend: { show: true },
    series: [
      {},
      { label: 'answered', ...points('#1a6b3c', '#2e9e5b', 7) },
      { label: 'blocked', ...points('#a4161a', '#d62828', 9) },
      { label: `threshold${blockAt === null ? '' : ` (${blockAt})`}`, stroke: '#6a4c93', width: 2, dash: [6, 4], points: { show: false } },
    ],
  };
  return new uPlot(opts, [xs, answered, blocked, threshold], el);
}

/** The overview's traffic chart: queries and blocked queries per minute over the last hour. */
export function drawRates(el: HTMLElement, minutes: readonly { time: string; queries: number; blocked: number }[], width: number): uPlot {
  el.replaceChildren();
  const opts: uPlot.Options = {
    width, height: 240,
    title: 'Queries per minute, last hour',
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(10, max * 1.1)] } },
    axes: [{ label: 'time' }, { label: 'queries / min' }],
    series: [
      {},
      { label: 'queries', stroke: '#0b5cad', width: 2, fill: 'rgba(11,92,173,0.08)' },
      { label: 'blocked', stroke: '#a4161a', width: 2 },
    ],
  };
  return new uPlot(opts, [minutes.map((m) => Date.parse(m.time) / 1000), minutes.map((m) => m.queries), minutes.map((m) => m.blocked)], el);
}
