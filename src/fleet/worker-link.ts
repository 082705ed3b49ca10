// A worker's side of the supervisor's IPC channel (server.workers > 1). Workers share no memory:
// what one changes that the others must see (a registration, a quarantine gate, the deny list, a
// cache flush) is published as a PeerEvent, which the supervisor relays to every other worker. The
// admin worker gathers per-worker answers (metrics, a session's live history) the same way.
// Every event is acknowledged: each other worker answers once it has applied it, so an admin API change
// can answer only when every worker holds it (a bounded wait: see publish()). Never waits per query.
import type { Config } from '../ops/config.js';
import type { QuarantineChange } from '../analyst/quarantine.js';
import type { SessionMeta } from '../sessions/directory.js';
import type { AdoptedListener } from '../dns/transport.js';
import type { Peer } from '../dns/wire.js';

export type PeerEvent =
  | { readonly kind: 'session.put'; readonly meta: SessionMeta }
  | { readonly kind: 'session.drop'; readonly id: string }
  | { readonly kind: 'quarantine'; readonly change: QuarantineChange }
  | { readonly kind: 'deny.changed' }
  | { readonly kind: 'cache.flush' }
  | { readonly kind: 'alerts.enqueued' };

export type GatherOp = { readonly op: 'metrics' } | { readonly op: 'history'; readonly sessionId: string } | { readonly op: 'unsaved_quarantines' };

/** Worker → supervisor. */
export type WorkerMessage =
  | { readonly t: 'hello' }
  | { readonly t: 'ready'; readonly adminUrl: string | undefined }
  | { readonly t: 'event'; readonly id: number; readonly event: PeerEvent }
  | { readonly t: 'applied'; readonly id: number }
  | { readonly t: 'gather'; readonly id: number; readonly op: GatherOp }
  | { readonly t: 'gathered'; readonly id: number; readonly value: unknown }
  | { readonly t: 'relay'; readonly id: number; readonly to: number; readonly packet: Uint8Array; readonly peer: Peer }
  | { readonly t: 'relayed'; readonly id: number; readonly to: number; readonly reply: Uint8Array | undefined };

/** Supervisor → worker. */
export type SupervisorMessage =
  | { readonly t: 'config'; readonly config: Config }
  | { readonly t: 'reload-rejected' }
  | { readonly t: 'event'; readonly id: number; readonly event: PeerEvent }
  /** Every other live worker applied event `id`, or (`missing`) these did not say so within the bound. */
  | { readonly t: 'applied'; readonly id: number; readonly missing: readonly number[] }
  | { readonly t: 'gather'; readonly id: number; readonly op: GatherOp }
  | { readonly t: 'gathered'; readonly id: number; readonly values: readonly unknown[] }
  | { readonly t: 'relay'; readonly id: number; readonly from: number; readonly packet: Uint8Array; readonly peer: Peer }
  | { readonly t: 'relayed'; readonly id: number; readonly reply: Uint8Array | undefined; readonly unavailable?: true };

/** What a relayed query came back as: the owner's reply (undefined: send nothing), or its owner was not there. */
export type RelayResult = { readonly reply: Buffer | undefined } | { readonly unavailable: true };

/** What the supervisor tells a worker at fork, in the DNSWARDEN_WORKER environment variable. */
export interface WorkerSpec {
  readonly index: number;
  readonly count: number;
  /** One per listen.dns address, in config order: the port and the fds of this worker's sockets. */
  readonly listeners: readonly AdoptedListener[];
}

export const WORKER_ENV = 'DNSWARDEN_WORKER';
// Longer than any answer takes (resolver.total_timeout_ms is at most a few seconds).
const RELAY_TIMEOUT_MS = 10_000;
/** How long the supervisor waits for the other workers to apply an event (then it answers anyway). */
export const APPLY_TIMEOUT_MS = 1000;
// The publisher's own bound, past the supervisor's: a supervisor that never answers cannot hang the API.
const PUBLISH_TIMEOUT_MS = APPLY_TIMEOUT_MS + 500;

/** How a published event ended: `missing` lists the workers that did not confirm it in time (empty: all did). */
export interface Published {
  readonly missing: readonly number[];
}

/** The spec of this process if the supervisor forked it as a worker, else undefined. */
export function workerSpecFromEnv(env: NodeJS.ProcessEnv = process.env): WorkerSpec | undefined {
  const raw = env[WORKER_ENV];
  if (raw === undefined || process.send === undefined) return undefined;
  return JSON.parse(raw) as WorkerSpec;
}

export class WorkerLink {
  readonly spec: WorkerSpec;
  #nextId = 1;
  readonly #pending = new Map<number, (values: readonly unknown[]) => void>();
  #onEvent: (event: PeerEvent) => void = () => undefined;
  #onGather: (op: GatherOp) => unknown = () => undefined;
  #onRelay: (packet: Buffer, peer: Peer) => Buffer | undefined | Promise<Buffer | undefined> = () => undefined;
  #onConfig: (config: Config) => void = () => undefined;
  #onReloadRejected: () => void = () => undefined;
  /** The config the supervisor validated: every worker runs the same one, whatever the file says now. */
  readonly firstConfig: Promise<Config>;
  readonly #relays = new Map<number, (result: RelayResult) => void>();
  readonly #published = new Map<number, (result: Published) => void>();

