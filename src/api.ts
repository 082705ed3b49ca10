// The admin API's routes: what each endpoint does, which token kinds may call it, and how the
// result is shaped. Handlers call into sessions, quarantines and the store; they decide nothing
// about queries. Analyst actions are audited in the same transaction as the change.
import { WardenError } from './errors.js';
import type { Route } from './admin.js';
import type { QuarantineBook } from './quarantine.js';
import type { HistoryEntry, Session, SessionDirectory, SessionMeta } from './sessions.js';
import type { QuarantineRecord, QuarantineState, Store } from './store.js';
import type { Metrics } from './telemetry.js';
import type { SessionState } from './policy.js';

export interface ApiDeps {
  readonly sessions: SessionDirectory<SessionState>;
  readonly quarantines: QuarantineBook;
  readonly store: Store;
  readonly metrics: Metrics;
  readonly nowMs: () => number;
  readonly historyLimit: number;
  /** Registrable domains the quarantine's evidence points at (for confirm --deny). */
  readonly attackerDomains: (q: QuarantineRecord) => string[];
  /** Re-reads the learned deny list into the policy after a change. */
  readonly learnedDenyChanged: () => void;
  readonly flushCache: () => void;
  /** With server.workers > 1: a session's live history gathered from every worker (this one holds only its own). */
  readonly liveHistory?: (id: string) => Promise<readonly HistoryEntry[]>;
}

const READ = ['admin', 'analyst', 'viewer'] as const;
const DECIDE = ['admin', 'analyst'] as const;
const REGISTER = ['admin', 'runtime'] as const;

function sessionJson(s: SessionMeta, d: ApiDeps): object {
  return {
    id: s.id, user: s.user, role: s.role, type: s.type, addresses: s.addresses, origin: s.origin,
    expires_at: Number.isFinite(s.expiresAtMs) ? new Date(s.expiresAtMs).toISOString() : null,
    registered_at: new Date(s.registeredAtMs).toISOString(),
    quarantine: d.quarantines.holds(s.id) ?? null,
  };
}

function quarantineJson(q: QuarantineRecord, withEvidence: boolean): object {
  return {
    id: q.id, state: q.state, session: q.session, raised_at: new Date(q.raisedAtMs).toISOString(),
    decided_at: q.decidedAtMs === undefined ? null : new Date(q.decidedAtMs).toISOString(),
    decided_by: q.decidedBy ?? null, decision_reason: q.decisionReason ?? null,
    ...(withEvidence ? { evidence: q.evidence } : { trigger: (q.evidence as { trigger?: unknown }).trigger ?? null }),
  };
}

function reasonOf(body: unknown): string {
  const reason = (body as { reason?: unknown } | undefined)?.reason;
  if (typeof reason !== 'string' || reason.trim() === '') throw new WardenError('ERR_BAD_REQUEST', 'body must be JSON with a non-empty "reason" string');
  return reason.trim().slice(0, 1000);
}

function timeParam(query: URLSearchParams, key: string): number | undefined {
  const raw = query.get(key);
  if (raw === null) return undefined;
  const ms = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isFinite(ms)) throw new WardenError('ERR_BAD_REQUEST', `query parameter "${key}" must be an ISO time or epoch ms`);
  return ms;
}

/** A session's recent queries: the live ring (memory is ahead of the store), else what the store kept. */
async function historyOf(d: ApiDeps, id: string): Promise<readonly HistoryEntry[] | undefined> {
  const live = d.sessions.get(id);
  if (live !== undefined) return d.liveHistory === undefined ? live.history : d.liveHistory(id);
  const stored = d.store.history(id);
  return stored.length > 0 ? stored : undefined;
}

function getSession(d: ApiDeps, id: string): Session<SessionState> {
  const s = d.sessions.get(id);
  if (s === undefined) throw new WardenError('ERR_NOT_FOUND', `no session with id "${id}"`);
  return s;
}

