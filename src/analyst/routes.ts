// The admin API's routes: what each endpoint does, which token kinds may call it, and how the
// result is shaped. Handlers call into sessions, quarantines and the store; they decide nothing
// about queries. Analyst actions are audited in the same transaction as the change.
import { createHash } from 'node:crypto';
import { getPublicSuffix } from 'tldts';
import { WardenError } from '../errors.js';
import { readiness, type ReadinessCheck, type Route } from '../ops/admin-http.js';
import type { QuarantineBook } from './quarantine.js';
import type { HistoryEntry, Session, SessionDirectory, SessionMeta } from '../sessions/directory.js';
import type { QuarantineRecord, QuarantineState, Store } from '../store.js';
import type { Metrics } from '../ops/telemetry.js';
import type { SessionState } from '../policy/judge.js';
import { renderRpz, type RpzExportEntry } from '../zones/rpz.js';

/** The origin of the exported response policy zone (GET /v1/rpz); other resolvers load it under this name. */
export const RPZ_EXPORT_ORIGIN = 'dnswarden.rpz';
import { queryLogCsv, queryLogJson, queryLogJsonl, QUERY_LOG_MAX_LIMIT, type QueryLog } from './query-log.js';

export interface ApiDeps {
  readonly sessions: SessionDirectory<SessionState>;
  readonly quarantines: QuarantineBook;
  readonly store: Store;
  readonly metrics: Metrics;
  readonly nowMs: () => number;
  readonly historyLimit: number;
  /** Registrable domains the quarantine's evidence points at (for confirm --deny). */
  readonly attackerDomains: (q: QuarantineRecord) => string[];
  /**
   * Re-reads the learned deny list into the policy after a change (made in the store): the domains added, and
   * those removed with when (later than the entry's own time, so the removal is the newer change everywhere).
   */
  readonly learnedDenyChanged: (change: { readonly added: readonly string[]; readonly removed: readonly { readonly domain: string; readonly atMs: number }[] }) => void;
  readonly flushCache: () => void;
  /** With server.workers > 1: a session's live history gathered from every worker (this one holds only its own). */
  readonly liveHistory?: (id: string) => Promise<readonly HistoryEntry[]>;
  /** What GET /readyz evaluates (listeners, upstreams, store, …). */
  readonly readinessChecks: readonly ReadinessCheck[];
  /** With server.workers > 1: the quarantines every worker holds in memory only (this one knows only its own). */
  readonly notDurable?: () => Promise<QuarantineRecord[]>;
  /** The session type's score threshold now (drawn as the line on the console's chart). */
  readonly blockAt?: (sessionType: string) => number | undefined;
  /** The searchable query log; absent when query_log.enabled is false. */
  readonly queryLog?: QueryLog;
  /** A name's registrable domain (for the overview's top blocked domains). */
  readonly registrable?: (name: string) => string | undefined;
  /** The configured deny list as it runs now (policy.deny, and the public resolvers when denied), for GET /v1/rpz. */
  readonly configuredDeny: () => readonly RpzExportEntry[];
}

/** The deny list and the learned deny list as one RPZ zone; its serial rises whenever their content changes. */
function exportedRpz(d: ApiDeps): string {
  const byDomain = new Map<string, RpzExportEntry>();
  for (const e of d.configuredDeny()) byDomain.set(e.domain, e);
  for (const e of d.store.listLearnedDeny()) {
    if (!byDomain.has(e.domain)) byDomain.set(e.domain, { domain: e.domain, reason: e.quarantineId === null ? `learned deny, added by ${e.addedBy}: ${e.reason}` : `learned deny, confirmed quarantine ${e.quarantineId}` });
  }
  const entries = [...byDomain.values()].sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0));
  const digest = createHash('sha256').update(JSON.stringify(entries)).digest('hex');
  return renderRpz(RPZ_EXPORT_ORIGIN, d.store.rpzExportSerial(digest), entries);
}

