// `dnswarden serve` with server.workers > 1: this process answers no query itself. It opens the
// sharded sockets (src/fleet/shard.ts), forks one worker per shard (each a whole dnswarden, handed its
// sockets by fd), relays PeerEvents between them, gathers answers for the admin worker, restarts a
// worker that dies (its sockets stay open here, so its clients' packets wait in the socket buffer
// and keep their worker) and forwards SIGHUP and SIGTERM.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { adminTokenFor } from '../ops/admin-token.js';
import type { Config } from '../ops/config.js';
import { closeShardedListeners, openShardedListeners, type ShardedListener } from './shard.js';
import { Store } from '../store.js';
import { APPLY_TIMEOUT_MS, WORKER_ENV, type PeerEvent, type SupervisorMessage, type WorkerMessage, type WorkerSpec } from './worker-link.js';

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));
const GATHER_TIMEOUT_MS = 2000;
const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;
const STABLE_AFTER_MS = 10_000;
const STOP_GRACE_MS = 10_000;

interface Slot {
  readonly index: number;
  proc: ChildProcess | undefined;
  startedAtMs: number;
  restartDelayMs: number;
  ready: boolean;
}

interface Gathering {
  /** This gathering's key here, the id its workers answer to. */
  readonly key: number;
  readonly from: Slot;
  /** The asking worker's own id for it, sent back with the answers. */
  readonly id: number;
  readonly waiting: Set<number>;
  readonly values: unknown[];
  readonly timer: NodeJS.Timeout;
}

/** An event relayed to the other workers, waiting for each to say it applied it. */
interface Delivery {
  readonly key: number;
  readonly from: Slot;
  readonly id: number;
  readonly kind: PeerEvent['kind'];
  readonly waiting: Set<number>;
  readonly timer: NodeJS.Timeout;
}

// Test-only: holds every event this long before relaying it, to make the race an unacknowledged
// publish would lose deterministic (test/process/workers-ack.test.ts). Unset in production.
const TEST_EVENT_DELAY_ENV = 'DNSWARDEN_TEST_PEER_EVENT_DELAY_MS';

export interface Supervisor {
  /** Resolves once every worker has started (rejects if one exits before). */
  readonly started: Promise<void>;
  stop(): Promise<void>;
  /** Hands a re-read, validated config to every worker (and to every worker started later). */
  reload(config: Config): void;
  /** Tells every worker a SIGHUP's file was refused, so each counts it as it counts its reloads. */
  reloadRejected(): void;
}

