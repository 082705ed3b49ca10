// One authoritative zone in memory and the answer to a question about a name in it: AA answers,
// NXDOMAIN and NODATA with the zone's SOA in authority (RFC 2308 §3: TTL = min(SOA TTL, MINIMUM)),
// wildcards by closest encloser (RFC 4592 §3.3.1, empty non-terminals included), CNAME chains followed
// inside the zone (a target outside is handed back to be resolved), names at or below a delegation
// (NS below the apex) handed back to be forwarded. Pure: built from records (master-file.ts), no I/O,
// no clock; never encodes packets (wire.ts does) and never judges a query (policy does).
import { ConfigError } from '../errors.js';
import { RRTYPE, rrtypeName, type ZoneRecord } from './master-file.js';

/** An RRset as answered: owner as asked (a wildcard answer carries the query's name). */
export interface AnswerRecord {
  readonly name: string;
  readonly type: number;
  readonly ttl: number;
  readonly rdata: Buffer;
}

export type ZoneAnswer =
  /** NOERROR with data (answer may hold a CNAME chain), or NODATA (empty answer, SOA in authority). */
  | { readonly kind: 'answer'; readonly answer: AnswerRecord[]; readonly authority: AnswerRecord[]; readonly additional: AnswerRecord[] }
  | { readonly kind: 'nxdomain'; readonly answer: AnswerRecord[]; readonly authority: AnswerRecord[] }
  /** The chain left the zone at `target`: resolve it elsewhere and append. */
  | { readonly kind: 'cname-out'; readonly answer: AnswerRecord[]; readonly target: string }
  /** The name is at or below a delegation inside the zone: forward the query as usual. */
  | { readonly kind: 'delegated'; readonly cut: string };

const ANY = 255;
const MAX_CHAIN = 8;

const isBelow = (name: string, zone: string): boolean => zone === '' || name === zone || name.endsWith(`.${zone}`);
const parentOf = (name: string): string | undefined => {
  if (name === '') return undefined;
  let i = 0;
  // Skip escaped dots ("a\.b.example" has parent "example").
  for (;;) {
    const dot = name.indexOf('.', i);
    if (dot < 0) return '';
    if (name[dot - 1] !== '\\') return name.slice(dot + 1);
    i = dot + 1;
  }
};

export class Zone {
  readonly origin: string;
  /** owner → type → records */
  private readonly nodes = new Map<string, Map<number, ZoneRecord[]>>();
  /** Names that exist only because something below them does (RFC 4592 empty non-terminals). */
  private readonly emptyNonTerminals = new Set<string>();
  private readonly soa: ZoneRecord;
  /** Delegation points below the apex. */
  private readonly cuts = new Set<string>();
  readonly recordCount: number;

  /** Checks the zone as a whole (what named-checkzone refuses) and indexes it. Throws ConfigError. */
  constructor(origin: string, records: readonly ZoneRecord[], file: string) {
    this.origin = origin.toLowerCase().replace(/\.$/, '');
    const fail = (at: string, msg: string): never => {
      throw new ConfigError('', `${at}: ${msg}`);
    };
    for (const r of records) {
      if (!isBelow(r.owner, this.origin)) fail(r.at, `${r.owner || '.'} is outside the zone ${this.origin || '.'}`);
      let byType = this.nodes.get(r.owner);
      if (!byType) this.nodes.set(r.owner, (byType = new Map()));
      const set = byType.get(r.type);
      if (set) {
        if (set.some((o) => o.rdata.equals(r.rdata))) continue; // a duplicate record is one record (RFC 2181 §5)
        set.push(r);
      } else byType.set(r.type, [r]);
    }
    const apex = this.nodes.get(this.origin);
    const soas = apex?.get(RRTYPE.SOA) ?? [];
    if (soas.length !== 1) fail(file, `the zone ${this.origin} needs exactly one SOA record at its apex (found ${soas.length})`);
    if (!apex?.get(RRTYPE.NS)?.length) fail(file, `the zone ${this.origin} has no NS record at its apex`);
    this.soa = soas[0]!;
    for (const [owner, byType] of this.nodes) {
      if (owner !== this.origin && byType.has(RRTYPE.SOA)) fail(byType.get(RRTYPE.SOA)![0]!.at, `SOA below the apex (${owner})`);
      if (byType.has(RRTYPE.CNAME)) {
        if (byType.get(RRTYPE.CNAME)!.length > 1) fail(byType.get(RRTYPE.CNAME)![1]!.at, `${owner} has more than one CNAME`);
        if (byType.size > 1) fail(byType.get(RRTYPE.CNAME)![0]!.at, `${owner} has a CNAME and other data (RFC 1034 §3.6.2)`);
        if (owner === this.origin) fail(byType.get(RRTYPE.CNAME)![0]!.at, 'a CNAME at the zone apex');
      }
      if (owner !== this.origin && byType.has(RRTYPE.NS)) this.cuts.add(owner);
      for (let p = parentOf(owner); p !== undefined && isBelow(p, this.origin) && p !== this.origin; p = parentOf(p)) {
        if (!this.nodes.has(p)) this.emptyNonTerminals.add(p);
      }
    }
    this.recordCount = records.length;
  }