/** Quarantines the store refused to write, held in memory (every worker's) and being retried. */
async function notDurableOf(d: ApiDeps): Promise<QuarantineRecord[]> {
  return d.notDurable === undefined ? d.quarantines.notDurable() : d.notDurable();
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

function quarantineJson(q: QuarantineRecord, withEvidence: boolean, d: ApiDeps, durable = d.quarantines.isDurable(q.id)): object {
  return {
    id: q.id, state: q.state, session: q.session, raised_at: new Date(q.raisedAtMs).toISOString(),
    // false: the store refused the write; it holds in memory and the write is being retried.
    durable,
    // Sessions registered later that share its address or user, held under this same quarantine.
    gated_sessions: d.store.gatesOf(q.id).map((g) => ({ id: g.sessionId, user: g.session.user, addresses: g.session.addresses, matched: g.matched, gated_at: new Date(g.atMs).toISOString() })),
    decided_at: q.decidedAtMs === undefined ? null : new Date(q.decidedAtMs).toISOString(),
    decided_by: q.decidedBy ?? null, decision_reason: q.decisionReason ?? null,
    ...(withEvidence ? { evidence: q.evidence } : { trigger: q.evidence.trigger }),
  };
}

/** A request body as a JSON object: `null`, an array or a bare value is a 400, not a TypeError (500). */
function objectBody(body: unknown, what: string): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new WardenError('ERR_BAD_REQUEST', `body must be a JSON object with ${what}`);
  return body as Record<string, unknown>;
}

/**
 * A domain an analyst may deny by hand: a name with at least two labels that is not itself a public
 * suffix (ICANN section: "co.uk" would block every .co.uk name for everyone).
 */
function denyableDomain(value: unknown): string {
  if (typeof value !== 'string' || !/^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/i.test(value)) throw new WardenError('ERR_BAD_REQUEST', 'body must have "domain": a registrable domain such as "example.com"');
  const domain = value.toLowerCase();
  if (getPublicSuffix(domain) === domain) throw new WardenError('ERR_BAD_REQUEST', `"${domain}" is a public suffix: denying it would block every domain under it; name a registrable domain such as "example.${domain}"`);
  return domain;
}

function reasonOf(body: unknown): string {
  const reason = objectBody(body, 'a non-empty "reason" string').reason;
  if (typeof reason !== 'string' || reason.trim() === '') throw new WardenError('ERR_BAD_REQUEST', 'body must be JSON with a non-empty "reason" string');
  return reason.trim().slice(0, 1000);
}

