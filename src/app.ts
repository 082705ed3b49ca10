// The composition root: builds every component from a Config, starts them in order and closes
// them in reverse. Every other module receives what it needs; nothing else reads the config file,
// the environment or the clock directly.
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { aggregatedMetrics, answerGather, confirmedPublisher, gatheredHistory, relayingToOwners, unsavedAcrossWorkers } from './fleet/worker-runtime.js';
import { listenAdmin, type AdminServer, type ReadinessCheck } from './ops/admin-http.js';
import { adminTokenFor } from './ops/admin-token.js';
import { WebhookAlerts } from './analyst/alerts.js';
import { apiRoutes } from './analyst/routes.js';
import { QueryLog } from './analyst/query-log.js';
import { CachingResolver } from './dns/cache.js';
import { upstreamsFor, type Config } from './ops/config.js';
import { loadConfigReferences, type ConfigReferences } from './sessions/credentials.js';
import { DomainAges } from './domain-age/ages.js';
import { messageOf } from './errors.js';
import { createPipeline, registrableOf } from './pipeline.js';
import { Policy, PUBLIC_RESOLVERS, type SessionState } from './policy/judge.js';
import { exfiltrationDomains, QuarantineBook } from './analyst/quarantine.js';
import { SessionDirectory } from './sessions/directory.js';
import { Store, type QuarantineRecord } from './store.js';
import { createLogger, createMetrics } from './ops/telemetry.js';
import { listenDns, type DnsListener, type DnsServer } from './dns/transport.js';
import { UpstreamPool } from './dns/upstream.js';
import { ForwardingResolver } from './dns/forward.js';
import { rateLimitsOf, SessionRateLimiter } from './sessions/rate-limit.js';
import type { WorkerLink } from './fleet/worker-link.js';
import { RefusedLog } from './ops/refused-log.js';
import { RefusalLimiter } from './dns/refusal-limit.js';
import { RedisFleet } from './fleet/redis-fleet.js';
import { denyChangeEvents, replicaOf } from './fleet/replica.js';
import { declareZoneSeries, loadRpzSet, loadZoneFiles, pollFiles, type ZoneSet } from './zones/zone-set.js';
import type { RpzSet } from './zones/rpz.js';

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
  /** Applies a new config (SIGHUP); on failure counts and logs it, keeps the running one and throws. */
  reload(config: Config): Promise<void>;
  /** A reload that failed before reaching reload() (the file did not load): counted and logged (unless `logged` elsewhere). */
  reloadRejected(err: unknown, logged?: boolean): void;
  close(): Promise<void>;
}

const HISTORY_FLUSH_MS = 1000;
const REPEATS_FLUSH_MS = 1000;
// How often the policy zones' files are checked for a change (mtime, size, inode); a change is loaded
// once the file has held still for one more period (a feed being written is not read half-way).
const RPZ_POLL_MS = 1000;

/** What SIGHUP swaps, as one snapshot: the config and what was built from it. */
interface Running {
  readonly config: Config;
  readonly policy: Policy;
  readonly zones: ZoneSet;
  readonly rpz: RpzSet;
  readonly tokens: ConfigReferences['tokens'];
}

/** Config sections a reload does not apply (listeners, stores, upstream pools … are built once): logged when changed. */
const RESTART_ONLY = ['listen', 'storage', 'upstreams', 'forward_zones', 'resolver', 'cache', 'server', 'domain_age', 'alerts', 'fleet'] as const;

const QUERY_LOG_FLUSH_MS = 1000;
const SWEEP_MS = 10_000;
// How often the store's writability is probed for /readyz (one row rewritten; fsync'd).
const STORE_PROBE_MS = 2000;
// How often upstreams are asked again while all of them failed (readiness recovers without traffic).
const UPSTREAM_RECHECK_MS = 3000;

/** The stored learned deny list into a policy: confirmed from a quarantine, or added by hand (no quarantine id). */
function applyLearnedDeny(policy: Policy, store: Store): void {
  const entries = store.listLearnedDeny();
  policy.setLearnedDeny(entries.filter((e) => e.quarantineId !== null).map((e) => e.domain), entries.filter((e) => e.quarantineId === null).map((e) => e.domain));
}

