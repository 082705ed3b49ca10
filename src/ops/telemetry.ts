// Every metric and the logger, created per app instance (two servers can run in one process).
// Labels come from closed sets only: never a session id, user, address or domain name.
// Names, sessions and scores go to log lines and EDE text instead.
import { pino, type Logger } from 'pino';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { SIGNAL_IDS } from '../../scoring/index.js';
import { FastCounter, FastHistogram } from './fast-histogram.js';
import { QTYPE, type QtypeMnemonic } from './qtypes.js';
import { SESSION_TYPES } from '../policy/schema.js';

// The query types with a label of their own on dnswarden_queries_total (a closed set: every other type is
// `other`); their names come from the one table in qtypes.ts.
const METRIC_QTYPES = ['A', 'NS', 'CNAME', 'SOA', 'NULL', 'PTR', 'MX', 'TXT', 'AAAA', 'SRV', 'NAPTR', 'DS', 'DNSKEY', 'SVCB', 'HTTPS', 'SPF', 'ANY'] as const satisfies readonly QtypeMnemonic[];
const QTYPE_NAMES: ReadonlyMap<number, string> = new Map(METRIC_QTYPES.map((name) => [QTYPE[name], name]));
const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

/** For metric labels: the name of a type in the closed label set, else `other`. */
export function qtypeName(type: number): string {
  return QTYPE_NAMES.get(type) ?? 'other';
}
export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? 'other';
}

// Per-query counters are keyed by one small integer built from their label values (see FastCounter):
// every label value maps to a slot, and every key maps back to exactly one label set.
const QTYPE_LABELS = [...QTYPE_NAMES.values(), 'other'];
const QTYPE_SLOT = new Uint8Array(65_536).fill(QTYPE_LABELS.length - 1);
for (const [i, type] of [...QTYPE_NAMES.keys()].entries()) QTYPE_SLOT[type] = i;
const RCODE_LABELS = [...RCODE_NAMES, 'other'];
const TRANSPORTS = ['udp', 'tcp'] as const;

/** The dnswarden_queries_total series of one answered query. */
export function queryKey(transport: 'udp' | 'tcp', qtype: number, rcode: number): number {
  const rcodeSlot = rcode < RCODE_NAMES.length ? rcode : RCODE_NAMES.length;
  return ((transport === 'udp' ? 0 : 1) * QTYPE_LABELS.length + QTYPE_SLOT[qtype & 0xffff]!) * RCODE_LABELS.length + rcodeSlot;
}
function queryLabels(key: number): Record<string, string> {
  const rcode = key % RCODE_LABELS.length;
  const rest = (key - rcode) / RCODE_LABELS.length;
  const qtype = rest % QTYPE_LABELS.length;
  return { transport: TRANSPORTS[(rest - qtype) / QTYPE_LABELS.length]!, qtype: QTYPE_LABELS[qtype]!, rcode: RCODE_LABELS[rcode]! };
}

const VERDICT_ACTIONS = ['answer', 'nxdomain', 'quarantine'] as const;
const VERDICT_RULES = ['none', 'allow_list', 'deny_list', 'learned_deny', 'rpz', 'threshold', 'accumulation', 'sticky', 'bandwidth', 'rebinding', 'quarantined'] as const;
const VERDICT_MODES = ['enforce', 'observe'] as const;
const VERDICT_SESSION_TYPES = SESSION_TYPES;
const slotsOf = <T extends string>(values: readonly T[]): Readonly<Record<T, number>> => Object.fromEntries(values.map((v, i) => [v, i])) as Record<T, number>;
const ACTION_SLOT = slotsOf(VERDICT_ACTIONS);
const RULE_SLOT = slotsOf(VERDICT_RULES);
const MODE_SLOT = slotsOf(VERDICT_MODES);
const SESSION_TYPE_SLOT = slotsOf(VERDICT_SESSION_TYPES);

