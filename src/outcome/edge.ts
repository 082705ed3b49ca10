// The DNS edge of the query path: a client's packet → Query (malformed input answered or dropped, and counted),
// and an Outcome → the reply bytes. Owns the one table of what each outcome and rule is answered with (rcode,
// RFC 8914 EDE code, EDE text) — Blocky's mapping, in one place. Never decides, never logs, never writes sockets
// (transport.ts does); the byte-level encoding is src/dns/wire.ts's.
import { assertNever } from '../errors.js';
import type { Metrics } from '../ops/telemetry.js';
import { RCODE, encodeForwardedReply, encodeLocalReply, encodeSynthReply, decodeQuery, type Peer, type Query, type SynthOptions } from '../dns/wire.js';
import { rpzLocalRecords, type RpzMatch } from '../zones/rpz.js';
import type { RuleId } from '../policy/judge.js';
import type { FailureEde, Outcome, RefusedReason } from './outcome.js';

interface Answer {
  readonly rcode: SynthOptions['rcode'];
  readonly ede: number;
  /** undefined: the outcome's own text (a block's reason and event id, a fault's message). */
  readonly text: string | undefined;
}

/**
 * Every outcome's rcode, EDE code and text. A block is NXDOMAIN with 17 (Filtered) when a list or policy zone
 * named the domain, 15 (Blocked) when the score, evidence or the quarantine decided (an RPZ trigger's own action
 * picks its rcode, below). A refusal is REFUSED: 18 (Prohibited) without a session, 21 (Not Supported) for a
 * class or type we never answer, 0 (Other) for a rate limit — RFC 8914 has no code for it, and the text says it.
 * A failure is SERVFAIL: the agent learns that the upstreams failed, not where they are; the log has the detail.
 */
export const EDGE: {
  readonly blocked: Readonly<Record<RuleId, Answer>>;
  readonly refused: Readonly<Record<RefusedReason, Answer>>;
  readonly failed: Readonly<Record<FailureEde, Answer>>;
} = {
  blocked: {
    deny_list: { rcode: 'NXDOMAIN', ede: 17, text: undefined },
    learned_deny: { rcode: 'NXDOMAIN', ede: 17, text: undefined },
    rpz: { rcode: 'NXDOMAIN', ede: 17, text: undefined },
    threshold: { rcode: 'NXDOMAIN', ede: 15, text: undefined },
    accumulation: { rcode: 'NXDOMAIN', ede: 15, text: undefined },
    sticky: { rcode: 'NXDOMAIN', ede: 15, text: undefined },
    bandwidth: { rcode: 'NXDOMAIN', ede: 15, text: undefined },
    rebinding: { rcode: 'NXDOMAIN', ede: 15, text: undefined },
    quarantined: { rcode: 'NXDOMAIN', ede: 15, text: undefined },
    allow_list: { rcode: 'NXDOMAIN', ede: 15, text: undefined }, // never blocks; here so the table is total
    none: { rcode: 'NXDOMAIN', ede: 15, text: undefined },
  },
  refused: {
    no_session: { rcode: 'REFUSED', ede: 18, text: 'no session registered for this source address' },
    expired: { rcode: 'REFUSED', ede: 18, text: 'session expired: no session registered for this source address' },
    unsupported: { rcode: 'REFUSED', ede: 21, text: 'query class or type not supported' },
    rate_limited: { rcode: 'REFUSED', ede: 0, text: 'rate limited: this session is over its query rate limit, slow down' },
  },
  failed: {
    22: { rcode: 'SERVFAIL', ede: 22, text: 'no upstream answered in time' },
    23: { rcode: 'SERVFAIL', ede: 23, text: 'upstream unreachable' },
    0: { rcode: 'SERVFAIL', ede: 0, text: undefined },
  },
};

// Blocked answers carry an SOA so stub resolvers cache them briefly (RFC 2308) but not past a release.
const BLOCK_NEGATIVE_TTL_SEC = 5;

/** A client's packet as a Query, or what to answer (FORMERR/NOTIMP, undefined: drop) — counted by reason. */
export function decodePacket(packet: Buffer, peer: Peer, atMs: number, udpPayloadSize: number, metrics: Metrics): Query | { readonly reply: Buffer | undefined } {
  const decoded = decodeQuery(packet, peer, atMs, udpPayloadSize);
  if (decoded.ok) return decoded.query;
  metrics.malformed.inc({ transport: peer.transport, reason: decoded.reason });
  return { reply: decoded.reply };
}

