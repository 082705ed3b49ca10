// The composition root: builds every component from a Config, starts them in order and closes
// them in reverse. Every other module receives what it needs; nothing else reads the config file,
// the environment or the clock directly.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { listenAdmin, type AdminServer, type ApiToken, type ReadinessCheck } from './ops/admin-http.js';
import { adminTokenFor } from './ops/admin-token.js';
import { WebhookAlerts } from './analyst/alerts.js';
import { apiRoutes } from './analyst/routes.js';
import { CachingResolver } from './dns/cache.js';
import { parseCidr, resolvConfUpstreams, type Config } from './ops/config.js';
import { DomainAges } from './domain-age/ages.js';
import { ConfigError, messageOf } from './errors.js';
import { createPipeline, registrableOf } from './pipeline.js';
import { Policy, type SessionState } from './policy/judge.js';
import { exfiltrationDomains, QuarantineBook } from './analyst/quarantine.js';
import { loadSigningKeys, SessionDirectory, type HistoryEntry, type Session } from './sessions/directory.js';
import { shardOf } from './fleet/shard.js';
import { Store, type QuarantineRecord } from './store.js';
import { createLogger, createMetrics } from './ops/telemetry.js';
import { listenDns, type DnsListener, type DnsServer, type PacketHandler } from './dns/transport.js';
import { UpstreamPool } from './dns/upstream.js';
import type { GatherOp, PeerEvent, WorkerLink } from './fleet/worker-link.js';
import { RefusedLog } from './ops/refused-log.js';
import { RefusalLimiter } from './dns/refusal-limit.js';
import { RedisFleet } from './fleet/redis-fleet.js';

export interface AppEnv {
  readonly nowMs: () => number;
  readonly logger?: Logger;
  readonly resolvConfPath: string;
  /** Where a generated admin token is announced at first start (never the log). */
  readonly announce: (line: string) => void;
  /** Set when this process is one of server.workers > 1 (forked by the supervisor). */
  readonly worker?: WorkerLink;
}

const systemEnv: AppEnv = {
  nowMs: () => Date.now(),
  resolvConfPath: '/etc/resolv.conf',
  announce: (line) => process.stderr.write(`${line}\n`),
};

export interface App {
  readonly dns: readonly DnsListener[];
  /** Empty in a worker that is not the admin worker. */
  readonly adminUrl: string;
  readonly adminToken: string;
  readonly config: Config;
  metricsText(): Promise<string>;
  reload(config: Config): Promise<void>;
  close(): Promise<void>;
}

const HISTORY_FLUSH_MS = 1000;

const SWEEP_MS = 10_000;
// How often the store's writability is probed for /readyz (one row rewritten; fsync'd).
const STORE_PROBE_MS = 2000;
// How often upstreams are asked again while all of them failed (readiness recovers without traffic).
const UPSTREAM_RECHECK_MS = 3000;

function apiTokens(config: Config, adminToken: string): ApiToken[] {
  const tokens: ApiToken[] = [{ name: 'admin', kind: 'admin', token: adminToken }];
  for (const [i, t] of config.admin.tokens.entries()) {
    let token = t.token;
    if (token === undefined) {
      try {
        token = readFileSync(t.token_file!, 'utf8').trim();
      } catch (err) {
        throw new ConfigError(`admin.tokens[${i}].token_file`, `cannot read ${t.token_file}: ${messageOf(err)}`);
      }
    }
    if (token.length < 16) throw new ConfigError(`admin.tokens[${i}].token`, 'API tokens must be at least 16 characters');
    tokens.push({ name: t.name, kind: t.kind, token });
  }
  return tokens;
}

