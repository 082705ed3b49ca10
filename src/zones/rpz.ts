// Response Policy Zones, both ways. In: an RPZ master file (the format BIND, Unbound and PowerDNS
// read; draft-vixie-dnsop-dns-rpz) → QNAME triggers, exact and `*.` wildcard, with their action:
// NXDOMAIN (`CNAME .`), NODATA (`CNAME *.`), PASSTHRU (`CNAME rpz-passthru.`), DROP (`CNAME rpz-drop.`,
// which dnswarden answers with REFUSED + EDE: an agent must never time out) or local data (any other
// records). Several zones in order, first match wins; inside one zone an exact trigger beats a wildcard
// and a longer wildcard beats a shorter one. Out: a deny list rendered as an RPZ zone other resolvers
// can load. Pure: parsing goes through master-file.ts; no clock, no sockets, never decides a verdict
// (policy does, with what `match` returns).
import { labelsToKey, parseMasterFile, RRTYPE, type ZoneRecord } from './master-file.js';

export type RpzAction =
  | { readonly kind: 'nxdomain' }
  | { readonly kind: 'nodata' }
  | { readonly kind: 'passthru' }
  | { readonly kind: 'drop' }
  | { readonly kind: 'local'; readonly records: readonly ZoneRecord[] };

export interface RpzMatch {
  /** The policy zone's configured name (EDE text names it). */
  readonly zone: string;
  /** The trigger as written, relative to the policy zone (`bad.example` or `*.bad.example`). */
  readonly trigger: string;
  readonly action: RpzAction;
}

export interface RpzZoneStats {
  readonly name: string;
  readonly triggers: number;
  /** Records under trigger kinds dnswarden does not apply (rpz-ip, rpz-nsdname, rpz-client-ip …). */
  readonly ignored: number;
}

/** Trigger labels of the RPZ spec that are not QNAME triggers (we apply QNAME triggers only). */
const NON_QNAME_TRIGGER = /(^|\.)(rpz-ip|rpz-nsip|rpz-nsdname|rpz-client-ip)$/;

interface Trigger {
  readonly trigger: string;
  readonly action: RpzAction;
}

/** One policy zone: its triggers, indexed by the name they match. */
export class RpzZone {
  private readonly exact = new Map<string, Trigger>();
  /** `*.suffix` triggers by suffix. */
  private readonly wildcard = new Map<string, Trigger>();
  readonly stats: RpzZoneStats;

  constructor(
    readonly name: string,
    readonly origin: string,
    records: readonly ZoneRecord[],
  ) {
    const byOwner = new Map<string, ZoneRecord[]>();
    let ignored = 0;
    for (const r of records) {
      if (r.type === RRTYPE.SOA || r.type === RRTYPE.NS) continue; // the policy zone's own apex data
      const rel = relative(r.owner, origin);
      if (rel === undefined || rel === '') continue;
      const triggerZone = rel.startsWith('*.') ? rel.slice(2) : rel;
      if (NON_QNAME_TRIGGER.test(triggerZone)) {
        ignored += 1;
        continue;
      }
      byOwner.get(rel)?.push(r) ?? byOwner.set(rel, [r]);
    }
    for (const [rel, rs] of byOwner) {
      const t: Trigger = { trigger: rel, action: actionOf(rs) };
      if (rel.startsWith('*.')) this.wildcard.set(rel.slice(2), t);
      else this.exact.set(rel, t);
    }
    this.stats = { name, triggers: byOwner.size, ignored };
  }

  /** The trigger for a query name (lower case, no trailing dot), or undefined. */
  match(qname: string): Trigger | undefined {
    const hit = this.exact.get(qname);
    if (hit) return hit;
    if (this.wildcard.size === 0) return undefined;
    // Longest wildcard first: walk up from the name's parent.
    for (let dot = qname.indexOf('.'); dot >= 0; dot = qname.indexOf('.', dot + 1)) {
      const w = this.wildcard.get(qname.slice(dot + 1));
      if (w) return w;
    }
    return undefined;
  }
}