  get soaRecord(): ZoneRecord {
    return this.soa;
  }

  /** Whether `name` is this zone's apex or below it. */
  contains(name: string): boolean {
    return isBelow(name, this.origin);
  }

  /** The negative-answer SOA (RFC 2308 §3: TTL the minimum of the SOA's TTL and its MINIMUM field). */
  private negativeSoa(): AnswerRecord {
    const minimum = this.soa.rdata.readUInt32BE(this.soa.rdata.length - 4);
    return { name: this.origin, type: RRTYPE.SOA, ttl: Math.min(this.soa.ttl, minimum), rdata: this.soa.rdata };
  }

  private delegationAbove(name: string): string | undefined {
    if (this.cuts.size === 0) return undefined;
    for (let n: string | undefined = name; n !== undefined && n !== this.origin && isBelow(n, this.origin); n = parentOf(n)) {
      if (this.cuts.has(n)) return n;
    }
    return undefined;
  }

  private exists(name: string): boolean {
    return this.nodes.has(name) || this.emptyNonTerminals.has(name);
  }

  /** The node that answers for `name`: itself, or the wildcard at its closest encloser (RFC 4592 §3.3.1). */
  private nodeFor(name: string): Map<number, ZoneRecord[]> | undefined {
    const own = this.nodes.get(name);
    if (own || this.emptyNonTerminals.has(name)) return own ?? new Map();
    let encloser = parentOf(name);
    while (encloser !== undefined && isBelow(encloser, this.origin) && !this.exists(encloser)) encloser = parentOf(encloser);
    if (encloser === undefined || !isBelow(encloser, this.origin)) return undefined;
    return this.nodes.get(encloser === '' ? '*' : `*.${encloser}`);
  }

  /** Answers a question about a name in this zone (the caller checked `contains`). */
  lookup(qname: string, qtype: number): ZoneAnswer {
    const answer: AnswerRecord[] = [];
    let name = qname.toLowerCase();
    let seen: Set<string> | undefined; // only a CNAME chain needs it
    for (let hop = 0; hop <= MAX_CHAIN; hop++) {
      const cut = this.delegationAbove(name);
      if (cut !== undefined) {
        // DS lives on the parent side of a cut; everything else is the child's to answer.
        if (answer.length === 0) return { kind: 'delegated', cut };
        return { kind: 'cname-out', answer, target: name };
      }
      const node = this.nodeFor(name);
      if (!node) return { kind: 'nxdomain', answer, authority: [this.negativeSoa()] };
      const as = (rs: readonly ZoneRecord[]): AnswerRecord[] => rs.map((r) => ({ name, type: r.type, ttl: r.ttl, rdata: r.rdata }));
      const cname = node.get(RRTYPE.CNAME);
      if (cname && qtype !== RRTYPE.CNAME && qtype !== ANY) {
        answer.push(...as(cname));
        const target = cname[0]!.target!;
        if (seen?.has(target)) return { kind: 'answer', answer, authority: [], additional: [] }; // a loop: stop, as BIND does
        (seen ??= new Set()).add(name);
        if (!this.contains(target)) return { kind: 'cname-out', answer, target };
        name = target;
        continue;
      }
      const rrsets = qtype === ANY ? [...node.values()] : node.has(qtype) ? [node.get(qtype)!] : [];
      if (rrsets.length === 0) return { kind: 'answer', answer, authority: [this.negativeSoa()], additional: [] };
      const records = rrsets.flat();
      answer.push(...as(records));
      return { kind: 'answer', answer, authority: [], additional: this.glueFor(records) };
    }
    return { kind: 'answer', answer, authority: [], additional: [] };
  }

  /** Addresses of in-zone targets of MX/SRV/NS answers (RFC 1035 §4.3.2 additional processing). */
  private glueFor(records: readonly ZoneRecord[]): AnswerRecord[] {
    const out: AnswerRecord[] = [];
    for (const r of records) {
      if (r.target === undefined || (r.type !== RRTYPE.MX && r.type !== RRTYPE.SRV && r.type !== RRTYPE.NS)) continue;
      const node = this.nodes.get(r.target);
      for (const t of [RRTYPE.A, RRTYPE.AAAA]) for (const a of node?.get(t) ?? []) out.push({ name: r.target, type: t, ttl: a.ttl, rdata: a.rdata });
    }
    return out;
  }

  /** Every record, for RPZ export and tests. */
  *records(): Iterable<ZoneRecord> {
    for (const byType of this.nodes.values()) for (const set of byType.values()) yield* set;
  }

  describe(): string {
    return `${this.origin} (${this.recordCount} records, ${[...new Set([...this.records()].map((r) => rrtypeName(r.type)))].join(' ')})`;
  }
}