/** The domains an analyst chose to deny with a confirmation: a list, each one among the evidence's candidates. */
function chosenDomains(raw: unknown, candidates: readonly string[]): string[] {
  if (raw === undefined || raw === false) return [];
  if (!Array.isArray(raw) || !raw.every((x): x is string => typeof x === 'string')) {
    throw new WardenError('ERR_BAD_REQUEST', `"deny_domains" must list the domains to deny, chosen from this quarantine's candidates (ask with "dry_run": true): ${JSON.stringify(candidates)}`);
  }
  const chosen = [...new Set(raw.map((x) => x.toLowerCase()))];
  const foreign = chosen.filter((x) => !candidates.includes(x));
  if (foreign.length > 0) throw new WardenError('ERR_BAD_REQUEST', `not among this quarantine's exfiltration domains ${JSON.stringify(candidates)}: ${foreign.join(', ')}; nothing changed`);
  return chosen;
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
    // Liveness: the process answers HTTP. Readiness: it can do its job (see ReadinessCheck).
    { method: 'GET', path: '/healthz', allow: [], handler: () => ({ status: 200, json: { status: 'ok' } }) },
    { method: 'GET', path: '/readyz', allow: [], handler: () => readiness(d.readinessChecks) },
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
        return { status: 204 };
      },
    },
    { method: 'GET', path: '/v1/sessions', allow: READ, handler: () => ({ status: 200, json: { sessions: d.sessions.list().map((s) => sessionJson(s, d)) } }) },
    { method: 'GET', path: '/v1/sessions/:id', allow: READ, handler: (req) => ({ status: 200, json: { session: sessionJson(getSession(d, req.params.id!), d) } }) },
    {
      method: 'GET', path: '/v1/sessions/:id/queries', allow: READ,
      handler: async (req) => {
        const id = req.params.id!;
        const limit = Math.max(1, Math.min(Number(req.query.get('limit') ?? d.historyLimit) || d.historyLimit, d.historyLimit));
        const history = await historyOf(d, id);
        if (history === undefined) throw new WardenError('ERR_NOT_FOUND', `no session or history with id "${id}"`);
        return { status: 200, json: { session: id, queries: history.slice(-limit) } };
      },
    },

    // --- quarantines
    {
      method: 'GET', path: '/v1/quarantines', allow: READ,
      handler: async (req) => {
        const state = req.query.get('state');
        if (state !== null && !['open', 'released', 'confirmed'].includes(state)) throw new WardenError('ERR_BAD_REQUEST', 'state must be open, released or confirmed');
        const sinceMs = timeParam(req.query, 'since');
        const untilMs = timeParam(req.query, 'until');
        const filter = {
          ...(state !== null ? { state: state as QuarantineState } : {}),
          ...(sinceMs !== undefined ? { sinceMs } : {}),
          ...(untilMs !== undefined ? { untilMs } : {}),
        };
        // Those the store refused come first: they hold, and are not on disk yet.
        const unsaved = (await notDurableOf(d)).filter((q) => (filter.state === undefined || q.state === filter.state)
          && (filter.sinceMs === undefined || q.raisedAtMs >= filter.sinceMs) && (filter.untilMs === undefined || q.raisedAtMs < filter.untilMs));
        const held = new Set(unsaved.map((q) => q.id));
        let list = [...unsaved, ...d.store.listQuarantines(filter).filter((q) => !held.has(q.id))]; // saved meanwhile: once
        const user = req.query.get('user');
        const type = req.query.get('session_type');
        if (user !== null) list = list.filter((q) => q.session.user === user || d.store.gatesOf(q.id).some((g) => g.session.user === user));
        if (type !== null) list = list.filter((q) => q.session.type === type);
        return { status: 200, json: { quarantines: list.map((q) => ({ ...quarantineJson(q, false, d, !held.has(q.id)), attacker_domains: d.attackerDomains(q) })) } };
      },
    },
    {
      method: 'GET', path: '/v1/quarantines/:id', allow: READ,
      handler: async (req) => {
        const id = req.params.id!;
        const elsewhere = d.quarantines.get(id) === undefined ? (await notDurableOf(d)).find((u) => u.id === id) : undefined;
        const q = d.quarantines.get(id) ?? elsewhere;
        if (q === undefined) throw new WardenError('ERR_NOT_FOUND', `no quarantine with id "${id}"`);
        // The session's history around the quarantine: before it (in the evidence) and after it.
        const after = ((await historyOf(d, q.sessionId)) ?? []).filter((e) => e.atMs > q.raisedAtMs);
        return { status: 200, json: { quarantine: quarantineJson(q, true, d, elsewhere === undefined && d.quarantines.isDurable(id)), history_since_raised: after, attacker_domains: d.attackerDomains(q), block_at: d.blockAt?.(q.session.type) ?? null } };
      },
    },
    {
      method: 'POST', path: '/v1/quarantines/:id/release', allow: DECIDE,
      handler: (req) => {
        const q = d.quarantines.release(req.params.id!, req.caller.name, reasonOf(req.body));
        return { status: 200, json: { quarantine: quarantineJson(q, false, d) } };
      },
    },
    {
      // The deny list is shown first (dry_run: true changes nothing) and only the domains the analyst lists in
      // deny_domains are denied, in the same transaction as the confirmation and their audit rows.
      method: 'POST', path: '/v1/quarantines/:id/confirm', allow: DECIDE,
      handler: (req) => {
        const body = objectBody(req.body, '"reason" (or "dry_run": true)') as { deny_domains?: unknown; dry_run?: unknown };
        const existing = d.quarantines.get(req.params.id!);
        if (existing === undefined) throw new WardenError('ERR_NOT_FOUND', `no quarantine with id "${req.params.id}"`);
        const candidates = d.attackerDomains(existing);
        if (body.dry_run === true) return { status: 200, json: { dry_run: true, quarantine: quarantineJson(existing, false, d), deny_candidates: candidates } };
        const reason = reasonOf(req.body);
        const domains = chosenDomains(body.deny_domains, candidates);
        const actor = req.caller.name;
        const q = d.quarantines.confirm(existing.id, actor, reason, { denied_domains: domains }, (nowMs) => {
          for (const domain of domains) {
            d.store.addLearnedDeny(domain, nowMs, actor, existing.id, reason);
            d.store.audit({ atMs: nowMs, actor, action: 'deny.add', target: domain, reason, detail: { quarantine: existing.id } });
          }
        });
        if (domains.length > 0) d.learnedDenyChanged({ added: domains, removed: [] });
        return { status: 200, json: { quarantine: quarantineJson(q, false, d), denied_domains: domains } };
      },
    },

    // --- the deny lists as a Response Policy Zone other resolvers can load (BIND, Unbound, PowerDNS)
    { method: 'GET', path: '/v1/rpz', allow: READ, handler: () => ({ status: 200, text: exportedRpz(d), contentType: 'text/dns' }) },

    // --- learned deny list
    { method: 'GET', path: '/v1/deny', allow: READ, handler: () => ({ status: 200, json: { domains: d.store.listLearnedDeny() } }) },
    {
      method: 'POST', path: '/v1/deny', allow: DECIDE,
      handler: (req) => {
        const domain = denyableDomain(objectBody(req.body, '"domain" and "reason"').domain);
        const reason = reasonOf(req.body);
        const nowMs = d.nowMs();
        d.store.transaction(() => {
          d.store.addLearnedDeny(domain, nowMs, req.caller.name, null, reason);
          d.store.audit({ atMs: nowMs, actor: req.caller.name, action: 'deny.add', target: domain, reason, detail: {} });
        });
        d.learnedDenyChanged({ added: [domain], removed: [] });
        return { status: 201, json: { domain } };
      },
    },
    {
      method: 'DELETE', path: '/v1/deny/:domain', allow: DECIDE,
      handler: (req) => {
        const domain = req.params.domain!.toLowerCase();
        let atMs = d.nowMs();
        d.store.transaction(() => {
          const entry = d.store.learnedDenyEntry(domain);
          if (entry === undefined || !d.store.removeLearnedDeny(domain)) throw new WardenError('ERR_NOT_FOUND', `"${domain}" is not on the learned deny list`);
          // Later than the entry it removes, even within the same millisecond (the later change wins fleet-wide).
          atMs = Math.max(atMs, entry.addedAtMs + 1);
          d.store.audit({ atMs, actor: req.caller.name, action: 'deny.remove', target: domain, reason: req.query.get('reason') ?? '', detail: {} });
        });
        d.learnedDenyChanged({ added: [], removed: [{ domain, atMs }] });
        return { status: 204 };
      },
    },

    // Who the caller is (the console shows the analyst's name and hides what the token may not do).
    { method: 'GET', path: '/v1/whoami', allow: [...READ, 'runtime'], handler: (req) => ({ status: 200, json: { name: req.caller.name, kind: req.caller.kind } }) },

    // --- the query log: "who resolved X?" across live and ended sessions
    {
      method: 'GET', path: '/v1/queries', allow: READ,
      handler: async (req) => {
        if (d.queryLog === undefined) throw new WardenError('ERR_NOT_FOUND', 'the query log is off (query_log.enabled: false)');
        const format = req.query.get('format') ?? 'json';
        if (!['json', 'csv', 'jsonl'].includes(format)) throw new WardenError('ERR_BAD_REQUEST', 'format must be json, csv or jsonl');
        const rawLimit = req.query.get('limit');
        const limit = rawLimit === null ? 1000 : Number(rawLimit);
        if (!Number.isInteger(limit) || limit < 1) throw new WardenError('ERR_BAD_REQUEST', `limit must be a whole number from 1 to ${QUERY_LOG_MAX_LIMIT}`);
        const sinceMs = timeParam(req.query, 'since');
        const untilMs = timeParam(req.query, 'until');
        const str = (k: string): string | undefined => { const v = req.query.get(k); return v === null || v.trim() === '' ? undefined : v.trim(); };
        const name = str('name');
        if (name !== undefined && !/^[a-z0-9_*.-]{1,253}$/i.test(name)) throw new WardenError('ERR_BAD_REQUEST', 'name must be a domain name (a suffix: example.com finds every name under it)');
        const rows = await d.queryLog.search({
          ...(name !== undefined ? { name: name.replace(/^\*\./, '') } : {}),
          ...(str('session') !== undefined ? { session: str('session')! } : {}),
          ...(str('user') !== undefined ? { user: str('user')! } : {}),
          ...(str('verdict') !== undefined ? { verdict: str('verdict')! } : {}),
          ...(sinceMs !== undefined ? { sinceMs } : {}),
          ...(untilMs !== undefined ? { untilMs } : {}),
          limit: Math.min(limit, QUERY_LOG_MAX_LIMIT),
        });
        if (format === 'csv') return { status: 200, text: queryLogCsv(rows), contentType: 'text/csv; charset=utf-8' };
        if (format === 'jsonl') return { status: 200, text: queryLogJsonl(rows), contentType: 'application/x-ndjson' };
        return { status: 200, json: { queries: rows.map(queryLogJson), limit: Math.min(limit, QUERY_LOG_MAX_LIMIT) } };
      },
    },

    {
      // The console's overview: the last hour from the query log (queries and blocks per minute, the most blocked
      // registrable domains) and the quarantines raised in it.
      method: 'GET', path: '/v1/overview', allow: READ,
      handler: async () => {
        const nowMs = d.nowMs();
        const sinceMs = nowMs - 3_600_000;
        const raised = d.store.listQuarantines({ sinceMs });
        const traffic = await d.queryLog?.overview(sinceMs);
        const domains = new Map<string, number>();
        for (const n of traffic?.blockedNames ?? []) {
          const key = d.registrable?.(n.name) ?? n.name;
          domains.set(key, (domains.get(key) ?? 0) + n.count);
        }
        const queries = (traffic?.minutes ?? []).reduce((sum, m) => sum + m.queries, 0);
        const blocked = (traffic?.minutes ?? []).reduce((sum, m) => sum + m.blocked, 0);
        return {
          status: 200,
          json: {
            since: new Date(sinceMs).toISOString(), until: new Date(nowMs).toISOString(), query_log: d.queryLog !== undefined,
            queries, blocked, queries_per_second: Math.round((queries / 3600) * 100) / 100,
            quarantines_raised: raised.length, quarantines_open: d.store.listQuarantines({ state: 'open' }).length,
            sessions_live: d.sessions.liveCount(nowMs),
            per_minute: (traffic?.minutes ?? []).map((m) => ({ time: new Date(m.minute).toISOString(), queries: m.queries, blocked: m.blocked })),
            top_blocked_domains: [...domains].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([domain, count]) => ({ domain, count })),
          },
        };
      },
    },

    { method: 'GET', path: '/v1/audit', allow: READ, handler: (req) => ({ status: 200, json: { audit: d.store.listAudit(Math.max(1, Math.min(Math.trunc(Number(req.query.get('limit') ?? 500)) || 500, 5000))) } }) },
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