/** The dnswarden_verdicts_total series of one verdict. */
export function verdictKey(
  action: (typeof VERDICT_ACTIONS)[number],
  rule: (typeof VERDICT_RULES)[number],
  mode: (typeof VERDICT_MODES)[number],
  sessionType: (typeof VERDICT_SESSION_TYPES)[number],
): number {
  return ((ACTION_SLOT[action] * VERDICT_RULES.length + RULE_SLOT[rule]) * VERDICT_MODES.length + MODE_SLOT[mode]) * VERDICT_SESSION_TYPES.length + SESSION_TYPE_SLOT[sessionType];
}
function verdictLabels(key: number): Record<string, string> {
  const type = key % VERDICT_SESSION_TYPES.length;
  let rest = (key - type) / VERDICT_SESSION_TYPES.length;
  const mode = rest % VERDICT_MODES.length;
  rest = (rest - mode) / VERDICT_MODES.length;
  const rule = rest % VERDICT_RULES.length;
  const action = (rest - rule) / VERDICT_RULES.length;
  return { action: VERDICT_ACTIONS[action]!, rule: VERDICT_RULES[rule]!, mode: VERDICT_MODES[mode]!, session_type: VERDICT_SESSION_TYPES[type]! };
}

/**
 * dnswarden_signal_value keys, by verdict action then signal id ("name_length|nxdomain"): built once
 * here, so a scored query looks its keys up instead of building strings.
 */
export const SIGNAL_KEYS: Readonly<Record<(typeof VERDICT_ACTIONS)[number], Readonly<Record<string, string>>>> = Object.fromEntries(
  VERDICT_ACTIONS.map((action) => [action, Object.fromEntries(SIGNAL_IDS.map((id) => [id, `${id}|${action}`]))]),
) as Record<(typeof VERDICT_ACTIONS)[number], Record<string, string>>;
const signalLabels = (key: string): Record<string, string> => {
  const bar = key.lastIndexOf('|');
  return { signal: key.slice(0, bar), action: key.slice(bar + 1) };
};

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'dnswarden' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Secrets never reach a log line, even if someone logs a config or a request by mistake.
      redact: { paths: ['token', 'admin.token', '*.token', 'secret', '*.secret', 'authorization', '*.authorization', 'headers.authorization', 'signing_keys'], censor: '[redacted]' },
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

export type Metrics = ReturnType<typeof createMetrics>;

// Every label value known in advance, so each series is exported as 0 from the start: a labelled series
// that first appears with value 1 has no rise for increase()/rate() to see, and the first quarantine (or
// fault, or SERVFAIL) after every restart would go unalerted. Values only known from the config
// (upstreams) are declared by their owners (UpstreamPool).
const OUTCOME_KINDS = ['answered', 'local', 'blocked', 'refused', 'failed'] as const;
const MALFORMED_REASONS = ['short_header', 'not_a_query', 'qdcount', 'bad_name', 'truncated', 'bad_opt', 'trailing'] as const;
const REGISTRATION_RESULTS = ['ok', 'bad_request', 'bad_token', 'bad_signature', 'unknown_key', 'token_expired', 'bad_claims', 'session_conflict', 'error'] as const;
const AGE_SOURCES = ['cache', 'store', 'feed', 'rdap', 'whois', 'first_seen'] as const;
const AGE_RESULTS = ['ok', 'not_found', 'error', 'timeout'] as const;
const ALERT_FORMATS = ['json', 'alertmanager'] as const;
export const UPSTREAM_FAILURE_REASONS = ['timeout', 'network', 'mismatch', 'malformed'] as const;
const allKeys = (count: number): number[] => Array.from({ length: count }, (_, i) => i);