function upstreamsFor(config: Config, resolvConfPath: string): Config['upstreams'] & object {
  if (config.upstreams !== undefined) return config.upstreams;
  let text = '';
  try {
    text = readFileSync(resolvConfPath, 'utf8');
  } catch (err) {
    throw new ConfigError('upstreams', `none configured and ${resolvConfPath} cannot be read: ${messageOf(err)}`);
  }
  const found = resolvConfUpstreams(text);
  if (found.length === 0) throw new ConfigError('upstreams', `none configured and ${resolvConfPath} lists no nameserver`);
  return found.map((address) => ({ address, timeout_ms: 1000 }));
}

/**
 * With domain-age lookups off every age is unknown by construction, not because a lookup failed:
 * that carries no information, so it contributes nothing (instead of scoring.unknown_age_value).
 */
function policyFor(config: Config): Policy {
  const scoring = config.domain_age.enabled ? config.scoring : { ...config.scoring, unknown_age_value: 0 };
  return new Policy(config.policy, scoring);
}

/**
 * With server.workers > 1 every session is judged by one worker, its owner: the shard of its first address
 * (for a one-address session, the worker the kernel steers it to anyway). A query the kernel hands to
 * another worker (a session with several addresses or a CIDR range) is relayed to the owner, whose
 * window then sees all of the session's queries. An owner that is restarting cannot judge: the query is
 * answered here, under the quarantine gate every worker shares.
 */
function relayingToOwners(answer: PacketHandler, sessions: SessionDirectory<SessionState>, worker: WorkerLink, nowMs: () => number): PacketHandler {
  const owners = new WeakMap<object, number>();
  const ownerOf = (session: Session<SessionState>): number => {
    let owner = owners.get(session);
    if (owner === undefined) {
      owner = shardOf(parseCidr(session.addresses[0]!)!.address, worker.spec.count);
      owners.set(session, owner);
    }
    return owner;
  };
  return (packet, peer) => {
    const admitted = sessions.admit(peer.address, nowMs());
    if (!('session' in admitted)) return answer(packet, peer);
    const owner = ownerOf(admitted.session);
    if (owner === worker.spec.index) return answer(packet, peer);
    return worker.relay(owner, packet, peer).then((r) => ('unavailable' in r ? answer(packet, peer) : r.reply));
  };
}

/** One worker's answer to a gathering: its metrics (with its query count by worker), a session's live history, or its quarantines not yet on disk. */
function answerGather(op: GatherOp, metrics: ReturnType<typeof createMetrics>, sessions: SessionDirectory<SessionState>, quarantines: QuarantineBook, index: number): unknown {
  if (op.op === 'history') return sessions.get(op.sessionId)?.history ?? [];
  if (op.op === 'unsaved_quarantines') return quarantines.notDurable();
  return metrics.registry.getMetricsAsJSON().then((list) => {
    const answered = metrics.queries.get().values.reduce((sum, v) => sum + v.value, 0);
    return [...list, { name: 'dnswarden_worker_queries_total', help: 'Queries answered, by worker (server.workers > 1 only).', type: 'counter', aggregator: 'sum', values: [{ labels: { worker: String(index) }, value: answered }] }];
  });
}

/** The admin worker's /metrics: every worker's metrics summed (gauges every worker holds alike: their max). */
async function aggregatedMetrics(worker: WorkerLink): Promise<string> {
  const parts = await worker.gather({ op: 'metrics' });
  return AggregatorRegistry.aggregate(parts.filter((p): p is MetricObjectWithValues<MetricValue<string>>[] => Array.isArray(p))).metrics();
}

/** A session's live history across workers (a session with several addresses may be answered by several). */
async function gatheredHistory(worker: WorkerLink, id: string): Promise<HistoryEntry[]> {
  const parts = await worker.gather({ op: 'history', sessionId: id });
  const seen = new Set<string>();
  const out: HistoryEntry[] = [];
  for (const part of parts) {
    if (!Array.isArray(part)) continue;
    for (const e of part as HistoryEntry[]) {
      const key = JSON.stringify(e); // a restarted worker reloaded the entries the store had: no twice
      if (!seen.has(key)) { seen.add(key); out.push(e); }
    }
  }
  return out.sort((a, b) => a.atMs - b.atMs);
}

