// fleet.redis: replicas on several machines sharing what must hold everywhere — registered sessions, quarantine
// records and gates, the learned deny list, the audit log — through Redis. Every change is first made and stored
// here (SQLite, as with one node), then queued in the local store's `fleet_outbox` table (in the same
// transaction when there is one), then written to Redis (src/fleet/shared-record.ts: the shared record and a
// PUBLISH every replica applies). Redis down or partitioned: nothing here waits for it; the queue grows on disk
// and drains in order when Redis is back, and every (re)connection reads the whole shared record again (a replica
// misses what was published while it was away). Owns the Redis connections, the queue, the heartbeat, the
// catch-up and how received changes reach the replica.
// Never touches the per-query path: no query, cached or judged, sends a Redis command.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { Redis } from 'ioredis';
import { ConfigError, WardenError, messageOf } from '../errors.js';
import type { Config } from '../ops/config.js';
import type { Metrics } from '../ops/telemetry.js';
import type { QuarantineGate, QuarantineRecord, Store } from '../store.js';
import type { RegistrationToken, SessionMeta } from '../sessions/directory.js';
import { SharedRecord, type FleetEvent } from './shared-record.js';
import { FleetAlerts, type AlertPoster } from './fleet-alerts.js';
import { DenyMerge, type Replica } from './replica.js';

// How long a starting replica waits for Redis before answering with what its own store has.
const START_WAIT_MS = 5000;
// The heartbeat: the alert lease is taken or renewed, and a Redis that stopped answering is noticed.
const TICK_MS = 1000;
const COMMAND_TIMEOUT_MS = 2000;
// A session dropped lately is not brought back by a snapshot read before the drop.
const TOMBSTONE_MS = 60_000;

/** The URL and password (from password_file when given) for fleet.redis; a file that cannot be read names the field. */
export function redisTarget(config: NonNullable<Config['fleet']['redis']>): { url: string; password: string | undefined } {
  if (config.password_file === undefined) return { url: config.url, password: undefined };
  try {
    return { url: config.url, password: readFileSync(config.password_file, 'utf8').trim() };
  } catch (err) {
    throw new ConfigError('fleet.redis.password_file', `cannot read ${config.password_file}: ${messageOf(err)}`);
  }
}

export class RedisFleet {
  readonly nodeId = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  readonly #store: Store;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #nowMs: () => number;
  readonly #replica: Replica;
  readonly #main: Redis;
  readonly #sub: Redis;
  /** The heartbeat's own connection: its steady commands are told apart from changes and reads in the metric. */
  readonly #lease: Redis;
  readonly #k: (suffix: string) => string;
  readonly #channel: string;
  #subscribed = false;
  #healthy = false;
  #closed = false;
  #flushing: Promise<void> | undefined;
  #syncAgain = false;
  #syncing: Promise<void> | undefined;
  #tick: NodeJS.Timeout | undefined;
  readonly #alerts: FleetAlerts | undefined;
  readonly #record: SharedRecord;
  readonly #tombstones = new Map<string, number>();
  readonly #deny: DenyMerge;
  /** Tokens of registrations accepted here while Redis could not be asked: their session.put says so. */
  readonly #unchecked = new Set<string>();
  /** Events the outbox refused (the store failing): kept in order and written before anything newer. */
  readonly #unqueued: FleetEvent[] = [];

  readonly #drains: boolean;
  /** fleet.token_check: what a registration with a token gets while Redis cannot be asked. */
  readonly #tokenCheck: Config['fleet']['token_check'];

