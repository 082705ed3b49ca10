// The overview: the last hour as the server saw it (GET /v1/overview, from the query log and the quarantines):
// queries per second, blocks, quarantines raised and open, live sessions, a per-minute chart and the most
// blocked domains (each a link to the query log). Refreshed every 30 s. Holds no data of its own.
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import { getJson } from './api.js';
import { drawRates } from './chart.js';
import { ErrorNote, Link, messageOf, utc } from './ui.js';

interface Overview {
  since: string; until: string; query_log: boolean; queries: number; blocked: number; queries_per_second: number;
  quarantines_raised: number; quarantines_open: number; sessions_live: number;
  per_minute: { time: string; queries: number; blocked: number }[];
  top_blocked_domains: { domain: string; count: number }[];
}

export function OverviewView() {
  const [data, setData] = useState<Overview | null>(null);
  const [error, setError] = useState<string | null>(null);
  const ref = useRef<HTMLDivElement>(null);
  const load = async (): Promise<void> => {
    try {
      setData(await getJson<Overview>('/v1/overview'));
      setError(null);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), 30_000);
    return () => clearInterval(timer);
  }, []);
  useEffect(() => {
    if (data === null || ref.current === null || data.per_minute.length === 0) return undefined;
    const plot: uPlot = drawRates(ref.current, data.per_minute, Math.max(600, Math.min(1200, ref.current.clientWidth || 1100)));
    return () => plot.destroy();
  }, [data]);
  if (data === null) return html`<section><h1>Overview</h1>${error === null ? html`<p>Loading…</p>` : html`<${ErrorNote} error=${error} />`}</section>`;
  const tile = (label: string, value: string | number, href?: string) => html`<div class="tile">
    <div class="tile-value">${href === undefined ? value : html`<${Link} href=${href}>${value}</${Link}>`}</div><div class="tile-label">${label}</div></div>`;
  return html`<section aria-labelledby="ov-title">
    <h1 id="ov-title">Overview</h1>
    <p class="muted">The last hour: ${utc(Date.parse(data.since))} to ${utc(Date.parse(data.until))}. Refreshed every 30 s.</p>
    <${ErrorNote} error=${error} />
    ${data.query_log ? null : html`<p class="notice" role="status">The query log is off (query_log.enabled: false): traffic figures are not available.</p>`}
    <div class="tiles">
      ${tile('queries / s (hour average)', data.queries_per_second)}
      ${tile('queries', data.queries)}
      ${tile('blocked', data.blocked, '/ui/queries?verdict=blocked&limit=200')}
      ${tile('quarantines raised', data.quarantines_raised)}
      ${tile('open quarantines', data.quarantines_open, '/ui/?state=open')}
      ${tile('live sessions', data.sessions_live, '/ui/sessions')}
    </div>
    <h2>Traffic</h2>
    ${data.per_minute.length === 0 ? html`<p class="empty">No queries in the last hour.</p>`
      : html`<div ref=${ref} class="chart" role="img" aria-label=${`Queries per minute over the last hour: ${data.queries} queries, ${data.blocked} blocked`}></div>`}
    <h2>Most blocked domains</h2>
    ${data.top_blocked_domains.length === 0 ? html`<p class="empty">Nothing blocked in the last hour.</p>` : html`<table class="top-blocked">
      <thead><tr><th scope="col">Domain</th><th scope="col">Blocked queries</th></tr></thead>
      <tbody>${data.top_blocked_domains.map((t) => html`<tr><td><${Link} href=${`/ui/queries?name=${encodeURIComponent(t.domain)}&verdict=blocked&limit=200`}>${t.domain}</${Link}></td><td>${t.count}</td></tr>`)}</tbody>
    </table>`}
  </section>`;
}
