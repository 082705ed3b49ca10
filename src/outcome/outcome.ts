// What one query came to (the query path's result). Owns the Outcome type,
// so the pipeline that makes outcomes and the edge that encodes them share it without importing each other.
// Never encodes bytes, never logs, never decides.
import type { WardenError } from '../errors.js';
import type { LocalReplyOptions, Reply } from '../dns/wire.js';
import type { Verdict } from '../policy/judge.js';

export type RefusedReason = 'no_session' | 'expired' | 'unsupported' | 'rate_limited';
/** 22 No Reachable Authority, 23 Network Error, 0 Other (a fault of ours). */
export type FailureEde = 0 | 22 | 23;

export type Outcome =
  | { readonly kind: 'answered'; readonly via: 'cache' | 'upstream'; readonly reply: Reply; readonly ageSec: number; readonly verdict: Verdict | undefined; readonly eventId: string | undefined; /** A stale answer (RFC 8767): its TTLs. */ readonly staleTtlSec?: number | undefined }
  /** Answered from a local zone (`zone`: its origin), never judged; `reply` may end in a forwarded CNAME target's answer. */
  | { readonly kind: 'local'; readonly zone: string; readonly reply: LocalReplyOptions }
  /** `rewrite`: an RPZ trigger's CNAME local data with its target's answer appended (answered, with the block's EDE). */
  | { readonly kind: 'blocked'; readonly verdict: Verdict; readonly eventId: string; readonly text: string; readonly rewrite?: LocalReplyOptions }
  | { readonly kind: 'refused'; readonly reason: RefusedReason }
  | { readonly kind: 'failed'; readonly ede: FailureEde; readonly error: WardenError };
