// fleet.redis: alerts posted once for the whole fleet. Every replica writes its alerts to its own durable outbox
// (as with one node) but posts none itself: it moves them, in order, to the fleet's shared queue in Redis (one
// list per webhook, `{fleet.name}:alerts:<webhook>`; an event id already queued is not queued twice). The one
// replica holding the alert lease (`{fleet.name}:alerts-lease`, SET NX PX, renewed every second on the heartbeat
// connection) posts from the shared queue and removes an event only after a 2xx. If it dies, the lease lapses
// within LEASE_MS and another replica takes it and goes on from the same queue.
// The rare duplicate (posted, then the holder died before removing it) carries the same event id, as today.
// Never touches a query; never decides what is alerted.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { messageOf } from '../errors.js';
import type { Metrics } from '../ops/telemetry.js';
import type { Store } from '../store.js';

export interface AlertPoster {
  sinkKeys(): string[];
  /** true: delivered (2xx); false: to retry; undefined: no such webhook here. */
  postTo(sinkKey: string, body: string): Promise<boolean | undefined>;
}

// An event id queued once per webhook: the marker outlives any retry (a week).
const QUEUE_ONCE = `if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then redis.call('RPUSH', KEYS[2], ARGV[1]) end return 0`;
const QUEUED_FOR_MS = 7 * 86_400_000;
// Removes the head only if it is still the event just posted (another holder may have removed it meanwhile).
const POP_IF_HEAD = `if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) return 1 end return 0`;
const SHIP_BATCH = 100;
const LEASE_MS = 4000;
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
const GIVE_UP = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export class FleetAlerts {
  /** Ships to the queues (the connection changes go on). */
  readonly #redis: Redis;
  /** Holds the lease and posts (the heartbeat's connection). */
  readonly #leaseRedis: Redis;
  readonly #nodeId: string;
  #held = false;
  readonly #key: (suffix: string) => string;
  readonly #store: Store;
  readonly #poster: AlertPoster;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  #shipping: Promise<void> | undefined;
  #posting: Promise<void> | undefined;

  constructor(redis: Redis, leaseRedis: Redis, nodeId: string, key: (suffix: string) => string, store: Store, poster: AlertPoster, metrics: Metrics, log: Logger) {
    this.#redis = redis;
    this.#leaseRedis = leaseRedis;
    this.#nodeId = nodeId;
    this.#key = key;
    this.#store = store;
    this.#poster = poster;
    this.#metrics = metrics;
    this.#log = log;
  }

  /** Moves this replica's outbox to the shared queues (while Redis answers); the rows stay on disk until then. */
  ship(): Promise<void> {
    this.#shipping ??= this.#ship().finally(() => { this.#shipping = undefined; });
    return this.#shipping;
  }

  async #ship(): Promise<void> {
    try {
      for (;;) {
        if (this.#redis.status !== 'ready') return;
        const rows = this.#store.outboxHead(SHIP_BATCH);
        if (rows.length === 0) return;
        for (const row of rows) {
          const id = (JSON.parse(row.body) as { id?: string }).id ?? `row-${row.id}`;
          await this.#redis.eval(QUEUE_ONCE, 2, this.#key(`alert-queued:${row.sink}:${id}`), this.#key(`alerts:${row.sink}`), row.body, String(QUEUED_FOR_MS));
          this.#store.outboxDelivered(row.id);
          this.#metrics.alertsPending.set(this.#store.outboxSize());
        }
      }
    } catch (err) {
      this.#log.warn({ err: messageOf(err) }, 'alerts not moved to the fleet queue yet (Redis did not answer): kept in the outbox, retried');
    }
  }

  /** Whether this replica posts the fleet's alerts now. */
  get held(): boolean {
    return this.#held;
  }

  /** Every heartbeat: takes or renews the lease (throws if Redis does not answer), then posts if held. */
  async tick(): Promise<void> {
    const key = this.#key('alerts-lease');
    try {
      const held = this.#held
        ? (await this.#leaseRedis.eval(RENEW, 1, key, this.#nodeId, String(LEASE_MS))) === 1
        : (await this.#leaseRedis.set(key, this.#nodeId, 'PX', LEASE_MS, 'NX')) === 'OK';
      this.#setHeld(held);
    } catch (err) {
      this.#setHeld(false);
      throw err;
    }
    if (this.#held) void this.post();
    void this.ship(); // what an earlier attempt left (one indexed read when the outbox is empty)
  }

  lost(): void {
    this.#setHeld(false);
  }

  #setHeld(held: boolean): void {
    if (held === this.#held) return;
    this.#held = held;
    this.#metrics.fleetAlertLease.set(held ? 1 : 0);
    this.#log.info(held ? 'holding the alert lease: this replica posts the fleet\'s alerts' : 'alert lease lost');
  }

  /** At shutdown: the lease goes at once rather than after it lapses. */
  async giveUp(): Promise<void> {
    if (!this.#held) return;
    this.#setHeld(false);
    if (this.#leaseRedis.status === 'ready') await this.#leaseRedis.eval(GIVE_UP, 1, this.#key('alerts-lease'), this.#nodeId).catch(() => undefined);
  }

  /** The lease holder's round: posts every shared queue's events in order; a webhook that fails waits for the next round. */
  post(): Promise<void> {
    this.#posting ??= this.#post().finally(() => { this.#posting = undefined; });
    return this.#posting;
  }

  async #post(): Promise<void> {
    for (const sink of this.#poster.sinkKeys()) {
      try {
        for (;;) {
          const list = this.#key(`alerts:${sink}`);
          const head = await this.#leaseRedis.lindex(list, 0);
          if (head === null) break;
          const ok = await this.#poster.postTo(sink, head);
          if (ok !== true) break; // retried at the next round (the heartbeat, every second)
          await this.#leaseRedis.eval(POP_IF_HEAD, 1, list, head);
        }
      } catch (err) {
        this.#log.warn({ err: messageOf(err) }, 'fleet alert queue not read (Redis did not answer); retried');
      }
    }
  }
}