/** The rcode an outcome is answered with (the history and the query metric record it before the bytes exist). */
export function rcodeOf(outcome: Outcome): number {
  switch (outcome.kind) {
    case 'answered': return outcome.reply.rcode;
    case 'local': return outcome.reply.tail !== undefined ? outcome.reply.tail.reply.rcode : RCODE[outcome.reply.rcode];
    case 'blocked': {
      if (outcome.rewrite !== undefined) return outcome.rewrite.tail !== undefined ? outcome.rewrite.tail.reply.rcode : RCODE[outcome.rewrite.rcode];
      const rpz = outcome.verdict.rpz?.action.kind;
      if (rpz === undefined) return RCODE[EDGE.blocked[outcome.verdict.rule].rcode];
      return rpz === 'nxdomain' ? RCODE.NXDOMAIN : rpz === 'drop' ? RCODE.REFUSED : RCODE.NOERROR;
    }
    case 'refused': return RCODE[EDGE.refused[outcome.reason].rcode];
    case 'failed': return RCODE[EDGE.failed[outcome.ede].rcode];
    default: return assertNever(outcome);
  }
}

/** The reply bytes for an outcome. */
export function encodeOutcome(q: Query, outcome: Outcome, size: number): Buffer {
  switch (outcome.kind) {
    case 'answered':
      return encodeForwardedReply(q, outcome.reply, outcome.ageSec, size, outcome.staleTtlSec);
    case 'local':
      return encodeLocalReply(q, outcome.reply, size);
    case 'blocked': {
      const a = EDGE.blocked[outcome.verdict.rule];
      const ede = { code: a.ede, text: a.text ?? outcome.text };
      if (outcome.rewrite !== undefined) return encodeLocalReply(q, { ...outcome.rewrite, ede }, size);
      if (outcome.verdict.rpz !== undefined) return encodeRpzReply(q, outcome.verdict.rpz, ede, size);
      return encodeSynthReply(q, { rcode: a.rcode, ede, negativeTtlSec: BLOCK_NEGATIVE_TTL_SEC }, size);
    }
    case 'refused': {
      const a = EDGE.refused[outcome.reason];
      return encodeSynthReply(q, { rcode: a.rcode, ede: { code: a.ede, text: a.text ?? '' } }, size);
    }
    case 'failed': {
      const a = EDGE.failed[outcome.ede];
      return encodeSynthReply(q, { rcode: a.rcode, ede: { code: a.ede, text: a.text ?? outcome.error.message } }, size);
    }
    default:
      return assertNever(outcome);
  }
}

/**
 * What a policy zone's trigger answers, always with its EDE (17, Filtered, naming the zone): NXDOMAIN; NODATA;
 * DROP as REFUSED (an agent must never wait out a timeout); local data as a NOERROR answer with the
 * trigger's records of the asked type (or its CNAME) under the query's name, NODATA when it has none.
 */
function encodeRpzReply(q: Query, rpz: RpzMatch, ede: { readonly code: number; readonly text: string }, size: number): Buffer {
  switch (rpz.action.kind) {
    case 'nxdomain': return encodeSynthReply(q, { rcode: 'NXDOMAIN', ede, negativeTtlSec: BLOCK_NEGATIVE_TTL_SEC }, size);
    case 'nodata':
    case 'passthru': // never blocked (judge scores it); here for completeness
      return encodeSynthReply(q, { rcode: 'NOERROR', ede, negativeTtlSec: BLOCK_NEGATIVE_TTL_SEC }, size);
    case 'drop': return encodeSynthReply(q, { rcode: 'REFUSED', ede }, size);
    case 'local': {
      const records = rpzLocalRecords(rpz, q.type);
      if (records.length === 0) return encodeSynthReply(q, { rcode: 'NOERROR', ede, negativeTtlSec: BLOCK_NEGATIVE_TTL_SEC }, size);
      return encodeLocalReply(q, { rcode: 'NOERROR', authoritative: false, answer: records.map((r) => ({ name: q.name, type: r.type, ttl: r.ttl, rdata: r.rdata })), authority: [], additional: [], ede }, size);
    }
    default: return assertNever(rpz.action);
  }
}
