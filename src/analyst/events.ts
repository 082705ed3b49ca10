// What an alert says about a quarantine: the event payload shared by the quarantine book (which
// emits it) and the alerts outbox (which delivers it). Its own module so neither imports the other.
// Never holds state and never performs I/O.
import type { QuarantineRecord } from '../store.js';

export interface QuarantineSummary {
  readonly id: string;
  readonly state: string;
  readonly sessionId: string;
  readonly user: string;
  readonly role: string;
  readonly sessionType: string;
  readonly raisedAtMs: number;
  readonly trigger: unknown;
}

export function summaryOf(q: QuarantineRecord): QuarantineSummary {
  return { id: q.id, state: q.state, sessionId: q.sessionId, user: q.session.user, role: q.session.role, sessionType: q.session.type, raisedAtMs: q.raisedAtMs, trigger: q.evidence.trigger };
}
