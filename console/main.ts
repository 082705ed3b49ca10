// The analyst console: a single page served by the admin listener under /ui/. It holds no data of its own:
// every view is drawn from the admin API, called with the token the analyst gave (sessionStorage only).
// Views: the quarantine queue, one quarantine (evidence, timeline, decision), the query log, the sessions.
// Never decides anything itself: a release or confirmation is the API's, audited there; the buttons are
// only shown to token kinds the API lets decide.
import { html, render } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import {
  ApiError, forgetToken, getJson, getText, postJson, storeToken, storedToken, takeTokenFromFragment, whenUnauthorized,
  type AuditEntry, type Caller, type HistoryEntry, type LiveSession, type QuarantineDetail, type QuarantineSummary, type QueryRow, type Signal,
} from './api.js';
import { chartRows, drawTimeline } from './chart.js';

// --- small helpers

const messageOf = (e: unknown): string => (e instanceof ApiError ? `${e.message} (${e.code})` : e instanceof Error ? e.message : String(e));
const utc = (ms: number): string => new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
function age(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 129_600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}
const QTYPES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 65: 'HTTPS' };
const qtype = (n: number | undefined): string => (n === undefined ? '' : QTYPES[n] ?? String(n));
const fixed = (n: number | null | undefined): string => (typeof n === 'number' ? n.toFixed(2) : '');
const topSignals = (signals: readonly Signal[] | undefined, n = 3): Signal[] => [...(signals ?? [])].sort((a, b) => b.value * b.weight - a.value * a.weight).slice(0, n);
const canDecide = (c: Caller): boolean => c.kind === 'admin' || c.kind === 'analyst';

// --- navigation: each view has its own address under /ui/

let setPathGlobal: (p: string) => void = () => {};
function navigate(path: string): void {
  history.pushState(null, '', path);
  setPathGlobal(path);
  window.scrollTo(0, 0);
}

function Link(props: { href: string; children?: unknown; class?: string; label?: string }) {
  const onClick = (e: MouseEvent): void => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(props.href);
  };
  return html`<a href=${props.href} class=${props.class} aria-label=${props.label} onClick=${onClick}>${props.children}</a>`;
}

function ErrorNote({ error }: { error: string | null }) {
  return error === null ? null : html`<p class="error" role="alert">${error}</p>`;
}

// --- login

function Login({ onToken, error }: { onToken: (t: string) => void; error: string }) {
  const [value, setValue] = useState('');
  const submit = (e: Event): void => {
    e.preventDefault();
    if (value.trim() !== '') onToken(value.trim());
  };
  return html`<main class="login" id="main">
    <h1>dnswarden console</h1>
    <form onSubmit=${submit} aria-describedby="login-help">
      <label for="token">API token</label>
      <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required value=${value}
        onInput=${(e: Event) => setValue((e.target as HTMLInputElement).value)} />
      <button type="submit">Sign in</button>
      <p id="login-help" class="help">Paste an admin, analyst or viewer token. It is kept in this tab only (sessionStorage) and sent to this server's API as a bearer token.</p>
      ${error !== '' ? html`<p class="error" role="alert">${error}</p>` : null}
    </form>
  </main>`;
}

// --- 1. the queue

const STATE_ORDER: Record<string, number> = { open: 0, confirmed: 1, released: 2 };

