// The analyst console: a single page served by the admin listener under /ui/. It holds no data of its own:
// every view is drawn from the admin API, called with the token the analyst gave (sessionStorage only).
// This module is the frame (login, navigation, routing), the queue and the sessions; the quarantine, the
// query log and the overview are views of their own. Never decides anything itself.
import { html, render } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import {
  ApiError, forgetToken, getJson, storeToken, storedToken, takeTokenFromFragment, whenUnauthorized,
  type Caller, type LiveSession, type QuarantineSummary,
} from './api.js';
import { QuarantineView } from './quarantine.js';
import { QueryLogView } from './query-log-view.js';
import { OverviewView } from './overview.js';
import { age, ErrorNote, Link, messageOf, onNavigate, topSignals, utc } from './ui.js';

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
  if (pathname === '/ui/overview') return html`<${OverviewView} />`;
  return html`<${Queue} />`;
}

function App() {
  const [caller, setCaller] = useState<Caller | null>(null);
  const [checking, setChecking] = useState(storedToken() !== undefined);
  const [authError, setAuthError] = useState('');
  const [path, setPath] = useState(location.pathname + location.search);
  onNavigate(setPath);

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
        ${nav('/ui/overview', 'Overview', here === '/ui/overview')}
      </ul></nav>
      <span class="who">${caller.name} <span class="badge">${caller.kind}</span></span>
      <button type="button" class="secondary" onClick=${() => signOut()}>Sign out</button>
    </header>
    <main id="main" tabindex="-1">${route(path, caller)}</main>
  </div>`;
}

takeTokenFromFragment();
render(html`<${App} />`, document.getElementById('app')!);

