// A worker's side of `server.workers > 1` that the composition root wires in: queries relayed to the worker
// that owns their session, this worker's answers to the admin worker's gatherings, and the admin worker's
// merge of them (metrics summed, a session's history from every worker), and the publisher whose changes the
// admin API waits to see applied by every worker. Never judges a query (the owner's
// pipeline does) and holds no state beyond a per-session owner memo.
import type { Logger } from 'pino';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { QuarantineBook } from '../analyst/quarantine.js';
import type { PacketHandler } from '../dns/transport.js';
import { parseCidr } from '../ops/config.js';
import type { Metrics } from '../ops/telemetry.js';
import type { HistoryEntry, Session, SessionDirectory } from '../sessions/directory.js';
import { shardOf } from './shard.js';
import type { GatherOp, PeerEvent, WorkerLink } from './worker-link.js';

/**
 * With server.workers > 1 every session is judged by one worker, its owner: the shard of its first address
 * (for a one-address session, the worker the kernel steers it to anyway). A query the kernel hands to
 * another worker (a session with several addresses or a CIDR range) is relayed to the owner, whose
 * window then sees all of the session's queries. An owner that is restarting cannot judge: the query is
 * answered here, under the quarantine gate every worker shares.
 */
export function relayingToOwners<S>(answer: PacketHandler, sessions: SessionDirectory<S>, worker: WorkerLink, nowMs: () => number): PacketHandler {
  const owners = new WeakMap<object, number>();
  const ownerOf = (session: Session<S>): number => {
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
export function answerGather<S>(op: GatherOp, metrics: Metrics, sessions: SessionDirectory<S>, quarantines: QuarantineBook, index: number): unknown {
  if (op.op === 'history') return sessions.get(op.sessionId)?.history ?? [];
  if (op.op === 'unsaved_quarantines') return quarantines.notDurable();
  return metrics.registry.getMetricsAsJSON().then((list) => {
    const answered = metrics.queries.get().values.reduce((sum, v) => sum + v.value, 0);
    return [...list, { name: 'dnswarden_worker_queries_total', help: 'Queries answered, by worker (server.workers > 1 only).', type: 'counter', aggregator: 'sum', values: [{ labels: { worker: String(index) }, value: answered }] }];
  });
}

/** The admin worker's /metrics: every worker's metrics summed (gauges every worker holds alike: their max). */
export async function aggregatedMetrics(worker: WorkerLink): Promise<string> {
  const parts = await worker.gather({ op: 'metrics' });
  return AggregatorRegistry.aggregate(parts.filter((p): p is MetricObjectWithValues<MetricValue<string>>[] => Array.isArray(p))).metrics();
}

/** A session's live history across workers (a session with several addresses may be answered by several). */
export async function gatheredHistory(worker: WorkerLink, id: string): Promise<HistoryEntry[]> {
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

/**
 * The admin worker's count of quarantines every worker holds in memory only (their store refused the write),
 * gathered every `everyMs` for /readyz — never per query. A worker that does not answer is counted next round.
 */
export function unsavedAcrossWorkers(worker: WorkerLink, everyMs: number): { count(): number; stop(): void } {
  let count = 0;
  const timer = setInterval(() => {
    void worker.gather({ op: 'unsaved_quarantines' }).then(
      (parts) => { count = parts.reduce((n: number, part) => n + (Array.isArray(part) ? part.length : 0), 0); },
      () => undefined,
    );
  }, everyMs);
  timer.unref();
  return { count: () => count, stop: () => clearInterval(timer) };
}

/**
 * publish() sends a change to the other workers without waiting (the DNS path calls it while answering);
 * othersApplied() resolves once every change published so far is applied by every live worker, or its
 * bound (~1 s) passed, counted and logged. Never rejects. Without workers both do nothing.
 */
export function confirmedPublisher(worker: WorkerLink | undefined, metrics: Metrics, log: Logger): { publish: (event: PeerEvent) => void; othersApplied: () => Promise<void> } {
  const unconfirmed = new Set<Promise<void>>();
  return {
    publish(event) {
      if (worker === undefined) return;
      const done: Promise<void> = worker.publish(event).then(({ missing }) => {
        unconfirmed.delete(done);
        if (missing.length > 0) {
          metrics.workerSyncTimeouts.inc({ kind: event.kind });
          log.warn({ event: event.kind, workers: missing }, 'other workers did not confirm a change in time; answering anyway');
        }
      });
      unconfirmed.add(done);
    },
    othersApplied: async () => { await Promise.all([...unconfirmed]); },
  };
}
