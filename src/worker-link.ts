// A worker's side of the supervisor's IPC channel (server.workers > 1). Workers share no memory:
// what one changes that the others must see (a registration, a quarantine gate, the deny list, a
// cache flush) is published as a PeerEvent, which the supervisor relays to every other worker. The
// admin worker gathers per-worker answers (metrics, a session's live history) the same way.
import type { QuarantineChange } from './quarantine.js';
import type { SessionMeta } from './sessions.js';
import type { AdoptedListener } from './transport.js';

export type PeerEvent =
  | { readonly kind: 'session.put'; readonly meta: SessionMeta }
  | { readonly kind: 'session.drop'; readonly id: string }
  | { readonly kind: 'quarantine'; readonly change: QuarantineChange }
  | { readonly kind: 'deny.changed' }
  | { readonly kind: 'cache.flush' }
  | { readonly kind: 'alerts.enqueued' };

export type GatherOp = { readonly op: 'metrics' } | { readonly op: 'history'; readonly sessionId: string };

/** Worker → supervisor. */
export type WorkerMessage =
  | { readonly t: 'ready'; readonly adminUrl: string | undefined }
  | { readonly t: 'event'; readonly event: PeerEvent }
  | { readonly t: 'gather'; readonly id: number; readonly op: GatherOp }
  | { readonly t: 'gathered'; readonly id: number; readonly value: unknown };

/** Supervisor → worker. */
export type SupervisorMessage =
  | { readonly t: 'event'; readonly event: PeerEvent }
  | { readonly t: 'gather'; readonly id: number; readonly op: GatherOp }
  | { readonly t: 'gathered'; readonly id: number; readonly values: readonly unknown[] };

/** What the supervisor tells a worker at fork, in the DNSWARDEN_WORKER environment variable. */
export interface WorkerSpec {
  readonly index: number;
  readonly count: number;
  /** One per listen.dns address, in config order: the port and the fds of this worker's sockets. */
  readonly listeners: readonly AdoptedListener[];
}

export const WORKER_ENV = 'DNSWARDEN_WORKER';

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

  constructor(spec: WorkerSpec) {
    this.spec = spec;
    process.on('message', (m: SupervisorMessage) => {
      if (m.t === 'event') this.#onEvent(m.event);
      else if (m.t === 'gather') {
        Promise.resolve()
          .then(() => this.#onGather(m.op))
          .then((value) => this.#send({ t: 'gathered', id: m.id, value }), (err: unknown) => this.#send({ t: 'gathered', id: m.id, value: { error: String(err) } }));
      } else if (m.t === 'gathered') {
        this.#pending.get(m.id)?.(m.values);
        this.#pending.delete(m.id);
      }
    });
  }

  /** The admin worker runs the admin API (and posts alerts); the others only answer DNS. */
  get isAdmin(): boolean {
    return this.spec.index === 0;
  }

  handle(onEvent: (event: PeerEvent) => void, onGather: (op: GatherOp) => unknown): void {
    this.#onEvent = onEvent;
    this.#onGather = onGather;
  }

  publish(event: PeerEvent): void {
    this.#send({ t: 'event', event });
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
