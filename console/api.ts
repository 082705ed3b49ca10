// The console's only way to the server: the admin API with the analyst's bearer token. The token lives in
// sessionStorage only (gone when the tab closes), never in a cookie, a query string or the log.
const TOKEN_KEY = 'dnswarden.token';

export function storedToken(): string | undefined {
  return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
}

export function storeToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** A `#token=…` fragment is taken once and removed from the address bar (and from history) at once. */
export function takeTokenFromFragment(): void {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m === null) return;
  storeToken(decodeURIComponent(m[1]!));
  history.replaceState(history.state, '', location.pathname + location.search);
}

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

let onUnauthorized: () => void = () => {};
/** What to do when the server no longer accepts the token (revoked, rotated): back to the login form. */
export function whenUnauthorized(f: () => void): void {
  onUnauthorized = f;
}

async function call(method: string, path: string, body?: unknown): Promise<Response> {
  const token = storedToken();
  const headers: Record<string, string> = {};
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, cache: 'no-store', credentials: 'omit', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  if (!res.ok) {
    let code = 'ERR_HTTP';
    let message = `${res.status} ${res.statusText}`;
    try {
      const j = (await res.json()) as { error?: { code?: string; message?: string } };
      code = j.error?.code ?? code;
      message = j.error?.message ?? message;
    } catch {
      // not JSON: keep the status line
    }
    if (res.status === 401 && path !== '/v1/whoami') onUnauthorized();
    throw new ApiError(res.status, code, message);
  }
  return res;
}

export async function getJson<T>(path: string): Promise<T> {
  return (await (await call('GET', path)).json()) as T;
}

export async function postJson<T>(path: string, body: unknown): Promise<T> {
  return (await (await call('POST', path, body)).json()) as T;
}

export async function getText(path: string): Promise<string> {
  return (await call('GET', path)).text();
}

// --- the API's shapes (as src/analyst/routes.ts writes them)

export interface Signal { id: string; value: number; weight: number; reason: string }
export interface Trigger { eventId?: string; atMs?: number; name: string; qtype?: number; action?: string; rule: string; reason: string; score?: number; signals?: Signal[] }
export interface SessionMeta { id: string; user: string; role: string; type: string; addresses: string[]; origin?: string }
export interface HistoryEntry { atMs: number; name: string; qtype: number; action: string; rule: string; rcode: number; enforced: boolean; eventId?: string; score?: number; reason?: string; count?: number; lastAtMs?: number }
export interface GatedSession { id: string; user: string; addresses: string[]; matched: string; gated_at: string }
export interface QuarantineSummary {
  id: string; state: 'open' | 'released' | 'confirmed'; session: SessionMeta; raised_at: string; durable: boolean;
  gated_sessions: GatedSession[]; decided_at: string | null; decided_by: string | null; decision_reason: string | null;
  trigger: Trigger | null; attacker_domains?: string[];
}
export interface QuarantineDetail {
  quarantine: Omit<QuarantineSummary, 'trigger'> & { evidence: { trigger: Trigger; recent: HistoryEntry[] } };
  history_since_raised: HistoryEntry[];
  attacker_domains: string[];
  block_at: number | null;
}
export interface AuditEntry { id: number; atMs: number; actor: string; action: string; target: string; reason: string; detail: unknown }
export interface QueryRow { time: string; name: string; qtype: number; session: string; user: string; role: string; session_type: string; result: string; action: string; rule: string; rcode: number; score: number | null; count: number; last_time: string }
export interface LiveSession extends SessionMeta { expires_at: string | null; registered_at: string; quarantine: string | null }
export interface Caller { name: string; kind: 'admin' | 'analyst' | 'viewer' | 'runtime' }