// Gauges with aggregator 'max' hold the same value in every worker (server.workers > 1): the
// admin worker's /metrics sums every other metric across workers, but not these.
export function createMetrics() {
  const registry = new Registry();
  // Local zone names, from the config: each gets a small number once, so a local answer is counted by a
  // number (FastCounter) and not by a labels object (prom-client's Counter costs ~1 µs per inc).
  const zoneIds = new Map<string, number>();
  const zoneNames: string[] = [];
  const zoneId = (zone: string): number => {
    let id = zoneIds.get(zone);
    if (id === undefined) {
      id = zoneNames.length;
      zoneNames.push(zone);
      zoneIds.set(zone, id);
    }
    return id;
  };
  // prom-client names its own metrics process_* and nodejs_*: with this prefix they read
  // dnswarden_process_cpu_seconds_total, dnswarden_nodejs_eventloop_lag_seconds, … (one prefix per job).
  collectDefaultMetrics({ register: registry, prefix: 'dnswarden_' });
  // prom-client's nodejs_active_{handles,requests,resources}_total are gauges named like counters, which
  // `promtool check metrics` rejects; each is the sum over the `type` label of the gauge of the same name
  // without _total, so nothing is lost.
  for (const name of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`dnswarden_nodejs_active_${name}_total`);
  const registers = [registry];
  // Values read when /metrics is scraped, from state the app owns (set by app.ts once it exists).
  const scrapeHooks = { oldestOpenQuarantineAgeSec: (): number | undefined => 0 };
  const metrics = {
    scrapeHooks,
    registry,
    // Per-query metrics use the fast forms (see fast-histogram.ts); the rest are prom-client's own.
    queries: new FastCounter({ name: 'dnswarden_queries_total', help: 'Queries answered, by transport, query type and response code.', registry, labelsOf: queryLabels, initialKeys: allKeys(TRANSPORTS.length * QTYPE_LABELS.length * RCODE_LABELS.length) }),
    queryDuration: new FastHistogram<string>({
      name: 'dnswarden_query_duration_seconds',
      help: 'Time from receiving a query to its reply, by outcome kind.',
      label: 'outcome',
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registry,
      initialKeys: OUTCOME_KINDS,
    }),
    verdicts: new FastCounter({
      name: 'dnswarden_verdicts_total', help: 'Verdicts by action, rule, policy mode and session type (observe mode counts would-be actions).', registry, labelsOf: verdictLabels,
      initialKeys: allKeys(VERDICT_ACTIONS.length * VERDICT_RULES.length * VERDICT_MODES.length * VERDICT_SESSION_TYPES.length),
    }),
    malformed: new Counter({ name: 'dnswarden_malformed_total', help: 'Malformed packets: answered with FORMERR/NOTIMP or dropped, by transport and reason.', labelNames: ['transport', 'reason'] as const, registers }),
    transportFaults: new Counter({ name: 'dnswarden_transport_faults_total', help: 'Unexpected errors while handling a packet (a bug if non-zero).', labelNames: ['transport'] as const, registers }),
    refused: new Counter({ name: 'dnswarden_refused_total', help: 'Queries answered REFUSED, by reason (no_session: unknown source; expired: its session expired; unsupported: class or type; rate_limited: over its session\'s rate limit).', labelNames: ['reason'] as const, registers }),
    sessionRateLimited: new Counter({ name: 'dnswarden_session_rate_limited_total', help: 'Queries answered REFUSED because their session was over policy.session_types.<type>.rate_limit, by session type.', labelNames: ['session_type'] as const, registers }),
    tcpConnections: new Gauge({ name: 'dnswarden_tcp_connections', help: 'Open client TCP connections.', registers }),
    queryLogRows: new Counter({ name: 'dnswarden_query_log_rows_total', help: 'Rows of the query log (query_log): written to disk, or dropped (buffer full or the write failed).', labelNames: ['result'] as const, registers }),
    tcpRejected: new Counter({ name: 'dnswarden_tcp_rejected_total', help: 'Client TCP connections closed at once because tcp_max_connections or tcp_max_connections_per_source was reached.', registers }),
    refusedLimited: new Counter({ name: 'dnswarden_refused_limited_total', help: 'REFUSED answers over UDP past their source prefix\'s budget (server.refused_rate_limit): slipped (a minimal TC=1 reply) or dropped.', labelNames: ['action'] as const, registers }),
    tcpEvicted: new Counter({ name: 'dnswarden_tcp_evicted_total', help: 'Unregistered client TCP connections closed to make room for a registered source when tcp_max_connections was reached.', registers }),
    tcpFrameTimeouts: new Counter({ name: 'dnswarden_tcp_frame_timeouts_total', help: 'Client TCP connections closed because a frame was not complete within tcp_frame_timeout_ms.', registers }),
    tcpWritePaused: new Counter({ name: 'dnswarden_tcp_write_paused_total', help: 'Times a client TCP connection stopped being read because its unsent replies exceeded the bound (a client not reading its answers).', registers }),
    cacheHits: new FastCounter({ name: 'dnswarden_cache_hits_total', help: 'Queries answered from the cache.', registry, labelsOf: () => ({}), initialKeys: [0] }),
    cacheMisses: new FastCounter({ name: 'dnswarden_cache_misses_total', help: 'Queries not in the cache (forwarded or coalesced).', registry, labelsOf: () => ({}), initialKeys: [0] }),
    cacheStaleServed: new Counter({ name: 'dnswarden_cache_stale_served_total', help: 'Expired answers served stale (RFC 8767, cache.serve_stale) because every upstream failed.', registers }),
    cacheEntries: new Gauge({ name: 'dnswarden_cache_entries', help: 'Entries in the answer cache.', registers }),
    upstreamDuration: new FastHistogram<string>({
      name: 'dnswarden_upstream_duration_seconds',
      help: 'Upstream round-trip time of answered queries, per upstream.',
      label: 'upstream',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2],
      registry,
    }),
    upstreamFailures: new Counter({ name: 'dnswarden_upstream_failures_total', help: 'Upstream attempts that failed (timeout, network) and upstream replies rejected (mismatch: matched no query in flight or another question; malformed), per upstream and reason.', labelNames: ['upstream', 'reason'] as const, registers }),
    upstreamStripped: new Counter({ name: 'dnswarden_upstream_records_stripped_total', help: 'Records removed from upstream replies as outside the question\'s bailiwick, per upstream.', labelNames: ['upstream'] as const, registers }),
    sessionsLive: new Gauge({ name: 'dnswarden_sessions_live', help: 'Live sessions (static and registered).', registers, aggregator: 'max' }),
    registrations: new Counter({ name: 'dnswarden_registrations_total', help: 'Session registration attempts by result.', labelNames: ['result'] as const, registers }),
    signalValue: new FastHistogram<string>({
      name: 'dnswarden_signal_value',
      help: 'Distribution of each scoring signal value in [0,1], by the verdict action (observe mode: the would-be action), for tuning.',
      labelsOf: signalLabels,
      buckets: [0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1],
      registry,
      initialKeys: Object.values(SIGNAL_KEYS).flatMap((byId) => Object.values(byId)),
    }),
    scoreTotal: new FastHistogram<string>({
      name: 'dnswarden_score', // not _total: it is a histogram (promtool check metrics)
      help: 'Distribution of the combined score per scored query, by session type.',
      label: 'session_type',
      buckets: [0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.5, 2],
      registry,
      initialKeys: VERDICT_SESSION_TYPES,
    }),
    quarantinesRaised: new Counter({ name: 'dnswarden_quarantines_raised_total', help: 'Quarantines raised, by session type.', labelNames: ['session_type'] as const, registers }),
    quarantineDecisions: new Counter({ name: 'dnswarden_quarantine_decisions_total', help: 'Analyst decisions on quarantines (released, confirmed).', labelNames: ['decision'] as const, registers }),
    blockAt: new Gauge({ name: 'dnswarden_policy_block_at', help: 'The score at which a query is blocked (policy.session_types.<type>.block_at), by session type.', labelNames: ['session_type'] as const, registers, aggregator: 'max' }),
    quarantineWritesUnsaved: new Gauge({ name: 'dnswarden_quarantine_writes_unsaved', help: 'Quarantines and their alerts the store refused to write (disk full, I/O error): held in memory, retried with backoff.', registers }),
    fleetConnected: new Gauge({ name: 'dnswarden_fleet_redis_connected', help: 'fleet.redis: 1 while this replica is connected to Redis (and subscribed), else 0.', registers, aggregator: 'min' }),
    fleetOutbox: new Gauge({ name: 'dnswarden_fleet_outbox_events', help: 'fleet.redis: changes made here and queued in the local store, not yet in Redis (they go when Redis is reachable).', registers, aggregator: 'max' }),
    workerSyncTimeouts: new Counter({ name: 'dnswarden_worker_sync_timeouts_total', help: 'server.workers > 1: admin API changes answered before every other worker confirmed applying them (no confirmation within about 1 s), by event kind.', labelNames: ['kind'] as const, registers }),
    fleetCommands: new Counter({ name: 'dnswarden_fleet_redis_commands_total', help: 'fleet.redis: commands sent to Redis, by connection (main: changes and catch-up reads; sub: the subscription; lease: the 1 s heartbeat and alert lease). Never per query.', labelNames: ['connection'] as const, registers }),
    fleetEventsReceived: new Counter({ name: 'dnswarden_fleet_events_received_total', help: 'fleet.redis: changes other replicas made, applied here, by kind.', labelNames: ['kind'] as const, registers }),
    fleetTokenChecks: new Counter({ name: 'dnswarden_fleet_token_checks_total', help: 'fleet.redis: registration tokens checked against the fleet\'s record of ended sessions, by result (ok, revoked: refused; unchecked: Redis away, accepted on what this replica knows; refused: Redis away and fleet.token_check closed; replayed: found later to be a token of a session ended before, the session then ended).', labelNames: ['result'] as const, registers }),
    fleetAdoptionsRefused: new Counter({ name: 'dnswarden_fleet_adoptions_refused_total', help: 'fleet.redis: addresses of sessions registered on other replicas left out here because a static session here overlaps them (each time such a session or its renewal arrives).', registers }),
    fleetAlertLease: new Gauge({ name: 'dnswarden_fleet_alert_lease', help: 'fleet.redis: 1 while this replica holds the lease to post alerts for the whole fleet.', registers }),
    sessionsQuarantined: new Gauge({ name: 'dnswarden_sessions_quarantined', help: 'Sessions currently quarantined.', registers, aggregator: 'max' }),
    oldestOpenQuarantineAge: new Gauge({
      name: 'dnswarden_oldest_open_quarantine_age_seconds', help: 'How long the oldest open quarantine has waited for an analyst (0 when none is open).', registers, aggregator: 'max',
      collect() {
        const age = scrapeHooks.oldestOpenQuarantineAgeSec();
        if (age !== undefined) this.set(age); // undefined: unknown now (store error), keep the last value
      },
    }),
    domainAgeLookups: new Counter({ name: 'dnswarden_domain_age_lookups_total', help: 'Domain-age lookups by source (cache, store, feed, rdap, whois, first_seen) and result.', labelNames: ['source', 'result'] as const, registers }),
    alertsSent: new Counter({ name: 'dnswarden_alerts_delivered_total', help: 'Alert events delivered to webhooks.', labelNames: ['format'] as const, registers }),
    alertFailures: new Counter({ name: 'dnswarden_alert_failures_total', help: 'Failed webhook delivery attempts (retried with backoff).', labelNames: ['format'] as const, registers }),
    alertsPending: new Gauge({ name: 'dnswarden_alerts_pending', help: 'Alert events in the durable outbox not yet delivered.', registers, aggregator: 'max' }),
    // Zone names come from the config (a closed set): app.ts declares each configured one at 0.
    localAnswers: new FastCounter({
      name: 'dnswarden_local_answers_total', help: 'Queries answered from a local zone (never scored), by zone (its configured name) and response code.', registry,
      labelsOf: (key) => ({ zone: zoneNames[Math.floor(key / RCODE_LABELS.length)]!, rcode: RCODE_LABELS[key % RCODE_LABELS.length]! }),
    }),
    /** The dnswarden_local_answers_total series of an answer from `zone` with `rcode`. */
    localAnswerKey: (zone: string, rcode: number): number => zoneId(zone) * RCODE_LABELS.length + (rcode < RCODE_NAMES.length ? rcode : RCODE_NAMES.length),
    rpzHits: new Counter({ name: 'dnswarden_rpz_hits_total', help: 'Queries a response policy zone decided, by policy zone (its configured name) and action (nxdomain, nodata, drop, local; observe mode counts would-be actions).', labelNames: ['zone', 'action'] as const, registers }),
    rpzReloads: new Counter({ name: 'dnswarden_rpz_reloads_total', help: 'Reloads of the response policy zones after one of their files changed, by result (error: the previous zones stay).', labelNames: ['result'] as const, registers }),
    configReloads: new Counter({ name: 'dnswarden_config_reloads_total', help: 'Config reloads (SIGHUP) by result.', labelNames: ['result'] as const, registers }),
  };
  for (const transport of TRANSPORTS) {
    metrics.transportFaults.inc({ transport }, 0);
    for (const reason of MALFORMED_REASONS) metrics.malformed.inc({ transport, reason }, 0);
  }
  for (const reason of ['no_session', 'expired', 'unsupported', 'rate_limited']) metrics.refused.inc({ reason }, 0);
  for (const session_type of VERDICT_SESSION_TYPES) metrics.sessionRateLimited.inc({ session_type }, 0);
  for (const session_type of VERDICT_SESSION_TYPES) metrics.quarantinesRaised.inc({ session_type }, 0);
  for (const decision of ['released', 'confirmed']) metrics.quarantineDecisions.inc({ decision }, 0);
  for (const result of REGISTRATION_RESULTS) metrics.registrations.inc({ result }, 0);
  for (const source of AGE_SOURCES) for (const result of AGE_RESULTS) metrics.domainAgeLookups.inc({ source, result }, 0);
  for (const format of ALERT_FORMATS) { metrics.alertsSent.inc({ format }, 0); metrics.alertFailures.inc({ format }, 0); }
  for (const result of ['ok', 'error']) { metrics.configReloads.inc({ result }, 0); metrics.rpzReloads.inc({ result }, 0); }
  return metrics;
}

