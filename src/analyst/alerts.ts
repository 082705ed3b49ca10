// Structured alert events → log line + every configured webhook, through a durable outbox: an event
// is written to SQLite first (one row per webhook), then delivered in order, one at a time per
// webhook, with exponential backoff; a row is deleted only after a 2xx. A receiver that is down, or
// a restart in between, loses nothing. Each event carries an id so a receiver can drop the rare
// duplicate (delivered, then killed before the row was deleted). Never blocks a query.
import type { Logger } from 'pino';
import type { AlertsConfig } from './alerts-schema.js';
import { messageOf } from '../errors.js';
import type { QuarantineSummary } from './events.js';
import type { Store } from '../store.js';
import type { Metrics } from '../ops/telemetry.js';

export interface AlertEvent {
  readonly type: 'quarantine_raised' | 'quarantine_released' | 'quarantine_confirmed';
  readonly atMs: number;
  readonly quarantine: QuarantineSummary;
  readonly actor?: string;
  readonly reason?: string;
}

export interface Alerts {
  emit(event: AlertEvent): void;
}

interface Sink {
  readonly key: string; // outbox key: format + url, stable across restarts while the config is
  readonly url: string;
  readonly format: 'json' | 'alertmanager';
  readonly timeoutMs: number;
  readonly headers: Readonly<Record<string, string>>;
  timer: NodeJS.Timeout | undefined;
  busy: boolean;
}

export class WebhookAlerts implements Alerts {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #nowMs: () => number;
  readonly #sinks: Sink[];
  readonly #retryInitialMs: number;
  readonly #retryMaxMs: number;
  #closed = false;

  /**
   * With server.workers > 1 every worker writes to the one outbox but only the admin worker posts from
   * it (two posting from one outbox would deliver an event twice); the others call `enqueued` instead.
   */
  readonly #delivers: boolean;
  readonly #enqueued: () => void;