export function supervise(config: Config, serveArgs: readonly string[], log: Logger, announce: (line: string) => void): Supervisor {
  // Schema migrations and the admin token happen once, here, before workers race for them.
  Store.open(config.storage.dir).close();
  adminTokenFor(config, config.storage.dir, announce);
  const count = config.server.workers;
  const listeners: ShardedListener[] = openShardedListeners(config.listen.dns, count);
  const slots: Slot[] = Array.from({ length: count }, (_, index) => ({ index, proc: undefined, startedAtMs: 0, restartDelayMs: RESTART_MIN_MS, ready: false }));
  const gatherings = new Map<number, Gathering>();
  let nextGatherId = 1;
  const deliveries = new Map<number, Delivery>();
  let nextDeliveryId = 1;
  const eventDelayMs = Math.max(0, Number(process.env[TEST_EVENT_DELAY_ENV] ?? 0) || 0);
  let stopping = false;
  let adminUrl: string | undefined;
  let startedOk: () => void = () => undefined;
  let startedFail: (err: Error) => void = () => undefined;
  const started = new Promise<void>((ok, fail) => { startedOk = ok; startedFail = fail; });
  let allReady = false;

  const send = (slot: Slot, m: SupervisorMessage): void => {
    if (slot.proc?.connected === true) slot.proc.send(m);
  };

  const finishGathering = (g: Gathering): void => {
    clearTimeout(g.timer);
    gatherings.delete(g.key);
    send(g.from, { t: 'gathered', id: g.id, values: g.values });
  };
  /** A worker answered or is gone: the gathering ends when no live worker is left to answer. */
  const settle = (g: Gathering, index: number, value?: { value: unknown }): void => {
    if (!g.waiting.delete(index)) return;
    if (value !== undefined) g.values.push(value.value);
    if (g.waiting.size === 0) finishGathering(g);
  };

  const finishDelivery = (d: Delivery): void => {
    clearTimeout(d.timer);
    deliveries.delete(d.key);
    const missing = [...d.waiting];
    // The change is in the store: a worker that missed it here reads it there when it restarts.
    if (missing.length > 0) log.warn({ event: d.kind, workers: missing, timeout_ms: APPLY_TIMEOUT_MS }, 'workers did not confirm a change in time; answering anyway');
    send(d.from, { t: 'applied', id: d.id, missing });
  };
  /** A worker applied the event or is gone. */
  const settleDelivery = (d: Delivery, index: number): void => {
    if (!d.waiting.delete(index)) return;
    if (d.waiting.size === 0) finishDelivery(d);
  };
  const deliver = (slot: Slot, id: number, event: PeerEvent): void => {
    // Only live, started workers are waited for; one still starting loads from the store.
    const live = slots.filter((s) => s !== slot && s.ready && s.proc?.connected === true);
    const d: Delivery = { key: nextDeliveryId++, from: slot, id, kind: event.kind, waiting: new Set(live.map((s) => s.index)), timer: setTimeout(() => finishDelivery(d), APPLY_TIMEOUT_MS) };
    deliveries.set(d.key, d);
    for (const other of slots) if (other !== slot) send(other, { t: 'event', id: d.key, event });
    if (live.length === 0) finishDelivery(d);
  };

  let current = config;
  const onMessage = (slot: Slot, m: WorkerMessage): void => {
    switch (m.t) {
      case 'hello':
        // A worker starts on the supervisor's config, not the file: a file edited since (or broken) waits for SIGHUP.
        send(slot, { t: 'config', config: current });
        break;
      case 'ready': {
        slot.ready = true;
        if (slot.index === 0) adminUrl = m.adminUrl;
        if (!allReady && slots.every((s) => s.ready)) {
          allReady = true;
          log.info({ dns: listeners.map((l) => `${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.port}`), admin: adminUrl, workers: count, worker_pids: slots.map((s) => s.proc?.pid), mode: config.policy.mode }, 'dnswarden ready');
          startedOk();
        } else if (allReady) log.info({ worker: slot.index, pid: slot.proc?.pid }, 'worker restarted and ready');
        break;
      }
      case 'event':
        if (eventDelayMs > 0) setTimeout(() => deliver(slot, m.id, m.event), eventDelayMs);
        else deliver(slot, m.id, m.event);
        break;
      case 'applied': {
        const d = deliveries.get(m.id);
        if (d !== undefined) settleDelivery(d, slot.index);
        break;
      }
      case 'gather': {
        // Each gathering gets its own key here; the asking worker's id travels back with the answer.
        const live = slots.filter((s) => s.ready && s.proc?.connected === true);
        const g: Gathering = { key: nextGatherId++, from: slot, id: m.id, waiting: new Set(live.map((s) => s.index)), values: [], timer: setTimeout(() => finishGathering(g), GATHER_TIMEOUT_MS) };
        gatherings.set(g.key, g);
        for (const s of live) send(s, { t: 'gather', id: g.key, op: m.op });
        if (live.length === 0) finishGathering(g);
        break;
      }
      case 'relay': {
        const owner = slots[m.to];
        if (owner === undefined || !owner.ready || owner.proc?.connected !== true) send(slot, { t: 'relayed', id: m.id, reply: undefined, unavailable: true });
        else send(owner, { t: 'relay', id: m.id, from: slot.index, packet: m.packet, peer: m.peer });
        break;
      }
      case 'relayed': {
        const origin = slots[m.to];
        if (origin !== undefined) send(origin, { t: 'relayed', id: m.id, reply: m.reply });
        break;
      }
      case 'gathered': {
        const g = gatherings.get(m.id);
        if (g !== undefined) settle(g, slot.index, { value: m.value });
        break;
      }
    }
  };

  const start = (slot: Slot): void => {
    const spec: WorkerSpec = {
      index: slot.index,
      count,
      listeners: listeners.map((l, j) => ({ port: l.port, udpFd: 4 + 2 * j, tcpFd: 5 + 2 * j })),
    };
    const fds = listeners.flatMap((l) => [l.udpFds[slot.index]!, l.tcpFds[slot.index]!]);
    const proc = fork(CLI, ['serve', ...serveArgs], {
      execArgv: process.execArgv,
      env: { ...process.env, [WORKER_ENV]: JSON.stringify(spec) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...fds],
      serialization: 'advanced',
    });
    slot.proc = proc;
    slot.ready = false;
    slot.startedAtMs = Date.now();
    proc.on('message', (m: WorkerMessage) => onMessage(slot, m));
    proc.on('exit', (code, signal) => {
      slot.proc = undefined;
      slot.ready = false;
      for (const g of [...gatherings.values()]) settle(g, slot.index);
      for (const d of [...deliveries.values()]) settleDelivery(d, slot.index);
      if (stopping) return;
      if (!allReady) {
        startedFail(new Error(`worker ${slot.index} exited during start (code ${code}, signal ${signal})`));
        return;
      }
      if (Date.now() - slot.startedAtMs > STABLE_AFTER_MS) slot.restartDelayMs = RESTART_MIN_MS;
      log.error({ worker: slot.index, code, signal, restart_in_ms: slot.restartDelayMs }, 'worker exited; restarting it');
      setTimeout(() => { if (!stopping) start(slot); }, slot.restartDelayMs).unref();
      slot.restartDelayMs = Math.min(RESTART_MAX_MS, slot.restartDelayMs * 2);
    });
  };

  for (const slot of slots) start(slot);

  const stop = async (): Promise<void> => {
    stopping = true;
    await Promise.all(slots.map((slot) => new Promise<void>((resolve) => {
      const proc = slot.proc;
      if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return resolve();
      const kill = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
      proc.once('exit', () => { clearTimeout(kill); resolve(); });
      proc.kill('SIGTERM');
    })));
    closeShardedListeners(listeners);
    log.info('dnswarden stopped');
  };

  return {
    started: started.catch(async (err: unknown) => {
      await stop();
      throw err;
    }),
    stop,
    reload(next: Config) {
      current = next;
      for (const slot of slots) send(slot, { t: 'config', config: next });
    },
    reloadRejected() {
      for (const slot of slots) send(slot, { t: 'reload-rejected' });
    },
  };
}