  /** `drains`: this process sends the store's queue to Redis (false for all but one worker of server.workers > 1). */
  constructor(config: Config['fleet'], store: Store, metrics: Metrics, log: Logger, nowMs: () => number, replica: Replica, alerts?: AlertPoster, drains = true) {
    this.#drains = drains;
    this.#tokenCheck = config.token_check;
    const { url, password } = redisTarget(config.redis!);
    this.#store = store;
    this.#metrics = metrics;
    this.#log = log.child({ component: 'fleet' });
    this.#nowMs = nowMs;
    this.#replica = replica;
    this.#deny = new DenyMerge(replica);
    // A hash tag: every key of one fleet lands in one Redis Cluster slot, so the claim script may touch several.
    this.#k = (suffix) => `{${config.name}}:${suffix}`;
    this.#channel = this.#k('events');
    this.#main = this.#client(url, password, 'main');
    this.#sub = this.#client(url, password, 'sub');
    this.#lease = this.#client(url, password, 'lease');
    this.#record = new SharedRecord(this.#main, this.#k, this.nodeId, nowMs, this.#log);
    this.#alerts = alerts === undefined ? undefined : new FleetAlerts(this.#main, this.#lease, this.nodeId, this.#k, store, alerts, metrics, this.#log);
    this.#sub.on('message', (_channel: string, text: string) => this.#received(text));
    this.#main.on('ready', () => { this.#healthy = true; this.#changed(); this.#resync(); });
    this.#sub.on('ready', () => {
      this.#sub.subscribe(this.#channel).then(() => { this.#subscribed = true; this.#changed(); this.#resync(); }, (err: unknown) => this.#log.warn({ err: messageOf(err) }, 'could not subscribe to the fleet channel; retrying on reconnect'));
    });
    this.#sub.on('close', () => { this.#subscribed = false; this.#changed(); });
    this.#main.on('close', () => { this.#healthy = false; this.#changed(); });
    this.#metrics.fleetOutbox.set(this.queued());
    for (const result of ['ok', 'revoked', 'unchecked', 'refused', 'replayed']) this.#metrics.fleetTokenChecks.inc({ result }, 0);
  }

  #client(url: string, password: string | undefined, role: string): Redis {
    const client = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false, // a command while Redis is away fails at once: the outbox keeps it, not memory
      maxRetriesPerRequest: 0,
      connectTimeout: COMMAND_TIMEOUT_MS,
      commandTimeout: COMMAND_TIMEOUT_MS,
      autoResubscribe: false, // resubscribed (and the record re-read) on every 'ready'
      retryStrategy: (attempt: number) => Math.min(100 * attempt, 1000),
      keepAlive: 1000,
      connectionName: `dnswarden-${role}`,
      ...(password === undefined ? {} : { password }),
    });
    // Every command either connection sends is counted: the proof that queries send none.
    const send = client.sendCommand.bind(client);
    const counted = this.#metrics.fleetCommands.labels({ connection: role });
    client.sendCommand = ((command, stream) => { counted.inc(); return send(command, stream); }) as typeof client.sendCommand;
    let errorLogged = false;
    client.on('error', (err: Error) => {
      if (!errorLogged) this.#log.warn({ connection: role, err: messageOf(err) }, 'Redis unreachable: answering with what this replica knows; changes are queued on disk');
      errorLogged = true;
    });
    client.on('ready', () => {
      if (errorLogged) this.#log.info({ connection: role }, 'Redis reachable again');
      errorLogged = false;
    });
    return client;
  }

  /** Connected to Redis and subscribed: changes made elsewhere reach this replica. */
  get connected(): boolean {
    return this.#askable && this.#subscribed;
  }

  /** The main connection answers: the shared record can be read and written (a token checked, an address claimed). */
  get #askable(): boolean { return this.#healthy && this.#main.status === 'ready'; }

  #changed(): void {
    this.#metrics.fleetConnected.set(this.connected ? 1 : 0);
  }

  /** Connects and catches up on the shared record; resolves after at most START_WAIT_MS even if Redis is away. */
  async start(): Promise<void> {
    this.#main.connect().catch(() => undefined); // reconnects by itself (retryStrategy); errors are logged once
    this.#sub.connect().catch(() => undefined);
    this.#lease.connect().catch(() => undefined);
    this.#tick = setInterval(() => void this.#heartbeat(), TICK_MS);
    this.#tick.unref();
    const deadline = Date.now() + START_WAIT_MS;
    while (!this.connected && Date.now() < deadline && !this.#closed) await new Promise((ok) => setTimeout(ok, 20));
    if (!this.connected) {
      this.#log.warn({ waited_ms: START_WAIT_MS }, 'Redis not reachable at start: answering from the local store; catching up when it is');
      return;
    }
    await this.#resync();
  }

  /** Changes in the local outbox not yet in Redis. */
  queued(): number {
    try {
      return this.#store.fleetOutboxCount() + this.#unqueued.length;
    } catch {
      return this.#unqueued.length; // the store failing is reported by /readyz; a gauge is no reason to throw
    }
  }

  /**
   * Queues a change made here for the fleet: written to the local store at once (inside the caller's transaction,
   * if any, so it is queued exactly when the change commits), sent when Redis is reachable.
   */
  publish(event: FleetEvent): void {
    if (this.#closed) return;
    if (this.#unqueued.length === 0) {
      try {
        this.#store.fleetOutboxAppend(JSON.stringify(event));
      } catch (err) {
        if (this.#store.inTransaction) throw err; // the caller's change rolls back with it
        this.#log.error({ kind: event.kind, err: messageOf(err) }, 'fleet change not queued on disk (the store refused): kept in memory and retried');
        this.#unqueued.push(event);
      }
    } else this.#unqueued.push(event);
    this.#metrics.fleetOutbox.set(this.queued());
    setImmediate(() => void this.flush());
  }

  /**
   * Checks a registration's token against the fleet's record of ended sessions (refused with ERR_TOKEN_REVOKED if
   * its session was ended on any replica), then claims its addresses across the fleet: the first session to claim
   * an address holds it until it ends or expires; another gets ERR_SESSION_CONFLICT (409). Redis away: neither can
   * be asked; with `fleet.token_check: open` (the default) the registration proceeds on what this replica knows
   * (agents register through an outage), counted and logged, and its token is checked when the registration reaches
   * Redis (README, "Running a fleet"); with `closed` a registration with a token is refused (ERR_FLEET_UNAVAILABLE, 503)
   * unless its token was checked — only the token check is refused, never after the address claim began (a refusal
   * then would leave the claim held in Redis, with nothing here to give it back).
   */
  async claim(meta: SessionMeta, token?: RegistrationToken): Promise<void> {
    let tokenChecked = false; // the fleet's record said this token's session was not ended: closed mode has its answer
    // Redis could not be asked: accepted unchecked (open), or refused (closed) unless the token was checked already
    const redisAway = (why: string): void => {
      if (token === undefined) return;
      if (this.#tokenCheck === 'closed' && !tokenChecked) {
        this.#metrics.fleetTokenChecks.inc({ result: 'refused' });
        this.#log.warn({ session: meta.id, why }, 'registration refused: Redis cannot be asked whether its token was ended elsewhere (fleet.token_check: closed)');
        throw new WardenError('ERR_FLEET_UNAVAILABLE', `the fleet's record of ended sessions cannot be read (${why}) and fleet.token_check is closed: register again when Redis is back`);
      }
      this.#unchecked.add(token.id);
      this.#metrics.fleetTokenChecks.inc({ result: 'unchecked' });
      this.#log.warn({ session: meta.id, why }, 'registration accepted without the fleet\'s record of ended sessions (a token of a session ended on another replica would get through here): checked when Redis is back');
    };
    if (token !== undefined) this.#unchecked.delete(token.id); // each registration with it is decided afresh
    // closed needs only the main connection to ask (a lost subscription does not stop the check)
    if (!(this.#tokenCheck === 'closed' ? this.#askable : this.connected)) return redisAway('Redis not connected');
    let holder: string | undefined;
    try {
      if (token !== undefined) {
        const endedAtMs = await this.#record.useToken(token, meta.id, meta.registeredAtMs);
        if (endedAtMs !== undefined) {
          this.#metrics.fleetTokenChecks.inc({ result: 'revoked' });
          this.#log.warn({ session: meta.id, ended_at: new Date(endedAtMs).toISOString() }, 'registration refused: its token registered a session since ended (on some replica of the fleet)');
          throw new WardenError('ERR_TOKEN_REVOKED', `this token registered session "${meta.id}", which was ended at ${new Date(endedAtMs).toISOString()} (on a replica of the fleet); sign a new token to register again`);
        }
        this.#metrics.fleetTokenChecks.inc({ result: 'ok' });
        tokenChecked = true; // a failure of the address claim below no longer refuses it: as in open mode
      }
      holder = await this.#record.claim(meta);
    } catch (err) {
      if (err instanceof WardenError) throw err;
      this.#log.warn({ session: meta.id, err: messageOf(err) }, 'address claim not made (Redis did not answer): registering on what this replica knows');
      return redisAway('Redis did not answer');
    }
    if (holder !== undefined) throw new WardenError('ERR_SESSION_CONFLICT', `an address in ${JSON.stringify(meta.addresses)} is already owned by live session "${holder}" (on another replica)`);
  }

  /** A registration (or renewal) stored here, for the fleet: with its token, marked if Redis could not check it. */
  registered(meta: SessionMeta, token: RegistrationToken): void {
    const unchecked = this.#unchecked.delete(token.id);
    this.publish({ kind: 'session.put', meta, token, ...(unchecked ? { unchecked: true as const } : {}) });
  }

  /** A claimed registration this replica refused after all: its addresses are free again (best effort; they expire anyway). */
  unclaim(meta: SessionMeta): void {
    if (!this.connected) return;
    this.#record.unclaim(meta).catch((err: unknown) => this.#log.warn({ session: meta.id, err: messageOf(err) }, 'address claim not given back (it expires with the session)'));
  }

  /** Writes the queued changes to Redis, oldest first; stops at the first failure (the rest wait for the next try). */
  flush(): Promise<void> {
    // With server.workers > 1 the workers share one store and its queue: one worker sends it, so nothing goes twice.
    if (!this.#drains) return Promise.resolve();
    if (this.#flushing !== undefined) return this.#flushing;
    // A fault here (the store failing) is logged, never an unhandled rejection: the queue is retried on the next beat.
    this.#flushing = this.#drain()
      .catch((err: unknown) => this.#log.error({ err: messageOf(err) }, 'fleet queue not read (the store failed); retried'))
      .finally(() => { this.#flushing = undefined; });
    return this.#flushing;
  }

  async #drain(): Promise<void> {
    while (!this.#closed && this.#main.status === 'ready') {
      // What the store refused before goes to disk first, in order.
      while (this.#unqueued.length > 0) {
        try {
          this.#store.fleetOutboxAppend(JSON.stringify(this.#unqueued[0]));
          this.#unqueued.shift();
        } catch {
          break;
        }
      }
      const row = this.#store.fleetOutboxHead();
      if (row === undefined) break;
      try {
        const { replayed } = await this.#record.send(JSON.parse(row.event) as FleetEvent);
        if (replayed !== undefined) this.#replayed(replayed.meta, replayed.endedAtMs);
      } catch (err) {
        this.#log.warn({ err: messageOf(err), queued: this.queued() }, 'fleet change not sent to Redis: kept queued, retried');
        break;
      }
      this.#store.fleetOutboxDelete(row.id);
      this.#metrics.fleetOutbox.set(this.queued());
    }
    this.#metrics.fleetOutbox.set(this.queued());
  }

  /** A registration accepted while Redis was away turned out to use the token of a session ended before: ended now. */
  #replayed(meta: SessionMeta, endedAtMs: number): void {
    this.#metrics.fleetTokenChecks.inc({ result: 'replayed' });
    this.#log.error({ session: meta.id, registered_at: new Date(meta.registeredAtMs).toISOString(), ended_at: new Date(endedAtMs).toISOString() }, 'a registration accepted while Redis was away used the token of a session ended before (a replay): the session is ended');
    try {
      this.#replica.replayed(meta);
    } catch (err) {
      this.#log.error({ session: meta.id, err: messageOf(err) }, 'could not end the replayed session (end it with DELETE /v1/sessions/:id)');
    }
  }

  #received(text: string): void {
    let message: { o: string; e: FleetEvent };
    try {
      message = JSON.parse(text) as { o: string; e: FleetEvent };
    } catch {
      this.#log.error('unparsable message on the fleet channel: ignored');
      return;
    }
    if (message.o === this.nodeId) return;
    this.#apply(message.e);
  }

  #apply(event: FleetEvent): void {
    try {
      switch (event.kind) {
        case 'session.put':
          if (this.#tombstones.has(event.meta.id) && (this.#tombstones.get(event.meta.id)! > event.meta.registeredAtMs)) return;
          this.#tombstones.delete(event.meta.id);
          this.#replica.putSession(event.meta, event.token);
          break;
        case 'session.drop':
          this.#tombstones.set(event.id, this.#nowMs());
          this.#replica.dropSession(event.id, event.endedAtMs);
          break;
        case 'quarantine.record': this.#replica.quarantine(event.record); break;
        case 'quarantine.gate': this.#replica.gate(event.gate); break;
        case 'deny.put': if (this.#deny.put(event.entry)) this.#replica.denyChanged(); break;
        case 'deny.drop': if (this.#deny.drop(event.domain, event.atMs)) this.#replica.denyChanged(); break;
        case 'deny.list': // an older replica's snapshot: adds only
          if (event.entries.map((entry) => this.#deny.put(entry)).includes(true)) this.#replica.denyChanged();
          break;
        case 'audit': this.#replica.audit(event.entry); break;
      }
      this.#metrics.fleetEventsReceived.inc({ kind: event.kind });
    } catch (err) {
      this.#log.error({ kind: event.kind, err: messageOf(err) }, 'could not apply a change from another replica (it is read again at the next reconnection)');
    }
  }

  /** Learned deny changes made here (by any worker of this replica) still queued: newer than the record. */
  #denyQueued(): FleetEvent[] {
    return [...this.#store.fleetOutboxOfKind('deny.').map((e) => JSON.parse(e) as FleetEvent), ...this.#unqueued];
  }

  /** Sends what is queued, then reads the whole shared record (on start and on every reconnection). */
  #resync(): Promise<void> {
    if (this.#syncing !== undefined) {
      this.#syncAgain = true;
      return this.#syncing;
    }
    this.#syncing = (async () => {
      do {
        this.#syncAgain = false;
        if (!this.connected) return;
        await this.flush();
        void this.#alerts?.ship();
        try {
          await this.#readAll(); // a fault (Redis or the store) is logged; the record is read again next time
        } catch (err) {
          this.#log.warn({ err: messageOf(err) }, 'could not read the shared record from Redis; read again at the next reconnection');
        }
      } while (this.#syncAgain && !this.#closed);
    })().finally(() => { this.#syncing = undefined; });
    return this.#syncing;
  }

  /**
   * Whether the Redis reached now is not the one this replica last synced with (restarted empty, or replaced): its
   * `epoch` key is set once by whichever replica reaches it first and remembered in each replica's store.
   */
  async #redisLostItsRecord(): Promise<boolean> {
    await this.#main.set(this.#k('epoch'), `${this.nodeId}-${this.#nowMs()}`, 'NX');
    const epoch = await this.#main.get(this.#k('epoch'));
    const known = this.#store.fleetMeta('epoch');
    if (epoch !== null) this.#store.setFleetMeta('epoch', epoch);
    return known !== undefined && known !== epoch;
  }

  async #readAll(): Promise<void> {
    const lost = await this.#redisLostItsRecord();
    if (lost) {
      // Everything this replica knows goes back first (every replica does the same: the union is what held).
      this.#log.warn('Redis lost the shared record (restarted empty or replaced): writing back what this replica holds');
      for (const meta of this.#replica.registered()) this.publish({ kind: 'session.put', meta });
      await this.flush(); // the learned deny list is written back below, entry by entry, as on every catch-up
    }
    const [quarantines, gates, sessions, deny] = await Promise.all([
      this.#main.hgetall(this.#k('quarantines')),
      this.#main.hgetall(this.#k('gates')),
      this.#main.hgetall(this.#k('sessions')),
      this.#main.hgetall(this.#k('deny-entries')),
    ]);
    const now = this.#nowMs();
    for (const text of Object.values(quarantines)) this.#apply({ kind: 'quarantine.record', record: JSON.parse(text) as QuarantineRecord });
    for (const text of Object.values(gates)) this.#apply({ kind: 'quarantine.gate', gate: JSON.parse(text) as QuarantineGate });
    for (const text of Object.values(sessions)) {
      const meta = JSON.parse(text) as SessionMeta;
      if (meta.expiresAtMs > now && !this.#tombstones.has(meta.id)) this.#apply({ kind: 'session.put', meta });
    }
    // The learned deny list entry by entry; an entry the record never heard of (added before this replica joined,
    // or Redis lost its data) goes back.
    const unknown = this.#deny.catchUp(deny, this.#denyQueued());
    for (const entry of unknown) this.publish({ kind: 'deny.put', entry });
    // A shared record that lost a quarantine held here (Redis restarted empty) gets it back: a quarantine is never shed.
    const missing = this.#replica.held().filter((q) => quarantines[q.id] === undefined);
    for (const q of missing) this.publish({ kind: 'quarantine.record', record: q });
    this.#log.info({ quarantines: Object.keys(quarantines).length, sessions: Object.keys(sessions).length, deny_entries: Object.keys(deny).length, written_back: missing.length + unknown.length }, 'caught up with the fleet');
  }

  /** Whether this replica posts the fleet's alerts now. */
  get leaseHeld(): boolean {
    return this.#alerts?.held ?? false;
  }

  /** This replica enqueued an alert: it goes to the fleet's shared queue (posted by the lease holder). */
  alertsEnqueued(): void {
    void this.#alerts?.ship();
  }

  /** Every TICK_MS on its own connection: the alert lease is taken or renewed, and a Redis that stops answering is noticed. */
  async #heartbeat(): Promise<void> {
    if (this.#closed || this.#lease.status !== 'ready') return this.#alerts?.lost();
    try {
      await this.#alerts?.tick();
      if (this.#alerts === undefined) await this.#lease.ping();
      if (!this.#healthy && this.#main.status === 'ready') { this.#healthy = true; this.#changed(); void this.#resync(); }
    } catch (err) {
      // Partitioned without the socket closing: commands time out.
      if (this.#healthy) this.#log.warn({ err: messageOf(err) }, 'Redis stopped answering: treated as disconnected');
      this.#healthy = false;
      this.#changed();
      return;
    }
    void this.flush(); // what other workers queued, or what a failed send left (one indexed read when empty)
    const now = this.#nowMs();
    for (const [id, at] of this.#tombstones) if (now - at > TOMBSTONE_MS) this.#tombstones.delete(id);
    this.#deny.prune(now);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#tick);
    await this.flush().catch(() => undefined);
    await this.#alerts?.giveUp();
    this.#closed = true;
    this.#main.disconnect();
    this.#sub.disconnect();
    this.#lease.disconnect();
    this.#metrics.fleetConnected.set(0);
  }
}