function relative(owner: string, origin: string): string | undefined {
  if (owner === origin) return '';
  return owner.endsWith(`.${origin}`) ? owner.slice(0, -origin.length - 1) : undefined;
}

/** What a trigger's records say to do (the RPZ spec's CNAME encodings; anything else is local data). */
function actionOf(records: readonly ZoneRecord[]): RpzAction {
  const cname = records.find((r) => r.type === RRTYPE.CNAME);
  if (cname && records.length === 1) {
    switch (cname.target) {
      case '':
        return { kind: 'nxdomain' };
      case '*':
        return { kind: 'nodata' };
      case 'rpz-passthru':
        return { kind: 'passthru' };
      case 'rpz-drop':
      case 'rpz-tcp-only': // TCP-only makes no sense for a stub resolver's clients: treated as a block
        return { kind: 'drop' };
      default:
    }
  }
  return { kind: 'local', records };
}

/** Several policy zones in configured order: the first zone with a trigger for the name decides. */
export class RpzSet {
  constructor(readonly zones: readonly RpzZone[]) {}

  match(qname: string): RpzMatch | undefined {
    for (const z of this.zones) {
      const t = z.match(qname);
      if (t) return { zone: z.name, trigger: t.trigger, action: t.action };
    }
    return undefined;
  }
}

const QTYPE_CNAME = RRTYPE.CNAME;
const QTYPE_ANY = 255;

/** A trigger's local data that answers `qtype`: the records of that type, else its CNAME, else none (NODATA). */
export function rpzLocalRecords(match: RpzMatch, qtype: number): readonly ZoneRecord[] {
  if (match.action.kind !== 'local') return [];
  const records = match.action.records;
  if (qtype === QTYPE_ANY) return records;
  const exact = records.filter((r) => r.type === qtype);
  return exact.length > 0 ? exact : records.filter((r) => r.type === QTYPE_CNAME);
}

/** The CNAME of a trigger's local data when that is what answers `qtype` (a redirect to follow), else undefined. */
export function rpzRedirect(match: RpzMatch, qtype: number): ZoneRecord | undefined {
  if (match.action.kind !== 'local' || qtype === QTYPE_CNAME || qtype === QTYPE_ANY) return undefined;
  const records = rpzLocalRecords(match, qtype);
  return records.length === 1 && records[0]!.type === QTYPE_CNAME ? records[0] : undefined;
}

/** Reads one configured policy zone file. The zone's origin is its own SOA owner when it has one. */
export function loadRpzZone(name: string, file: string): RpzZone {
  const records = parseMasterFile(file, { origin: name, defaultTtl: 300 });
  const soa = records.find((r) => r.type === RRTYPE.SOA);
  return new RpzZone(name, soa?.owner ?? name.toLowerCase(), records);
}

export interface RpzExportEntry {
  readonly domain: string;
  /** Why it is listed, written as a comment beside it (`confirmed quarantine q-…`, `hand-added`). */
  readonly reason: string;
}

/**
 * A deny list as an RPZ zone: each domain and everything below it → NXDOMAIN. `serial` must rise
 * whenever the list changes (secondaries compare it); the caller derives it from the lists' version.
 */
export function renderRpz(origin: string, serial: number, entries: readonly RpzExportEntry[]): string {
  const lines = [
    `; dnswarden's deny lists as a Response Policy Zone (${entries.length} domains).`,
    `$ORIGIN ${origin}.`,
    '$TTL 300',
    `@ SOA localhost. hostmaster.localhost. ${serial >>> 0} 3600 600 604800 300`,
    '@ NS localhost.',
  ];
  for (const e of [...entries].sort((a, b) => a.domain.localeCompare(b.domain))) {
    const owner = labelsToKey(e.domain.split('.').map((l) => Buffer.from(l, 'utf8')));
    lines.push(`; ${e.reason.replace(/[\r\n]/g, ' ')}`, `${owner} CNAME .`, `*.${owner} CNAME .`);
  }
  return `${lines.join('\n')}\n`;
}
