// The query log view: "who resolved X?" by name suffix, session, user, verdict and time, across live and ended
// sessions (GET /v1/queries), with CSV/JSONL export. The search is in the address (bookmarkable); the token never is.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { getJson, getText, type QueryRow } from './api.js';
import { ErrorNote, fixed, messageOf, qtype, utc } from './ui.js';

// --- 3. the query log

const FILTER_KEYS = ['name', 'session', 'user', 'verdict', 'since', 'until', 'limit'] as const;
type QueryFilters = Record<(typeof FILTER_KEYS)[number], string>;

const toLocalInput = (iso: string): string => {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return '';
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
};

export function QueryLogView() {
  const params = new URLSearchParams(location.search);
  const initial = Object.fromEntries(FILTER_KEYS.map((k) => [k, params.get(k) ?? (k === 'limit' ? '200' : '')])) as QueryFilters;
  const [draft, setDraft] = useState<QueryFilters>(initial);
  const [rows, setRows] = useState<QueryRow[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState('');

  const apiQuery = (f: QueryFilters, format?: string): URLSearchParams => {
    const qs = new URLSearchParams();
    for (const k of FILTER_KEYS) {
      const v = f[k].trim();
      if (v === '') continue;
      // datetime-local inputs are local time; the API takes ISO (UTC).
      qs.set(k, (k === 'since' || k === 'until') && !/Z$/.test(v) ? new Date(v).toISOString() : v);
    }
    if (format !== undefined) qs.set('format', format);
    return qs;
  };
  const search = async (f: QueryFilters): Promise<void> => {
    const qs = apiQuery(f);
    history.replaceState(null, '', `/ui/queries${qs.size > 0 ? `?${qs}` : ''}`);
    setStatus('Searching…');
    try {
      const r = await getJson<{ queries: QueryRow[] }>(`/v1/queries?${qs}`);
      setRows(r.queries);
      setError(null);
      setStatus(`${r.queries.length} quer${r.queries.length === 1 ? 'y' : 'ies'} found${r.queries.length >= Number(f.limit || 1000) ? ' (the limit: narrow the search or raise it)' : ''}.`);
    } catch (e) {
      setError(messageOf(e));
      setStatus('');
    }
  };
  useEffect(() => void search(initial), []);
  const exportAs = async (format: 'csv' | 'jsonl'): Promise<void> => {
    try {
      const text = await getText(`/v1/queries?${apiQuery(draft, format)}`);
      const url = URL.createObjectURL(new Blob([text], { type: format === 'csv' ? 'text/csv' : 'application/x-ndjson' }));
      const a = document.createElement('a');
      a.href = url;
      a.download = `dnswarden-queries.${format}`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const field = (k: keyof QueryFilters, label: string, type = 'text') => html`<label>${label}
    <input type=${type} name=${k} value=${type === 'datetime-local' ? toLocalInput(draft[k]) || draft[k] : draft[k]}
      onInput=${(e: Event) => setDraft({ ...draft, [k]: (e.target as HTMLInputElement).value })} /></label>`;
  return html`<section aria-labelledby="ql-title">
    <h1 id="ql-title">Query log</h1>
    <p class="help">Who resolved a name? Every session's queries, live and ended. A name finds itself and every name under it.</p>
    <form class="filters" aria-label="Search the query log" onSubmit=${(e: Event) => { e.preventDefault(); void search(draft); }}>
      ${field('name', 'Name (suffix)')}
      ${field('session', 'Session')}
      ${field('user', 'User')}
      <label>Verdict
        <select name="verdict" value=${draft.verdict} onChange=${(e: Event) => setDraft({ ...draft, verdict: (e.target as HTMLSelectElement).value })}>
          <option value="">any</option><option value="answered">answered</option><option value="blocked">blocked</option>
          <option value="quarantine">quarantine</option><option value="threshold">threshold</option><option value="quarantined">quarantined (gate)</option>
          <option value="failed">failed</option><option value="refused">refused (unsupported type)</option>
        </select></label>
      ${field('since', 'Since (local time)', 'datetime-local')}
      ${field('until', 'Until (local time)', 'datetime-local')}
      ${field('limit', 'Limit', 'number')}
      <button type="submit">Search</button>
      <button type="button" class="secondary" onClick=${() => void exportAs('csv')}>Export CSV</button>
      <button type="button" class="secondary" onClick=${() => void exportAs('jsonl')}>Export JSONL</button>
    </form>
    <p class="muted" role="status">${status}</p>
    <${ErrorNote} error=${error} />
    ${rows === null || rows.length === 0 ? (rows === null ? null : html`<p class="empty">No queries match.</p>`) : html`<table class="querylog">
      <caption class="sr-only">Matching queries, newest first</caption>
      <thead><tr><th scope="col">Time (UTC)</th><th scope="col">Session</th><th scope="col">User</th><th scope="col">Type</th><th scope="col">Result</th><th scope="col">Rule</th><th scope="col">Score</th><th scope="col">QType</th><th scope="col">Name</th></tr></thead>
      <tbody>${rows.map((r) => html`<tr class=${r.result === 'blocked' ? 'blocked' : ''}>
        <td>${utc(Date.parse(r.time))}</td><td>${r.session}</td><td>${r.user}</td><td>${r.session_type}</td><td>${r.result}${r.count > 1 ? html` <span class="muted" title=${`${r.count} identical queries until ${r.last_time}`}>×${r.count}</span>` : null}</td><td>${r.rule}</td><td>${fixed(r.score)}</td><td>${qtype(r.qtype)}</td><td class="name">${r.name}</td>
      </tr>`)}</tbody>
    </table>`}
  </section>`;
}

