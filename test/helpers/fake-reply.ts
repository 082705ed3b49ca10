// Hand-built upstream replies for the misbehaving upstreams of startScriptedUpstream: every byte is
// chosen by the test (TTLs with the top bit set, TC over TCP, records an honest server would never add),
// which no codec would write for us. Names are uncompressed unless `compress` is asked for (then owner
// names and `{ name }` RDATA point at earlier copies, as real servers do). Owns nothing, sends nothing.

export interface FakeRecord {
  readonly name: string;
  readonly type: number;
  /** Written as is: 0x80000000 and above included. Default 300. */
  readonly ttl?: number;
  /** Raw RDATA, or one domain name (NS, CNAME, DNAME, PTR), compressed like owners when `compress` is on. */
  readonly rdata: Buffer | { readonly name: string };
}

export interface FakeReplyOptions {
  /** Header flags besides QR (always set) and the query's ID; default RD+RA (0x0180). RCODE in the low 4 bits. */
  readonly flags?: number;
  readonly answers?: readonly FakeRecord[];
  readonly authorities?: readonly FakeRecord[];
  readonly additionals?: readonly FakeRecord[];
  /** Append an OPT record (size 1232) at the end, as real servers do. Default true. */
  readonly opt?: boolean;
  /** RFC 1035 §4.1.4 name compression against every name written before. Default false. */
  readonly compress?: boolean;
}

/** Writes names into a message being built, with pointers to suffixes already written when asked. */
class NameWriter {
  readonly #seen = new Map<string, number>();
  constructor(readonly compress: boolean) {}

  /** Remembers the suffixes of a name already in the message at `offset` (the question). */
  note(name: string, offset: number): void {
    const labels = name.split('.').filter((l) => l !== '');
    let at = offset;
    for (let i = 0; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.').toLowerCase();
      if (!this.#seen.has(suffix)) this.#seen.set(suffix, at);
      at += 1 + labels[i]!.length;
    }
  }

  /** The bytes of `name` written at message offset `offset`. */
  write(name: string, offset: number): Buffer {
    if (!this.compress) return wireName(name);
    const labels = name.split('.').filter((l) => l !== '');
    const parts: Buffer[] = [];
    let at = offset;
    for (let i = 0; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.').toLowerCase();
      const target = this.#seen.get(suffix);
      if (target !== undefined) {
        parts.push(Buffer.from([0xc0 | (target >> 8), target & 0xff]));
        return Buffer.concat(parts);
      }
      this.#seen.set(suffix, at);
      parts.push(Buffer.from([labels[i]!.length]), Buffer.from(labels[i]!, 'ascii'));
      at += 1 + labels[i]!.length;
    }
    parts.push(Buffer.from([0]));
    return Buffer.concat(parts);
  }
}

export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, MX: 15, TXT: 16, AAAA: 28, DNAME: 39, RRSIG: 46, NSEC: 47 } as const;

export function wireName(name: string): Buffer {
  const parts: Buffer[] = [];
  for (const label of name.split('.').filter((l) => l !== '')) parts.push(Buffer.from([label.length]), Buffer.from(label, 'ascii'));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export const rdata = {
  a: (ip: string): Buffer => Buffer.from(ip.split('.').map(Number)),
  txt: (text: string): Buffer => Buffer.concat([Buffer.from([text.length]), Buffer.from(text, 'ascii')]),
  soa: (mname: string, rname: string, minimum: number): Buffer => {
    const numbers = Buffer.alloc(20);
    [1, 3600, 600, 86_400, minimum].forEach((n, i) => numbers.writeUInt32BE(n, i * 4));
    return Buffer.concat([wireName(mname), wireName(rname), numbers]);
  },
};

function record(r: FakeRecord, names: NameWriter, offset: number): Buffer {
  const owner = names.write(r.name, offset);
  const rd = Buffer.isBuffer(r.rdata) ? r.rdata : names.write(r.rdata.name, offset + owner.length + 10);
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(r.type, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(r.ttl ?? 300, 4);
  fixed.writeUInt16BE(rd.length, 8);
  return Buffer.concat([owner, fixed, rd]);
}

/** The question section of `query` (a dnswarden upstream query: one question, then the OPT). */
export function questionOf(query: Buffer): Buffer {
  let p = 12;
  while (query[p]! !== 0) p += 1 + query[p]!;
  return query.subarray(12, p + 5);
}

/** The query name of `query`, lower-case, no trailing dot. */
export function qnameOf(query: Buffer): string {
  const labels: string[] = [];
  for (let p = 12; query[p]! !== 0; p += 1 + query[p]!) labels.push(query.toString('latin1', p + 1, p + 1 + query[p]!).toLowerCase());
  return labels.join('.');
}

/** A reply to `query` with exactly the given sections. */
export function fakeReply(query: Buffer, opts: FakeReplyOptions): Buffer {
  const answers = opts.answers ?? [];
  const authorities = opts.authorities ?? [];
  const additionals = opts.additionals ?? [];
  const opt = opts.opt ?? true;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  header.writeUInt16BE(0x8000 | (opts.flags ?? 0x0180), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  header.writeUInt16BE(authorities.length, 8);
  header.writeUInt16BE(additionals.length + (opt ? 1 : 0), 10);
  const optRecord = Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
  const question = questionOf(query);
  const names = new NameWriter(opts.compress ?? false);
  names.note(qnameOf(query), 12);
  const parts: Buffer[] = [header, question];
  let offset = 12 + question.length;
  for (const r of [...answers, ...authorities, ...additionals]) {
    const bytes = record(r, names, offset);
    parts.push(bytes);
    offset += bytes.length;
  }
  if (opt) parts.push(optRecord);
  return Buffer.concat(parts);
}