export async function startApp(config: Config, envOverrides: Partial<AppEnv> = {}): Promise<App> {
  const env: AppEnv = { ...systemEnv, ...envOverrides };
  const nowMs = env.nowMs;
  const worker = env.worker;
  const baseLog = env.logger ?? createLogger(config.logging.level);
  const log = worker === undefined ? baseLog : baseLog.child({ worker: worker.spec.index });
  const publish = (event: PeerEvent): void => worker?.publish(event);
  const metrics = createMetrics();
  const upstreams = upstreamsFor(config, env.resolvConfPath);
  const keys = await loadSigningKeys(config.sessions.signing_keys);
  const store = Store.open(config.storage.dir);
  const closers: (() => Promise<void> | void)[] = [() => store.close()];
  try {
    const adminToken = adminTokenFor(config, config.storage.dir, env.announce);
    let tokens = apiTokens(config, adminToken);
    let current = config;

    // Exported so dashboards can draw the block_at line over the score distribution.
    const exportBlockAt = (c: Config): void => {
      for (const [type, t] of Object.entries(c.policy.session_types)) metrics.blockAt.set({ session_type: type }, t.block_at);
    };
    exportBlockAt(config);
    let policy = policyFor(config);
    const learnedDenyChanged = (): void => policy.setLearnedDeny(store.listLearnedDeny().map((e) => e.domain));
    learnedDenyChanged();

    // fleet.redis (set below, once the sessions and quarantines it applies changes to exist).
    let fleet: RedisFleet | undefined;
    const sessions = new SessionDirectory<SessionState>({
      newState: () => policy.newSessionState(),
      historyMax: config.sessions.history_per_session,
      keys,
      maxTtlSec: config.sessions.max_ttl_s,
      hooks: {
        // A held quarantine follows the address and the user: gated before the session takes effect.
        registering: (m) => void quarantines.follow(m),
        ...(config.fleet.redis === undefined ? {} : {
          claim: (m: Parameters<RedisFleet['claim']>[0]) => fleet?.claim(m) ?? Promise.resolve(),
          unclaim: (m: Parameters<RedisFleet['claim']>[0]) => fleet?.unclaim(m),
        }),
        saveRegistered: (m) => { store.saveSession(m); publish({ kind: 'session.put', meta: m }); fleet?.publish({ kind: 'session.put', meta: m }); },
        deleteRegistered: (id) => { store.deleteSession(id); publish({ kind: 'session.drop', id }); fleet?.publish({ kind: 'session.drop', id }); },
        loadHistory: (id) => store.history(id),
      },
    });
    sessions.setStatic(config.sessions.static, nowMs());
    sessions.restore(store.loadSessions(nowMs()), nowMs());
    metrics.sessionsLive.set(sessions.liveCount(nowMs()));

    // fleet.redis: no replica posts its own alerts; they go to the fleet's queue, posted by the lease holder.
    const alerts = new WebhookAlerts(config.alerts, store, log, metrics, nowMs, config.fleet.redis !== undefined
      ? { delivers: false, enqueued: () => fleet?.alertsEnqueued() }
      : { delivers: worker?.isAdmin ?? true, enqueued: () => publish({ kind: 'alerts.enqueued' }) });
    closers.push(() => alerts.close());
    const quarantines = new QuarantineBook(store, alerts, metrics, nowMs, (sessionId) => {
      const s = sessions.get(sessionId);
      if (s !== undefined) s.state = policy.newSessionState();
    }, (change) => publish({ kind: 'quarantine', change }), log);
    closers.push(() => quarantines.close());

    // fleet.redis: this replica's changes go to the others, theirs come here — before the first query is answered.
    if (config.fleet.redis !== undefined) {
      const f = new RedisFleet(config.fleet, store, metrics, log, nowMs, {
        putSession: (m) => { store.saveSession(m); sessions.adopt(m); metrics.sessionsLive.set(sessions.liveCount(nowMs())); },
        dropSession: (id) => { store.deleteSession(id); sessions.drop(id); metrics.sessionsLive.set(sessions.liveCount(nowMs())); },
        quarantine: (q) => quarantines.mirror(q),
        gate: (g) => quarantines.mirrorGate(g),
        denyList: (entries) => { store.replaceLearnedDeny(entries); learnedDenyChanged(); },
        // Workers share one store: one of them records another replica's audit row.
        audit: (entry) => { if (worker?.isAdmin !== false) store.audit(entry, true); },
        held: () => quarantines.held(),
        registered: () => sessions.list().filter((m) => m.origin === 'registered' && m.expiresAtMs > nowMs()).map(({ state: _state, history: _history, ...meta }) => meta),
        learnedDeny: () => store.listLearnedDeny(),
      }, alerts, worker?.isAdmin !== false);
      fleet = f;
      quarantines.shared = { record: (record) => f.publish({ kind: 'quarantine.record', record }), gate: (gate) => f.publish({ kind: 'quarantine.gate', gate }) };
      store.onAudit = (entry) => f.publish({ kind: 'audit', entry });
      closers.push(() => { store.onAudit = undefined; return f.close(); });
    }

    metrics.scrapeHooks.oldestOpenQuarantineAgeSec = () => {
      try {
        const at = store.oldestOpenQuarantineMs();
        return at === undefined ? 0 : Math.max(0, (nowMs() - at) / 1000);
      } catch (err) {
        log.error({ err: messageOf(err) }, 'could not read the oldest open quarantine for /metrics');
        return undefined;
      }
    };

    await fleet?.start();

    const upstreamPool = new UpstreamPool(upstreams, config.resolver.total_timeout_ms, config.resolver.queries_per_socket, metrics, nowMs);
    closers.push(() => upstreamPool.close());
    const cache = new CachingResolver(upstreamPool, config.cache, metrics, nowMs);

    const domainAge = config.domain_age.enabled
      ? new DomainAges(config.domain_age, { nowMs, logger: log, db: store.db, countLookup: (source, result) => metrics.domainAgeLookups.inc({ source, result }) })
      : undefined;
    if (domainAge !== undefined) closers.push(() => domainAge.close());

    // Query history goes to the store in batches, off the per-query path: one row per changed session.
    const flushHistory = (): void => {
      const dirty = sessions.takeDirty();
      try {
        store.saveHistories(dirty.map((s) => ({ sessionId: s.id, entries: s.history })), nowMs(), current.storage.history_max_sessions);
      } catch (err) {
        log.error({ err: messageOf(err), sessions: dirty.length }, 'could not write query history');
      }
    };
    const historyTimer = setInterval(flushHistory, HISTORY_FLUSH_MS);
    historyTimer.unref();
    closers.push(() => { clearInterval(historyTimer); flushHistory(); });

    const sweep = setInterval(() => {
      try {
        const n = sessions.sweepExpired(nowMs());
        if (n > 0) log.info({ expired: n }, 'registered sessions expired');
        metrics.sessionsLive.set(sessions.liveCount(nowMs()));
        store.deleteDecidedQuarantinesBefore(nowMs() - current.storage.quarantine_retention_days * 86_400_000);
      } catch (err) {
        log.error({ err: messageOf(err) }, 'periodic sweep failed; will retry');
      }
    }, SWEEP_MS);
    sweep.unref();
    closers.push(() => clearInterval(sweep));

    const refusedLog = new RefusedLog(log, config.logging.refused_interval_s * 1000, nowMs);
    closers.push(() => refusedLog.close());
    const pipeline = createPipeline({
      sessions, quarantines, resolver: cache, policy: () => policy, judging: () => current.policy.enabled, domainAge, ageBudgetMs: config.domain_age.budget_ms,
      metrics, log, refusedLog, nowMs, udpPayloadSize: config.server.udp_payload_size,
      refusals: new RefusalLimiter({
        perSecond: config.server.refused_rate_limit.per_second,
        slip: config.server.refused_rate_limit.slip,
        ipv4Prefix: config.server.refused_rate_limit.ipv4_prefix,
        ipv6Prefix: config.server.refused_rate_limit.ipv6_prefix,
        maxPrefixes: config.server.refused_rate_limit.max_prefixes,
      }),
    });

    const answer = worker === undefined ? pipeline.answerPacket : relayingToOwners(pipeline.answerPacket, sessions, worker, nowMs);
    worker?.answerRelays(pipeline.answerPacket);
    let listening = false;
    const dns: DnsServer = await listenDns(config.listen.dns, answer, {
      tcpIdleTimeoutMs: config.server.tcp_idle_timeout_ms,
      tcpFrameTimeoutMs: config.server.tcp_frame_timeout_ms,
      tcpMaxConnections: config.server.tcp_max_connections,
      tcpMaxConnectionsPerSource: config.server.tcp_max_connections_per_source,
      tcpMaxInflightPerConnection: config.server.tcp_max_inflight_per_connection,
      isRegistered: (address) => 'session' in sessions.admit(address, nowMs()),
    }, metrics, log, worker?.spec.listeners);
    listening = true;
    closers.push(() => { listening = false; return dns.close(); });

    // GET /readyz: every check must pass. One line per condition; e.g. a queue of unsaved writes is one more.
    let storeProblem: string | null = null;
    const probeStore = (): void => {
      const problem = store.probeWritable(nowMs());
      if (problem !== storeProblem) {
        if (problem !== null) log.error({ err: problem, dir: store.dir }, 'store is not writable: not ready');
        else log.info('store is writable again');
      }
      storeProblem = problem;
    };
    probeStore();
    const storeProbe = setInterval(probeStore, STORE_PROBE_MS);
    storeProbe.unref();
    closers.push(() => clearInterval(storeProbe));
    // While every upstream's latest attempt failed, ask them again: readiness must not wait for traffic.
    let rechecking = false;
    const upstreamRecheck = setInterval(() => {
      if (rechecking || upstreamPool.unreachable() === null) return;
      rechecking = true;
      void upstreamPool.recheck().finally(() => { rechecking = false; });
    }, UPSTREAM_RECHECK_MS);
    upstreamRecheck.unref();
    closers.push(() => clearInterval(upstreamRecheck));
    // With server.workers > 1 another worker may hold a quarantine its store write failed for: the admin
    // worker gathers how many every worker holds, on the store probe's period (never per query).
    let fleetUnsaved = 0;
    if (worker?.isAdmin === true) {
      const w = worker;
      const gatherUnsaved = setInterval(() => {
        void w.gather({ op: 'unsaved_quarantines' }).then(
          (parts) => { fleetUnsaved = parts.reduce((n: number, part) => n + (Array.isArray(part) ? part.length : 0), 0); },
          () => undefined, // a worker that does not answer is the supervisor's to restart; the next round counts again
        );
      }, STORE_PROBE_MS);
      gatherUnsaved.unref();
      closers.push(() => clearInterval(gatherUnsaved));
    }
    const readinessChecks: ReadinessCheck[] = [
      { name: 'listeners', check: () => (listening ? null : 'the DNS listeners are closed (shutting down)') },
      { name: 'upstreams', check: () => upstreamPool.unreachable() },
      { name: 'store', check: () => store.writeProblem() },
      // A quarantine (or its alert) the store refused is held in memory only: a restart now would lose it.
      { name: 'quarantines', check: () => { const n = Math.max(quarantines.unsaved(), fleetUnsaved); return n === 0 ? null : `${n} quarantine write(s) not yet on disk (retrying)`; } },
    ];

    worker?.handle((event) => {
      switch (event.kind) {
        case 'session.put': sessions.adopt(event.meta); break;
        case 'session.drop': sessions.drop(event.id); break;
        case 'quarantine': quarantines.adopt(event.change); break;
        case 'deny.changed': learnedDenyChanged(); break;
        case 'cache.flush': cache.clear(); break;
        case 'alerts.enqueued': alerts.deliverNow(); break;
      }
      // Another worker changed something: it is in the shared store's fleet queue, which this worker may send.
      void fleet?.flush();
      metrics.sessionsLive.set(sessions.liveCount(nowMs()));
    }, (op) => answerGather(op, metrics, sessions, quarantines, worker.spec.index));

    const metricsText = worker === undefined ? (): Promise<string> => metrics.registry.metrics() : () => aggregatedMetrics(worker);
    const admin: AdminServer | undefined = worker !== undefined && !worker.isAdmin ? undefined : await listenAdmin(config.listen.admin, apiRoutes({
      sessions, quarantines, store, metrics, nowMs, historyLimit: Math.max(1, config.sessions.history_per_session),
      attackerDomains: (q) => exfiltrationDomains(q, store.lastReleaseOf(q.sessionId, q.raisedAtMs), registrableOf),
      learnedDenyChanged: () => { learnedDenyChanged(); publish({ kind: 'deny.changed' }); fleet?.publish({ kind: 'deny.list', entries: store.listLearnedDeny() }); },
      flushCache: () => { cache.clear(); publish({ kind: 'cache.flush' }); },
      readinessChecks,
      ...(worker === undefined ? {} : {
        liveHistory: (id: string) => gatheredHistory(worker, id),
        notDurable: async () => (await worker.gather({ op: 'unsaved_quarantines' })).flatMap((part) => (Array.isArray(part) ? (part as QuarantineRecord[]) : [])),
      }),
    }, metricsText), () => tokens, log);
    if (admin !== undefined) closers.push(() => admin.close());

    log.info({
      dns: dns.listeners.map((l) => `${l.address}:${l.port}`), admin: admin?.url, upstreams: upstreams.map((u) => u.address),
      static_sessions: config.sessions.static.length, registered_sessions: sessions.list().length - config.sessions.static.length,
      mode: config.policy.mode,
    }, worker === undefined ? 'dnswarden ready' : 'worker ready');
    worker?.ready(admin?.url);

    return {
      dns: dns.listeners,
      adminUrl: admin?.url ?? '',
      adminToken,
      get config() { return current; },
      metricsText,
      async reload(next: Config) {
        try {
          const nextKeys = await loadSigningKeys(next.sessions.signing_keys);
          const nextTokens = apiTokens(next, next.admin.token ?? adminToken);
          const nextPolicy = policyFor(next);
          nextPolicy.setLearnedDeny(store.listLearnedDeny().map((e) => e.domain));
          sessions.setStatic(next.sessions.static, nowMs());
          sessions.setKeys(nextKeys, next.sessions.max_ttl_s);
          tokens = nextTokens;
          policy = nextPolicy; // the next query sees the new policy; in-flight ones finish on the old one
          log.level = next.logging.level;
          const restartOnly = (['listen', 'storage', 'upstreams', 'resolver', 'cache', 'server', 'domain_age', 'alerts', 'fleet'] as const)
            .filter((k) => JSON.stringify(next[k]) !== JSON.stringify(current[k]));
          if (restartOnly.length > 0) log.warn({ sections: restartOnly }, 'config sections changed that take effect only after a restart');
          current = next;
          exportBlockAt(next);
          metrics.configReloads.inc({ result: 'ok' });
          metrics.sessionsLive.set(sessions.liveCount(nowMs()));
          log.info({ static_sessions: next.sessions.static.length, mode: next.policy.mode }, 'config reloaded');
        } catch (err) {
          metrics.configReloads.inc({ result: 'error' });
          throw err;
        }
      },
      async close() {
        for (const close of closers.reverse()) await close();
        log.info('dnswarden stopped');
        log.flush?.();
      },
    };
  } catch (err) {
    for (const close of closers.reverse()) await close();
    throw err;
  }
}