/**
 * With domain-age lookups off every age is unknown by construction, not because a lookup failed:
 * that carries no information, so it contributes nothing (instead of scoring.unknown_age_value).
 */
function policyFor(config: Config): Policy {
  const scoring = config.domain_age.enabled ? config.scoring : { ...config.scoring, unknown_age_value: 0 };
  return new Policy(config.policy, scoring);
}

export async function startApp(config: Config, envOverrides: Partial<AppEnv> = {}): Promise<App> {
  const env: AppEnv = { ...systemEnv, ...envOverrides };
  const nowMs = env.nowMs;
  const worker = env.worker;
  const baseLog = env.logger ?? createLogger(config.logging.level);
  const log = worker === undefined ? baseLog : baseLog.child({ worker: worker.spec.index });
  const metrics = createMetrics();
  // An admin API change answers once every other worker applied it (bounded); the DNS path never waits.
  const { publish, othersApplied } = confirmedPublisher(worker, metrics, log);
  const upstreams = upstreamsFor(config, env.resolvConfPath);
  // Every referenced file is read before anything is created: a config check-config calls valid starts.
  const refs = await loadConfigReferences(config, config.admin.token);
  // Zone files before anything opens: a bad one fails the start with file:line.
  const loaded = loadZoneFiles(config);
  declareZoneSeries(metrics, config);
  const store = Store.open(config.storage.dir);
  const closers: (() => Promise<void> | void)[] = [() => store.close()];
  try {
    const adminToken = adminTokenFor(config, config.storage.dir, env.announce);
    const keys = refs.keys;
    const tokens = config.admin.token === undefined ? (await loadConfigReferences(config, adminToken)).tokens : refs.tokens;

    // Exported so dashboards can draw the block_at line over the score distribution.
    const exportBlockAt = (c: Config): void => {
      for (const [type, t] of Object.entries(c.policy.session_types)) metrics.blockAt.set({ session_type: type }, t.block_at);
    };
    exportBlockAt(config);
    const policy = policyFor(config);
    policy.setRpz(loaded.rpz);
    // What SIGHUP swaps: one snapshot, replaced whole (never field by field), so every reader sees one config with
    // its own policy, zones and tokens. In-flight queries finish on the snapshot they started with.
    let running: Running = { config, policy, zones: loaded.zones, rpz: loaded.rpz, tokens };
    const learnedDenyChanged = (): void => applyLearnedDeny(running.policy, store);
    learnedDenyChanged();

    // fleet.redis (set below, once the sessions and quarantines it applies changes to exist).
    let fleet: RedisFleet | undefined;
    const sessions = new SessionDirectory<SessionState>({
      newState: () => running.policy.newSessionState(),
      historyMax: config.sessions.history_per_session,
      keys,
      maxTtlSec: config.sessions.max_ttl_s,
      maxAddresses: config.sessions.max_addresses_per_session,
      hooks: {
        // A held quarantine follows the address and the user: gated before the session takes effect.
        registering: (m) => void quarantines.follow(m),
        ...(config.fleet.redis === undefined ? {} : {
          claim: (m: Parameters<RedisFleet['claim']>[0], token: Parameters<RedisFleet['claim']>[1]) => fleet?.claim(m, token) ?? Promise.resolve(),
          unclaim: (m: Parameters<RedisFleet['claim']>[0]) => fleet?.unclaim(m),
        }),
        saveRegistered: (m, token) => { store.saveRegisteredSession(m, token); publish({ kind: 'session.put', meta: m }); fleet?.registered(m, token); },
        deleteRegistered: (id, endedAtMs) => { store.deleteRegisteredSession(id, endedAtMs); publish({ kind: 'session.drop', id }); fleet?.publish({ kind: 'session.drop', id, ...(endedAtMs === undefined ? {} : { endedAtMs }) }); },
        endedToken: (tokenId) => store.endedToken(tokenId),
        loadHistory: (id) => store.history(id),
      },
    });
    sessions.setStatic(config.sessions.static, nowMs());
    sessions.restore(store.loadSessions(nowMs()), nowMs());
    sessions.exposeLiveCount(metrics.sessionsLive, nowMs);

    // fleet.redis: no replica posts its own alerts; they go to the fleet's queue, posted by the lease holder.
    const alerts = new WebhookAlerts(config.alerts, store, log, metrics, nowMs, config.fleet.redis !== undefined
      ? { delivers: false, enqueued: () => fleet?.alertsEnqueued() }
      : { delivers: worker?.isAdmin ?? true, enqueued: () => publish({ kind: 'alerts.enqueued' }) });
    closers.push(() => alerts.close());
    const quarantines = new QuarantineBook(store, alerts, metrics, nowMs, (sessionId) => sessions.resetWindow(sessionId), (change) => publish({ kind: 'quarantine', change }), log);
    closers.push(() => quarantines.close());

    // fleet.redis: this replica's changes go to the others, theirs come here — before the first query is answered.
    if (config.fleet.redis !== undefined) {
      const replica = replicaOf({ store, sessions, quarantines, metrics, log, nowMs, recordsAudit: worker?.isAdmin !== false, learnedDenyChanged });
      const f = new RedisFleet(config.fleet, store, metrics, log, nowMs, replica, alerts, worker?.isAdmin !== false);
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

    const upstreamPool = new UpstreamPool(upstreams, config.resolver.total_timeout_ms, config.resolver.queries_per_socket, config.cache.max_ttl_s, metrics, nowMs);
    closers.push(() => upstreamPool.close());
    // Conditional forwarding: one pool per forward zone, chosen below the cache (the most specific zone wins).
    const forwardZones = config.forward_zones.map((z) => {
      const pool = new UpstreamPool(z.upstreams, config.resolver.total_timeout_ms, config.resolver.queries_per_socket, config.cache.max_ttl_s, metrics, nowMs);
      closers.push(() => pool.close());
      return { name: z.name, resolver: pool };
    });
    const cache = new CachingResolver(new ForwardingResolver(forwardZones, upstreamPool), config.cache, metrics, nowMs);

    const domainAge = config.domain_age.enabled
      ? new DomainAges(config.domain_age, { nowMs, logger: log, db: store.db, countLookup: (source, result) => metrics.domainAgeLookups.inc({ source, result }) })
      : undefined;
    if (domainAge !== undefined) closers.push(() => domainAge.close());

    // Query history goes to the store in batches, off the per-query path: one row per changed session.
    const flushHistory = (): void => {
      const dirty = sessions.takeDirty();
      try {
        store.saveHistories(dirty.map((s) => ({ sessionId: s.id, entries: s.history })), nowMs(), running.config.storage.history_max_sessions);
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
        store.pruneRegistrationTokens(nowMs());
        store.deleteDecidedQuarantinesBefore(nowMs() - running.config.storage.quarantine_retention_days * 86_400_000);
      } catch (err) {
        log.error({ err: messageOf(err) }, 'periodic sweep failed; will retry');
      }
    }, SWEEP_MS);
    sweep.unref();
    closers.push(() => clearInterval(sweep));

    // Policy zones are feeds: reloaded when their files change, without a SIGHUP. A bad file keeps the zones that ran.
    const rpzFiles = pollFiles(() => running.config.policy.rpz, RPZ_POLL_MS, () => {
      try {
        const rpz = loadRpzSet(running.config.policy.rpz);
        running.policy.setRpz(rpz);
        running = { ...running, rpz };
        metrics.rpzReloads.inc({ result: 'ok' });
        log.info({ zones: rpz.zones.map((z) => z.stats) }, 'policy zones reloaded');
      } catch (err) {
        metrics.rpzReloads.inc({ result: 'error' });
        log.error({ err: messageOf(err) }, 'policy zone reload failed; the previous policy zones stay');
      }
    });
    closers.push(() => rpzFiles.stop());
    // The query log: rows buffered by the pipeline, written to disk in one transaction a second, off the query path.
    const queryLog = config.query_log.enabled ? QueryLog.open(config.storage.dir, { maxRows: config.query_log.max_rows, maxAgeDays: config.query_log.max_age_days, thread: true }, log) : undefined;
    if (queryLog !== undefined) {
      let writtenSeen = 0;
      let droppedSeen = 0;
      const countQueryLog = (): void => {
        if (queryLog.written > writtenSeen) metrics.queryLogRows.inc({ result: 'written' }, queryLog.written - writtenSeen);
        if (queryLog.dropped > droppedSeen) metrics.queryLogRows.inc({ result: 'dropped' }, queryLog.dropped - droppedSeen);
        writtenSeen = queryLog.written;
        droppedSeen = queryLog.dropped;
      };
      const queryLogTimer = setInterval(() => queryLog.flushInSlices(nowMs(), countQueryLog), QUERY_LOG_FLUSH_MS);
      queryLogTimer.unref();
      closers.push(async () => { clearInterval(queryLogTimer); await queryLog.close(); countQueryLog(); });
    }

    const refusedLog = new RefusedLog(log, config.logging.refused_interval_s * 1000, nowMs);
    closers.push(() => refusedLog.close());
    const pipeline = createPipeline({
      sessions, quarantines, resolver: cache, policy: () => running.policy, judging: () => running.config.policy.enabled, domainAge, ageBudgetMs: config.domain_age.budget_ms,
      metrics, log, refusedLog, nowMs, udpPayloadSize: config.server.udp_payload_size, zones: () => running.zones,
      refusals: new RefusalLimiter({
        perSecond: config.server.refused_rate_limit.per_second,
        slip: config.server.refused_rate_limit.slip,
        ipv4Prefix: config.server.refused_rate_limit.ipv4_prefix,
        ipv6Prefix: config.server.refused_rate_limit.ipv6_prefix,
        maxPrefixes: config.server.refused_rate_limit.max_prefixes,
      }),
      repeatWindowMs: () => running.config.logging.repeat_window_ms,
      // Read per query from the running config: a SIGHUP changes the limits at once (the buckets stay).
      sessionRates: new SessionRateLimiter((type) => rateLimitsOf(running.config.policy.session_types)[type]),
      ...(queryLog === undefined ? {} : { queryLog }),
    });
    // Counts of repeated blocks are logged once their window has passed; at close (after the listeners, as closers
    // run in reverse) whatever is still counted.
    const repeatsTimer = setInterval(() => pipeline.flushRepeats(), REPEATS_FLUSH_MS);
    repeatsTimer.unref();
    closers.push(() => { clearInterval(repeatsTimer); pipeline.flushRepeats(true); });

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
    // With server.workers > 1 another worker may hold a quarantine its store write failed for: counted every period.
    const fleetUnsaved = worker?.isAdmin === true ? unsavedAcrossWorkers(worker, STORE_PROBE_MS) : undefined;
    if (fleetUnsaved !== undefined) closers.push(() => fleetUnsaved.stop());
    const readinessChecks: ReadinessCheck[] = [
      { name: 'listeners', check: () => (listening ? null : 'the DNS listeners are closed (shutting down)') },
      { name: 'upstreams', check: () => upstreamPool.unreachable() },
      { name: 'store', check: () => store.writeProblem() },
      // A quarantine (or its alert) the store refused is held in memory only: a restart now would lose it.
      { name: 'quarantines', check: () => { const n = Math.max(quarantines.unsaved(), fleetUnsaved?.count() ?? 0); return n === 0 ? null : `${n} quarantine write(s) not yet on disk (retrying)`; } },
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
    }, (op) => answerGather(op, metrics, sessions, quarantines, worker.spec.index));

    const metricsText = worker === undefined ? (): Promise<string> => metrics.registry.metrics() : () => aggregatedMetrics(worker);
    const admin: AdminServer | undefined = worker !== undefined && !worker.isAdmin ? undefined : await listenAdmin(config.listen.admin, apiRoutes({
      sessions, quarantines, store, metrics, nowMs, historyLimit: Math.max(1, config.sessions.history_per_session),
      attackerDomains: (q) => exfiltrationDomains(q, store.lastReleaseOf(q.sessionId, q.raisedAtMs), registrableOf),
      learnedDenyChanged: (change) => {
        learnedDenyChanged();
        publish({ kind: 'deny.changed' });
        // fleet.redis: entry by entry, so changes made on two replicas at once all hold.
        if (fleet !== undefined) for (const event of denyChangeEvents(store, change)) fleet.publish(event);
      },
      flushCache: () => { cache.clear(); publish({ kind: 'cache.flush' }); },
      configuredDeny: () => [
        ...running.config.policy.deny.map((domain) => ({ domain, reason: 'policy.deny' })),
        ...(running.config.policy.deny_public_resolvers ? PUBLIC_RESOLVERS.map((domain) => ({ domain, reason: 'policy.deny_public_resolvers' })) : []),
      ],
      readinessChecks,
      registrable: registrableOf,
      blockAt: (type) => running.config.policy.session_types[type as keyof Config['policy']['session_types']]?.block_at,
      ...(queryLog === undefined ? {} : { queryLog }),
      ...(worker === undefined ? {} : {
        liveHistory: (id: string) => gatheredHistory(worker, id),
        notDurable: async () => (await worker.gather({ op: 'unsaved_quarantines' })).flatMap((part) => (Array.isArray(part) ? (part as QuarantineRecord[]) : [])),
      }),
    }, metricsText).map((route) => (route.method === 'GET' || worker === undefined ? route : {
      // A change answers only once every worker holds it: a DELETEd session is refused everywhere after its 204.
      ...route, handler: async (req: Parameters<typeof route.handler>[0]) => { const res = await route.handler(req); await othersApplied(); return res; },
    })), () => running.tokens, log);
    if (admin !== undefined) closers.push(() => admin.close());

    log.info({
      dns: dns.listeners.map((l) => `${l.address}:${l.port}`), admin: admin?.url, upstreams: upstreams.map((u) => u.address), forward_zones: config.forward_zones.map((z) => z.name),
      static_sessions: config.sessions.static.length, registered_sessions: sessions.list().length - config.sessions.static.length,
      mode: config.policy.mode, zones: loaded.zones.zones.map((z) => z.describe()), rpz: loaded.rpz.zones.map((z) => z.stats),
    }, worker === undefined ? 'dnswarden ready' : 'worker ready');
    worker?.ready(admin?.url);

    // Every failed reload, whatever failed (the file, a key, a token), is counted and logged once here.
    const reloadRejected = (err: unknown, logged = false): void => {
      metrics.configReloads.inc({ result: 'error' });
      if (!logged) log.error({ err: messageOf(err) }, 'reload failed, keeping the running config');
    };

    return {
      dns: dns.listeners,
      adminUrl: admin?.url ?? '',
      adminToken,
      get config() { return running.config; },
      metricsText,
      async reload(next: Config) {
        try {
          const { keys: nextKeys, tokens: nextTokens } = await loadConfigReferences(next, next.admin.token ?? adminToken);
          const nextPolicy = policyFor(next);
          applyLearnedDeny(nextPolicy, store);
          const nextZones = loadZoneFiles(next); // a bad zone file throws here: nothing has changed yet
          nextPolicy.setRpz(nextZones.rpz);
          sessions.setStatic(next.sessions.static, nowMs());
          sessions.setKeys(nextKeys, next.sessions.max_ttl_s, next.sessions.max_addresses_per_session);
          const restartOnly = RESTART_ONLY.filter((k) => !isDeepStrictEqual(next[k], running.config[k]));
          // the next query sees the new policy; in-flight ones finish on the old one
          running = { config: next, policy: nextPolicy, zones: nextZones.zones, rpz: nextZones.rpz, tokens: nextTokens };
          declareZoneSeries(metrics, next);
          log.level = next.logging.level;
          if (restartOnly.length > 0) log.warn({ sections: restartOnly }, 'config sections changed that take effect only after a restart');
          rpzFiles.reset();
          exportBlockAt(next);
          metrics.configReloads.inc({ result: 'ok' });
          log.info({ static_sessions: next.sessions.static.length, mode: next.policy.mode }, 'config reloaded');
        } catch (err) {
          reloadRejected(err);
          throw err;
        }
      },
      reloadRejected,
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