export function apiRoutes(d: ApiDeps, metricsText: () => Promise<string>): Route[] {
  return [
    { method: 'GET', path: '/healthz', allow: [], handler: () => ({ status: 200, json: { status: 'ok' } }) },
    { method: 'GET', path: '/metrics', allow: READ, handler: async () => ({ status: 200, text: await metricsText(), contentType: d.metrics.registry.contentType }) },

    // --- sessions
    {
      method: 'POST', path: '/v1/sessions', allow: REGISTER,
      handler: async (req) => {
        const token = (req.body as { token?: unknown } | undefined)?.token;
        if (typeof token !== 'string') throw new WardenError('ERR_BAD_REQUEST', 'body must be JSON with a "token" string (the signed registration JWT)');
        try {
          const session = await d.sessions.register(token, d.nowMs());
          d.metrics.registrations.inc({ result: 'ok' });
          d.metrics.sessionsLive.set(d.sessions.liveCount(d.nowMs()));
          return { status: 201, json: { session: sessionJson(session, d) } };
        } catch (err) {
          d.metrics.registrations.inc({ result: err instanceof WardenError ? err.code.toLowerCase().replace(/^err_/, '') : 'error' });
          throw err;
        }
      },
    },
    {
      method: 'DELETE', path: '/v1/sessions/:id', allow: REGISTER,
      handler: (req) => {
        if (!d.sessions.deregister(req.params.id!, d.nowMs())) throw new WardenError('ERR_NOT_FOUND', `no registered session with id "${req.params.id}"`);
        d.metrics.sessionsLive.set(d.sessions.liveCount(d.nowMs()));
        return { status: 204 };
      },
    },
    { method: 'GET', path: '/v1/sessions', allow: READ, handler: () => ({ status: 200, json: { sessions: d.sessions.list().map((s) => sessionJson(s, d)) } }) },
    { method: 'GET', path: '/v1/sessions/:id', allow: READ, handler: (req) => ({ status: 200, json: { session: sessionJson(getSession(d, req.params.id!), d) } }) },
    {
      method: 'GET', path: '/v1/sessions/:id/queries', allow: READ,
      handler: async (req) => {
        const id = req.params.id!;
        const limit = Math.min(Number(req.query.get('limit') ?? d.historyLimit) || d.historyLimit, d.historyLimit);
        const history = await historyOf(d, id);
        if (history === undefined) throw new WardenError('ERR_NOT_FOUND', `no session or history with id "${id}"`);
        return { status: 200, json: { session: id, queries: history.slice(-limit) } };
      },
    },

    // --- quarantines
    {
      method: 'GET', path: '/v1/quarantines', allow: READ,
      handler: (req) => {
        const state = req.query.get('state');
        if (state !== null && !['open', 'released', 'confirmed'].includes(state)) throw new WardenError('ERR_BAD_REQUEST', 'state must be open, released or confirmed');
        const sinceMs = timeParam(req.query, 'since');
        const untilMs = timeParam(req.query, 'until');
        let list = d.store.listQuarantines({
          ...(state !== null ? { state: state as QuarantineState } : {}),
          ...(sinceMs !== undefined ? { sinceMs } : {}),
          ...(untilMs !== undefined ? { untilMs } : {}),
        });
        const user = req.query.get('user');
        const type = req.query.get('session_type');
        if (user !== null) list = list.filter((q) => q.session.user === user);
        if (type !== null) list = list.filter((q) => q.session.type === type);
        return { status: 200, json: { quarantines: list.map((q) => quarantineJson(q, false)) } };
      },
    },
    {
      method: 'GET', path: '/v1/quarantines/:id', allow: READ,
      handler: async (req) => {
        const q = d.store.getQuarantine(req.params.id!);
        if (q === undefined) throw new WardenError('ERR_NOT_FOUND', `no quarantine with id "${req.params.id}"`);
        // The session's history around the quarantine: before it (in the evidence) and after it.
        const after = ((await historyOf(d, q.sessionId)) ?? []).filter((e) => e.atMs > q.raisedAtMs);
        return { status: 200, json: { quarantine: quarantineJson(q, true), history_since_raised: after, attacker_domains: d.attackerDomains(q) } };
      },
    },
    {
      method: 'POST', path: '/v1/quarantines/:id/release', allow: DECIDE,
      handler: (req) => {
        const q = d.quarantines.release(req.params.id!, req.caller.name, reasonOf(req.body));
        return { status: 200, json: { quarantine: quarantineJson(q, false) } };
      },
    },
    {
      method: 'POST', path: '/v1/quarantines/:id/confirm', allow: DECIDE,
      handler: (req) => {
        const reason = reasonOf(req.body);
        const deny = (req.body as { deny_domains?: unknown }).deny_domains === true;
        const existing = d.store.getQuarantine(req.params.id!);
        const domains = deny && existing !== undefined ? d.attackerDomains(existing) : [];
        const q = d.quarantines.confirm(req.params.id!, req.caller.name, reason, { denied_domains: domains });
        if (domains.length > 0) {
          const nowMs = d.nowMs();
          for (const domain of domains) {
            d.store.addLearnedDeny(domain, nowMs, req.caller.name, q.id, reason);
            d.store.audit({ atMs: nowMs, actor: req.caller.name, action: 'deny.add', target: domain, reason, detail: { quarantine: q.id } });
          }
          d.learnedDenyChanged();
        }
        return { status: 200, json: { quarantine: quarantineJson(q, false), denied_domains: domains } };
      },
    },

    // --- learned deny list
    { method: 'GET', path: '/v1/deny', allow: READ, handler: () => ({ status: 200, json: { domains: d.store.listLearnedDeny() } }) },
    {
      method: 'POST', path: '/v1/deny', allow: DECIDE,
      handler: (req) => {
        const domain = (req.body as { domain?: unknown }).domain;
        if (typeof domain !== 'string' || !/^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/i.test(domain)) throw new WardenError('ERR_BAD_REQUEST', 'body must have "domain": a registrable domain such as "example.com"');
        const reason = reasonOf(req.body);
        const nowMs = d.nowMs();
        d.store.addLearnedDeny(domain.toLowerCase(), nowMs, req.caller.name, null, reason);
        d.store.audit({ atMs: nowMs, actor: req.caller.name, action: 'deny.add', target: domain.toLowerCase(), reason, detail: {} });
        d.learnedDenyChanged();
        return { status: 201, json: { domain: domain.toLowerCase() } };
      },
    },
    {
      method: 'DELETE', path: '/v1/deny/:domain', allow: DECIDE,
      handler: (req) => {
        const domain = req.params.domain!.toLowerCase();
        if (!d.store.removeLearnedDeny(domain)) throw new WardenError('ERR_NOT_FOUND', `"${domain}" is not on the learned deny list`);
        d.store.audit({ atMs: d.nowMs(), actor: req.caller.name, action: 'deny.remove', target: domain, reason: req.query.get('reason') ?? '', detail: {} });
        d.learnedDenyChanged();
        return { status: 204 };
      },
    },

    { method: 'GET', path: '/v1/audit', allow: READ, handler: (req) => ({ status: 200, json: { audit: d.store.listAudit(Math.min(Number(req.query.get('limit') ?? 500) || 500, 5000)) } }) },
    {
      method: 'POST', path: '/v1/cache/flush', allow: ['admin'],
      handler: (req) => {
        d.flushCache();
        d.store.audit({ atMs: d.nowMs(), actor: req.caller.name, action: 'cache.flush', target: '*', reason: '', detail: {} });
        return { status: 204 };
      },
    },
  ];
}