  constructor(spec: WorkerSpec) {
    this.spec = spec;
    let first: ((config: Config) => void) | undefined;
    this.firstConfig = new Promise((resolve) => { first = resolve; });
    process.on('message', (m: SupervisorMessage) => {
      if (m.t === 'config') {
        if (first !== undefined) {
          first(m.config);
          first = undefined;
        } else this.#onConfig(m.config);
      } else if (m.t === 'reload-rejected') this.#onReloadRejected();
      else if (m.t === 'event') {
        // Applied before it is acknowledged: the ack means this worker answers with the change in force.
        try { this.#onEvent(m.event); } finally { this.#send({ t: 'applied', id: m.id }); }
      } else if (m.t === 'applied') {
        this.#published.get(m.id)?.({ missing: m.missing });
        this.#published.delete(m.id);
      }
      else if (m.t === 'gather') {
        Promise.resolve()
          .then(() => this.#onGather(m.op))
          .then((value) => this.#send({ t: 'gathered', id: m.id, value }), (err: unknown) => this.#send({ t: 'gathered', id: m.id, value: { error: String(err) } }));
      } else if (m.t === 'gathered') {
        this.#pending.get(m.id)?.(m.values);
        this.#pending.delete(m.id);
      } else if (m.t === 'relay') {
        Promise.resolve()
          .then(() => this.#onRelay(asBuffer(m.packet)!, m.peer))
          .then((reply) => reply, () => undefined) // the pipeline counts and logs its own faults
          .then((reply) => this.#send({ t: 'relayed', id: m.id, to: m.from, reply }));
      } else if (m.t === 'relayed') {
        this.#relays.get(m.id)?.(m.unavailable === true ? { unavailable: true } : { reply: asBuffer(m.reply) });
        this.#relays.delete(m.id);
      }
    });
    this.#send({ t: 'hello' }); // the listener is in place: the config may come now
  }

  /** A config the supervisor re-read and validated on SIGHUP. */
  onReload(apply: (config: Config) => void): void {
    this.#onConfig = apply;
  }

  /** A SIGHUP whose file the supervisor refused (it said why): the worker only counts it. */
  onReloadRejected(count: () => void): void {
    this.#onReloadRejected = count;
  }

  /** The admin worker runs the admin API (and posts alerts); the others only answer DNS. */
  get isAdmin(): boolean {
    return this.spec.index === 0;
  }

  handle(onEvent: (event: PeerEvent) => void, onGather: (op: GatherOp) => unknown): void {
    this.#onEvent = onEvent;
    this.#onGather = onGather;
  }

  /** Answers queries other workers hand over for sessions this worker owns. */
  answerRelays(answer: (packet: Buffer, peer: Peer) => Buffer | undefined | Promise<Buffer | undefined>): void {
    this.#onRelay = answer;
  }

  /** Hands a query to the worker that owns its session and resolves with that worker's reply. */
  relay(to: number, packet: Buffer, peer: Peer): Promise<RelayResult> {
    if (!process.connected) return Promise.resolve({ unavailable: true });
    const id = this.#nextId++;
    return new Promise((resolve) => {
      // An owner that dies with the query in hand never answers: after the bound, nothing is sent
      // (as for a lost packet), and a TCP connection's slot is freed.
      const timer = setTimeout(() => {
        this.#relays.delete(id);
        resolve({ reply: undefined });
      }, RELAY_TIMEOUT_MS);
      this.#relays.set(id, (result) => {
        clearTimeout(timer);
        resolve(result);
      });
      this.#send({ t: 'relay', id, to, packet, peer });
    });
  }

  /**
   * Sends `event` to every other worker; resolves once each live one has applied it, or after the bound
   * (about 1 s) with the ones that did not. Never rejects. A worker restarting is not waited for: it
   * loads from the store when it comes back. The DNS path never awaits this; the admin API does.
   */
  publish(event: PeerEvent): Promise<Published> {
    if (!process.connected) return Promise.resolve({ missing: [] });
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#published.delete(id);
        resolve({ missing: [-1] }); // -1: the supervisor itself did not answer
      }, PUBLISH_TIMEOUT_MS);
      this.#published.set(id, (result) => {
        clearTimeout(timer);
        resolve(result);
      });
      this.#send({ t: 'event', id, event });
    });
  }

  /** Every live worker's answer to `op` (this one's included), in no particular order. */
  gather(op: GatherOp): Promise<readonly unknown[]> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.#send({ t: 'gather', id, op });
    });
  }

  ready(adminUrl: string | undefined): void {
    this.#send({ t: 'ready', adminUrl });
  }

  #send(m: WorkerMessage): void {
    // The channel is gone only while the supervisor is exiting: nothing to tell it then.
    if (process.connected) process.send!(m);
  }
}

/** IPC delivers a Buffer as a Uint8Array: the same bytes, viewed as a Buffer again without a copy. */
function asBuffer(bytes: Uint8Array | undefined): Buffer | undefined {
  if (bytes === undefined) return undefined;
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