function Queue() {
  const params = new URLSearchParams(location.search);
  const [filters, setFilters] = useState({ state: params.get('state') ?? '', user: params.get('user') ?? '', type: params.get('session_type') ?? '' });
  const [draftUser, setDraftUser] = useState(filters.user);
  const [list, setList] = useState<QuarantineSummary[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [updated, setUpdated] = useState<number | null>(null);

  const qs = new URLSearchParams();
  if (filters.state !== '') qs.set('state', filters.state);
  if (filters.user !== '') qs.set('user', filters.user);
  if (filters.type !== '') qs.set('session_type', filters.type);
  const load = async (): Promise<void> => {
    try {
      const r = await getJson<{ quarantines: QuarantineSummary[] }>(`/v1/quarantines?${qs}`);
      setList(r.quarantines);
      setUpdated(Date.now());
      setError(null);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => {
    history.replaceState(null, '', `/ui/${qs.size > 0 ? `?${qs}` : ''}`);
    void load();
    const timer = setInterval(() => void load(), 10_000); // refresh without reload
    return () => clearInterval(timer);
  }, [filters.state, filters.user, filters.type]);

  const sorted = [...(list ?? [])].sort((a, b) => (STATE_ORDER[a.state]! - STATE_ORDER[b.state]!) || Date.parse(b.raised_at) - Date.parse(a.raised_at));
  const count = (s: string): number => (list ?? []).filter((q) => q.state === s).length;
  const onSubmit = (e: Event): void => {
    e.preventDefault();
    setFilters({ ...filters, user: draftUser.trim() });
  };
  return html`<section aria-labelledby="queue-title">
    <div class="title-row">
      <h1 id="queue-title">Quarantines</h1>
      <p class="counts" aria-live="polite">
        <span class="badge open">${count('open')} open</span>
        <span class="badge confirmed">${count('confirmed')} confirmed</span>
        <span class="badge released">${count('released')} released</span>
      </p>
    </div>
    <form class="filters" onSubmit=${onSubmit} aria-label="Filter quarantines">
      <label>State
        <select value=${filters.state} onChange=${(e: Event) => setFilters({ ...filters, state: (e.target as HTMLSelectElement).value })}>
          <option value="">any</option><option value="open">open</option><option value="confirmed">confirmed</option><option value="released">released</option>
        </select></label>
      <label>User <input type="text" value=${draftUser} onInput=${(e: Event) => setDraftUser((e.target as HTMLInputElement).value)} /></label>
      <label>Session type
        <select value=${filters.type} onChange=${(e: Event) => setFilters({ ...filters, type: (e.target as HTMLSelectElement).value })}>
          <option value="">any</option><option value="interactive">interactive</option><option value="batch">batch</option><option value="scheduled">scheduled</option>
        </select></label>
      <button type="submit">Apply</button>
      <button type="button" class="secondary" onClick=${() => void load()}>Refresh</button>
      <span class="muted">${updated === null ? '' : `updated ${utc(updated)}, every 10 s`}</span>
    </form>
    <${ErrorNote} error=${error} />
    ${list === null ? html`<p>Loading…</p>` : sorted.length === 0 ? html`<p class="empty">No quarantines match.</p>` : html`
    <table class="queue">
      <caption class="sr-only">Quarantines, open first, newest first</caption>
      <thead><tr><th scope="col">Quarantine</th><th scope="col">State</th><th scope="col">Age</th><th scope="col">Session</th><th scope="col">User</th><th scope="col">Role</th><th scope="col">Type</th><th scope="col">Top signals</th><th scope="col">Domains</th></tr></thead>
      <tbody>${sorted.map((q) => html`<tr key=${q.id} class=${`row-${q.state}`}>
        <td><${Link} href=${`/ui/quarantines/${encodeURIComponent(q.id)}`}>${q.id}</${Link}>${q.durable ? null : html` <span class="badge warn" title="the store refused the write; held in memory and retried">not saved</span>`}</td>
        <td><span class=${`badge ${q.state}`}>${q.state}</span></td>
        <td title=${q.raised_at}>${age(Date.parse(q.raised_at))}</td>
        <td>${q.session.id}${q.gated_sessions.length > 0 ? html` <span class="muted">+${q.gated_sessions.length} gated</span>` : null}</td>
        <td>${q.session.user}</td><td>${q.session.role}</td><td>${q.session.type}</td>
        <td>${topSignals(q.trigger?.signals).map((s) => html`<span class="signal">${s.id} ${s.value.toFixed(2)}</span> `)}</td>
        <td>${(q.attacker_domains ?? []).join(', ')}</td>
      </tr>`)}</tbody>
    </table>`}
  </section>`;
}

// --- 2. one quarantine

function HistoryTable({ entries, caption }: { entries: readonly HistoryEntry[]; caption: string }) {
  if (entries.length === 0) return html`<p class="empty">None.</p>`;
  return html`<table class="history">
    <caption class="sr-only">${caption}</caption>
    <thead><tr><th scope="col">Time (UTC)</th><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Action</th><th scope="col">Rule</th><th scope="col">Score</th><th scope="col">Reason</th></tr></thead>
    <tbody>${entries.map((e) => html`<tr class=${e.action === 'answer' ? '' : 'blocked'}>
      <td>${utc(e.atMs)}</td><td class="name">${e.name}</td><td>${qtype(e.qtype)}</td>
      <td>${e.action}${e.count !== undefined && e.count > 1 ? ` ×${e.count}` : ''}</td><td>${e.rule}</td><td>${fixed(e.score)}</td><td>${e.action === 'answer' ? '' : e.reason ?? ''}</td>
    </tr>`)}</tbody>
  </table>`;
}

function Timeline({ entries, blockAt }: { entries: readonly HistoryEntry[]; blockAt: number | null }) {
  const ref = useRef<HTMLDivElement>(null);
  const rows = chartRows(entries);
  useEffect(() => {
    if (ref.current === null || rows.length === 0) return undefined;
    const plot: uPlot = drawTimeline(ref.current, rows, blockAt, Math.max(600, Math.min(1200, ref.current.clientWidth || 1100)));
    return () => plot.destroy();
  }, [entries, blockAt]);
  const blocked = rows.filter((r) => r.blocked).length;
  return html`<figure class="timeline">
    <div ref=${ref} class="chart" role="img" aria-label=${`Scores of ${rows.length} queries over time: ${rows.length - blocked} answered, ${blocked} blocked; threshold ${blockAt ?? 'unknown'}`}></div>
    <figcaption>${rows.length} queries: ${rows.length - blocked} answered (green), ${blocked} blocked (red); dashed line: the ${blockAt === null ? '' : `${blockAt} `}threshold of this session type. Queries that were not scored are drawn at 0.</figcaption>
  </figure>`;
}

function Decision({ detail, onDone }: { detail: QuarantineDetail; onDone: (message: string) => void }) {
  const q = detail.quarantine;
  const [reason, setReason] = useState('');
  const [deny, setDeny] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const decide = async (verb: 'release' | 'confirm'): Promise<void> => {
    if (reason.trim() === '') {
      setError('A reason is required: it goes into the audit log.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const body = verb === 'confirm' ? { reason: reason.trim(), deny_domains: deny } : { reason: reason.trim() };
      const r = await postJson<{ quarantine: { state: string }; denied_domains?: string[] }>(`/v1/quarantines/${encodeURIComponent(q.id)}/${verb}`, body);
      setReason('');
      onDone(`Quarantine ${q.id} is now ${r.quarantine.state}${(r.denied_domains ?? []).length > 0 ? `; denied for everyone: ${r.denied_domains!.join(', ')}` : ''}.`);
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setBusy(false);
    }
  };
  const toggle = (d: string): void => setDeny(deny.includes(d) ? deny.filter((x) => x !== d) : [...deny, d]);
  return html`<section class="decision" aria-labelledby="decide-title">
    <h2 id="decide-title">Decision</h2>
    <label for="reason">Reason (recorded in the audit log)</label>
    <textarea id="reason" rows="3" maxlength="1000" required value=${reason} onInput=${(e: Event) => setReason((e.target as HTMLTextAreaElement).value)}></textarea>
    ${q.state === 'open' && detail.attacker_domains.length > 0 ? html`<fieldset>
      <legend>With a confirmation, also deny for every session:</legend>
      ${detail.attacker_domains.map((d) => html`<label class="check"><input type="checkbox" checked=${deny.includes(d)} onChange=${() => toggle(d)} /> ${d}</label>`)}
    </fieldset>` : null}
    <div class="buttons">
      <button type="button" disabled=${busy} onClick=${() => void decide('release')}>Release</button>
      ${q.state === 'open' ? html`<button type="button" class="danger" disabled=${busy} onClick=${() => void decide('confirm')}>Confirm</button>` : null}
    </div>
    <${ErrorNote} error=${error} />
  </section>`;
}

function QuarantineView({ id, caller }: { id: string; caller: Caller }) {
  const [detail, setDetail] = useState<QuarantineDetail | null>(null);
  const [audit, setAudit] = useState<AuditEntry[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const load = async (): Promise<void> => {
    try {
      const [d, a] = await Promise.all([getJson<QuarantineDetail>(`/v1/quarantines/${encodeURIComponent(id)}`), getJson<{ audit: AuditEntry[] }>('/v1/audit?limit=5000')]);
      setDetail(d);
      setAudit(a.audit.filter((e) => e.target === id));
      setError(null);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => {
    setDetail(null);
    void load();
    const timer = setInterval(() => void load(), 15_000);
    return () => clearInterval(timer);
  }, [id]);
  if (detail === null) return html`<section><h1>Quarantine ${id}</h1>${error === null ? html`<p>Loading…</p>` : html`<${ErrorNote} error=${error} />`}</section>`;
  const q = detail.quarantine;
  const t = q.evidence.trigger;
  const triggerEntry: HistoryEntry = { atMs: t.atMs ?? Date.parse(q.raised_at), name: t.name, qtype: t.qtype ?? 0, action: t.action ?? 'quarantine', rule: t.rule, rcode: 3, enforced: true, reason: t.reason, ...(t.score !== undefined ? { score: t.score } : {}), ...(t.eventId !== undefined ? { eventId: t.eventId } : {}) };
  const before = q.evidence.recent.filter((e) => e.eventId === undefined || e.eventId !== t.eventId);
  const timeline = [...before, triggerEntry, ...detail.history_since_raised];
  return html`<article aria-labelledby="q-title">
    <p><${Link} href="/ui/">← Quarantines</${Link}></p>
    <div class="title-row">
      <h1 id="q-title">Quarantine ${q.id}</h1>
      <span class=${`badge big ${q.state}`}>${q.state}</span>
      ${q.durable ? null : html`<span class="badge warn">not saved yet (retrying)</span>`}
    </div>
    ${notice === null ? null : html`<p class="notice" role="status">${notice}</p>`}
    <${ErrorNote} error=${error} />
    <div class="grid">
      <section aria-labelledby="who-title" class="card">
        <h2 id="who-title">Session and who it acts for</h2>
        <dl>
          <dt>Session</dt><dd>${q.session.id}</dd>
          <dt>User</dt><dd>${q.session.user}</dd>
          <dt>Role</dt><dd>${q.session.role}</dd>
          <dt>Session type</dt><dd>${q.session.type}</dd>
          <dt>Addresses</dt><dd>${q.session.addresses.join(', ')}</dd>
          <dt>Raised</dt><dd>${utc(Date.parse(q.raised_at))} (${age(Date.parse(q.raised_at))} ago)</dd>
          ${q.decided_by === null ? null : html`<dt>Decided</dt><dd>${q.state} by ${q.decided_by} at ${utc(Date.parse(q.decided_at!))}: ${q.decision_reason}</dd>`}
        </dl>
        ${q.gated_sessions.length === 0 ? null : html`<h3>Also held (registered later, same address or user)</h3><ul>${q.gated_sessions.map((g) => html`<li>${g.id} (${g.user}, ${g.addresses.join(', ')}; same ${g.matched})</li>`)}</ul>`}
      </section>
      <section aria-labelledby="trigger-title" class="card">
        <h2 id="trigger-title">Trigger</h2>
        <dl>
          <dt>Query</dt><dd class="name" id="trigger-name">${t.name}</dd>
          <dt>Type</dt><dd>${qtype(t.qtype)}</dd>
          <dt>Rule</dt><dd>${t.rule}</dd>
          <dt>Score</dt><dd>${fixed(t.score)}${detail.block_at === null ? '' : ` (threshold ${detail.block_at})`}</dd>
          <dt>Why</dt><dd>${t.reason}</dd>
          <dt>Domains</dt><dd>${detail.attacker_domains.length === 0 ? 'none qualifies for the deny list' : detail.attacker_domains.join(', ')}</dd>
        </dl>
      </section>
    </div>
    ${(t.signals ?? []).length === 0 ? null : html`<section aria-labelledby="signals-title">
      <h2 id="signals-title">Signals</h2>
      <table class="signals">
        <thead><tr><th scope="col">Signal</th><th scope="col">Value</th><th scope="col">Weight</th><th scope="col">Contribution</th><th scope="col">Reason</th></tr></thead>
        <tbody>${topSignals(t.signals, 99).map((s) => html`<tr><td>${s.id}</td><td>${s.value.toFixed(2)}</td><td>${s.weight.toFixed(2)}</td><td>${(s.value * s.weight).toFixed(3)}</td><td>${s.reason}</td></tr>`)}</tbody>
      </table>
    </section>`}
    <section aria-labelledby="timeline-title">
      <h2 id="timeline-title">Timeline</h2>
      <${Timeline} entries=${timeline} blockAt=${detail.block_at} />
    </section>
    ${canDecide(caller) && q.state !== 'released' ? html`<${Decision} detail=${detail} onDone=${(m: string) => { setNotice(m); void load(); }} />` : null}
    <section aria-labelledby="before-title">
      <h2 id="before-title">Queries before the quarantine</h2>
      <${HistoryTable} entries=${[...before, triggerEntry]} caption="Queries before the quarantine, oldest first" />
    </section>
    <section aria-labelledby="since-title">
      <h2 id="since-title">Queries since</h2>
      <${HistoryTable} entries=${detail.history_since_raised} caption="Queries since the quarantine, oldest first" />
    </section>
    <section aria-labelledby="audit-title">
      <h2 id="audit-title">Audit</h2>
      ${audit.length === 0 ? html`<p class="empty">No decision yet.</p>` : html`<table class="audit">
        <thead><tr><th scope="col">Time (UTC)</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Reason</th></tr></thead>
        <tbody>${audit.map((a) => html`<tr><td>${utc(a.atMs)}</td><td>${a.actor}</td><td>${a.action}</td><td>${a.reason}</td></tr>`)}</tbody>
      </table>`}
    </section>
  </article>`;
}

// --- 3. the query log

const FILTER_KEYS = ['name', 'session', 'user', 'verdict', 'since', 'until', 'limit'] as const;
type QueryFilters = Record<(typeof FILTER_KEYS)[number], string>;

const toLocalInput = (iso: string): string => {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return '';
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
};

function QueryLogView() {
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
          <option value="failed">failed</option>
        </select></label>
      ${field('since', 'Since', 'datetime-local')}
      ${field('until', 'Until', 'datetime-local')}
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
        <td>${utc(Date.parse(r.time))}</td><td>${r.session}</td><td>${r.user}</td><td>${r.session_type}</td><td>${r.result}</td><td>${r.rule}</td><td>${fixed(r.score)}</td><td>${qtype(r.qtype)}</td><td class="name">${r.name}</td>
      </tr>`)}</tbody>
    </table>`}
  </section>`;
}

// --- 4. sessions

function SessionsView() {
  const [list, setList] = useState<LiveSession[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = async (): Promise<void> => {
    try {
      setList((await getJson<{ sessions: LiveSession[] }>('/v1/sessions')).sessions);
      setError(null);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), 10_000);
    return () => clearInterval(timer);
  }, []);
  return html`<section aria-labelledby="s-title">
    <h1 id="s-title">Live sessions</h1>
    <${ErrorNote} error=${error} />
    ${list === null ? html`<p>Loading…</p>` : html`<table class="sessions">
      <thead><tr><th scope="col">Session</th><th scope="col">User</th><th scope="col">Role</th><th scope="col">Type</th><th scope="col">Origin</th><th scope="col">Addresses</th><th scope="col">Expires</th><th scope="col">Quarantine</th><th scope="col">Queries</th></tr></thead>
      <tbody>${list.map((s) => html`<tr>
        <td>${s.id}</td><td>${s.user}</td><td>${s.role}</td><td>${s.type}</td><td>${s.origin ?? ''}</td><td>${s.addresses.join(', ')}</td>
        <td>${s.expires_at === null ? 'never' : utc(Date.parse(s.expires_at))}</td>
        <td>${s.quarantine === null ? '' : html`<${Link} href=${`/ui/quarantines/${encodeURIComponent(s.quarantine)}`}>${s.quarantine}</${Link}>`}</td>
        <td><${Link} href=${`/ui/queries?session=${encodeURIComponent(s.id)}&limit=200`} label=${`queries of ${s.id}`}>queries</${Link}></td>
      </tr>`)}</tbody>
    </table>`}
  </section>`;
}

// --- the frame

function route(path: string, caller: Caller) {
  const pathname = path.split('?')[0]!;
  const m = /^\/ui\/quarantines\/([^/]+)$/.exec(pathname);
  if (m !== null) return html`<${QuarantineView} key=${m[1]} id=${decodeURIComponent(m[1]!)} caller=${caller} />`;
  if (pathname === '/ui/queries') return html`<${QueryLogView} />`;
  if (pathname === '/ui/sessions') return html`<${SessionsView} />`;
  return html`<${Queue} />`;
}

function App() {
  const [caller, setCaller] = useState<Caller | null>(null);
  const [checking, setChecking] = useState(storedToken() !== undefined);
  const [authError, setAuthError] = useState('');
  const [path, setPath] = useState(location.pathname + location.search);
  setPathGlobal = setPath;

  const signOut = (why = ''): void => {
    forgetToken();
    setCaller(null);
    setAuthError(why);
  };
  const verify = async (): Promise<void> => {
    setChecking(true);
    try {
      setCaller(await getJson<Caller>('/v1/whoami'));
      setAuthError('');
    } catch (e) {
      signOut(e instanceof ApiError && e.status === 401 ? 'That token was not accepted.' : `Cannot reach the API: ${messageOf(e)}`);
    } finally {
      setChecking(false);
    }
  };
  useEffect(() => {
    whenUnauthorized(() => signOut('The server no longer accepts this token. Sign in again.'));
    const onPop = (): void => setPath(location.pathname + location.search);
    window.addEventListener('popstate', onPop);
    if (storedToken() !== undefined) void verify();
    return () => window.removeEventListener('popstate', onPop);
  }, []);

  if (caller === null) {
    if (checking) return html`<main id="main"><p>Signing in…</p></main>`;
    return html`<${Login} error=${authError} onToken=${(t: string) => { storeToken(t); void verify(); }} />`;
  }
  const here = path.split('?')[0]!;
  const nav = (href: string, label: string, active: boolean) => html`<li><${Link} href=${href} class=${active ? 'active' : ''}>${label}</${Link}></li>`;
  return html`<div>
    <a class="skip" href="#main">Skip to content</a>
    <header>
      <span class="brand">dnswarden</span>
      <nav aria-label="Views"><ul>
        ${nav('/ui/', 'Quarantines', here === '/ui/' || here.startsWith('/ui/quarantines'))}
        ${nav('/ui/queries', 'Query log', here === '/ui/queries')}
        ${nav('/ui/sessions', 'Sessions', here === '/ui/sessions')}
      </ul></nav>
      <span class="who">${caller.name} <span class="badge">${caller.kind}</span></span>
      <button type="button" class="secondary" onClick=${() => signOut()}>Sign out</button>
    </header>
    <main id="main" tabindex="-1">${route(path, caller)}</main>
  </div>`;
}

takeTokenFromFragment();
render(html`<${App} />`, document.getElementById('app')!);