  constructor(config: AlertsConfig, store: Store, log: Logger, metrics: Metrics, nowMs: () => number, delivery: { delivers: boolean; enqueued: () => void } = { delivers: true, enqueued: () => undefined }) {
    this.#delivers = delivery.delivers;
    this.#enqueued = delivery.enqueued;
    this.#store = store;
    this.#log = log;
    this.#metrics = metrics;
    this.#nowMs = nowMs;
    this.#retryInitialMs = config.retry_initial_ms;
    this.#retryMaxMs = config.retry_max_ms;
    this.#sinks = config.webhooks.map((w) => ({
      key: `${w.format} ${w.url}`,
      url: w.format === 'alertmanager' && !w.url.endsWith('/api/v2/alerts') ? `${w.url.replace(/\/$/, '')}/api/v2/alerts` : w.url,
      format: w.format,
      timeoutMs: w.timeout_ms,
      headers: w.headers,
      timer: undefined,
      busy: false,
    }));
    metrics.alertsPending.set(store.outboxSize());
    for (const s of this.#sinks) this.#schedule(s, 0); // deliver what a previous run left behind
  }

  emit(event: AlertEvent): void {
    const body = JSON.stringify({ id: `${event.quarantine.id}:${event.type}`, ...event, at: new Date(event.atMs).toISOString() });
    this.#log.warn({ alert: event.type, quarantine: event.quarantine.id, session: event.quarantine.sessionId, user: event.quarantine.user }, `alert: ${event.type}`);
    if (this.#sinks.length === 0) return;
    this.#store.enqueueOutbox(this.#sinks.map((s) => s.key), body, event.atMs);
    this.#metrics.alertsPending.set(this.#store.outboxSize());
    if (this.#delivers) this.deliverNow();
    else this.#enqueued();
  }

  /** The outbox keys of the configured webhooks (fleet.redis: the shared queues are per key). */
  sinkKeys(): string[] {
    return this.#sinks.map((s) => s.key);
  }

  /**
   * Posts one event from elsewhere (fleet.redis: the fleet's shared queue, when this replica holds the alert lease) to
   * the webhook with this outbox key; counted like any delivery. undefined: no such webhook configured here.
   */
  async postTo(sinkKey: string, body: string): Promise<boolean | undefined> {
    const sink = this.#sinks.find((s) => s.key === sinkKey);
    if (sink === undefined || this.#closed) return undefined;
    const ok = await this.#post(sink, body);
    if (ok) this.#metrics.alertsSent.inc({ format: sink.format });
    else this.#metrics.alertFailures.inc({ format: sink.format });
    return ok;
  }

  /** Drains every sink's outbox now (another worker enqueued an event). */
  deliverNow(): void {
    for (const s of this.#sinks) this.#schedule(s, 0);
  }

  #schedule(sink: Sink, delayMs: number): void {
    if (this.#closed || !this.#delivers || sink.busy || sink.timer !== undefined) return;
    sink.timer = setTimeout(() => {
      sink.timer = undefined;
      void this.#drain(sink);
    }, delayMs);
    sink.timer.unref();
  }

  async #drain(sink: Sink): Promise<void> {
    sink.busy = true;
    let retryInMs: number | undefined;
    try {
      for (;;) {
        if (this.#closed) return;
        const row = this.#store.headOfOutbox(sink.key);
        if (row === undefined) return;
        const wait = row.nextAttemptMs - this.#nowMs();
        if (wait > 0) {
          retryInMs = wait;
          return;
        }
        const ok = await this.#post(sink, row.body);
        if (this.#closed) return;
        if (ok) {
          this.#store.outboxDelivered(row.id);
          this.#metrics.alertsSent.inc({ format: sink.format });
        } else {
          this.#metrics.alertFailures.inc({ format: sink.format });
          const backoff = Math.min(this.#retryMaxMs, this.#retryInitialMs * 2 ** Math.min(row.attempts, 20));
          this.#store.outboxFailed(row.id, this.#nowMs() + backoff);
        }
        this.#metrics.alertsPending.set(this.#store.outboxSize());
      }
    } catch (err) {
      this.#log.error({ err: messageOf(err), sink: sink.url }, 'alert delivery loop failed; retrying');
      retryInMs = this.#retryInitialMs;
    } finally {
      // Every exit frees the sink, so the next emit (or the retry) can drain it again.
      sink.busy = false;
      if (retryInMs !== undefined) this.#schedule(sink, retryInMs);
    }
  }

  async #post(sink: Sink, body: string): Promise<boolean> {
    const payload = sink.format === 'alertmanager' ? JSON.stringify([toAlertmanager(JSON.parse(body) as AlertEvent & { id: string })]) : body;
    try {
      const res = await fetch(sink.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...sink.headers },
        body: payload,
        signal: AbortSignal.timeout(sink.timeoutMs),
      });
      await res.arrayBuffer();
      if (res.ok) return true;
      this.#log.warn({ sink: sink.url, status: res.status }, 'alert webhook refused the event; will retry');
      return false;
    } catch (err) {
      this.#log.warn({ sink: sink.url, err: messageOf(err) }, 'alert webhook unreachable; will retry');
      return false;
    }
  }

  close(): void {
    this.#closed = true;
    for (const s of this.#sinks) if (s.timer !== undefined) clearTimeout(s.timer);
  }
}

/** An Alertmanager v2 alert: a raised quarantine fires; a release or confirmation resolves it (endsAt). */
function toAlertmanager(e: AlertEvent & { id: string }): object {
  const q = e.quarantine;
  const startsAt = new Date(q.raisedAtMs).toISOString();
  return {
    labels: { alertname: 'DnswardenQuarantine', severity: 'critical', session_type: q.sessionType, quarantine_id: q.id, session: q.sessionId, user: q.user },
    annotations: {
      summary: `dnswarden quarantined session ${q.sessionId} (user ${q.user})`,
      description: e.type === 'quarantine_raised' ? `Raised: ${JSON.stringify(q.trigger)}` : `${e.type} by ${e.actor ?? '?'}: ${e.reason ?? ''}`,
      event: e.type,
      event_id: e.id,
    },
    startsAt,
    ...(e.type === 'quarantine_released' ? { endsAt: new Date(e.atMs).toISOString() } : {}),
  };
}
