// Bytes ↔ the rest of the program. Owns: the query parser (header + question + OPT read straight
// from the bytes, the name kept as sent), reading upstream replies without re-encoding them
// (they are forwarded and cached as raw bytes with ID and TTLs patched), and encoding our own
// replies. The only importer of dns-packet (our synthesized replies only). Never touches sockets.
// Why it is long: one codec for one wire format — the parser, the raw-reply reader and our encoders share
// the name reader, header layout and OPT writer, and the hot path reads them in one file.
import dnsPacket from 'dns-packet';
import { WardenError } from '../errors.js';

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export const QTYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, NULL: 10, PTR: 12, MX: 15, TXT: 16, AAAA: 28, OPT: 41, ANY: 255 } as const;
const CLASS_IN = 1;
const HEADER_BYTES = 12;
const OPT_CODE_EDE = 15;
// EDE text rides in the OPT record and eats the client's UDP budget (RFC 8914 §2); keep it short.
const EDE_TEXT_MAX_BYTES = 120;
const MAX_NAME_BYTES = 255;
const MAX_POINTER_JUMPS = 32;

export type Transport = 'udp' | 'tcp';

export interface Peer {
  readonly address: string;
  readonly port: number;
  readonly transport: Transport;
}

export interface Query {
  readonly id: number;
  /** Lower-case, no trailing dot: 'a.b.example.com'; non-printable bytes as \DDD. Root is ''. */
  readonly name: string;
  readonly type: number;
  readonly class: number;
  readonly rd: boolean;
  readonly cd: boolean;
  /** The question section exactly as sent (name case and bytes), echoed in every reply. */
  readonly question: Buffer;
  readonly edns: { readonly udpSize: number; readonly dnssecOk: boolean } | undefined;
  /** Largest reply the client can take: 512 without EDNS, its EDNS size (capped by ours) on UDP, 65535 on TCP. */
  readonly maxReplyBytes: number;
  readonly peer: Peer;
  readonly atMs: number;
}

export type MalformedReason = 'short_header' | 'not_a_query' | 'qdcount' | 'bad_name' | 'truncated' | 'bad_opt' | 'trailing';

export type Decoded =
  | { readonly ok: true; readonly query: Query }
  | { readonly ok: false; readonly reason: MalformedReason; /** FORMERR (or NOTIMP/BADVERS) reply, when the header was readable. */ readonly reply: Buffer | undefined };

/** One label as text: printable ASCII as is (lower-cased if asked), '.', '\\' and the rest as \\DDD. */
function labelText(buf: Buffer, start: number, end: number, lower: boolean): string {
  let plain = true;
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    if (c <= 0x20 || c >= 0x7f || c === 0x2e || c === 0x5c) {
      plain = false;
      break;
    }
  }
  // The common case, one slice: measurably cheaper than building the string byte by byte.
  if (plain) return lower ? buf.toString('latin1', start, end).toLowerCase() : buf.toString('latin1', start, end);
  let text = '';
  for (let i = start; i < end; i++) {
    let c = buf[i]!;
    if (lower && c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c) text += String.fromCharCode(c);
    else text += `\\${c.toString().padStart(3, '0')}`; // master-file escape for '.', '\\' and non-printables
  }
  return text;
}

/** Reads a name at `offset`; returns its text (lower-case) and the offset after it, or undefined if malformed. */
function readName(buf: Buffer, offset: number, lower: boolean): { text: string; end: number } | undefined {
  let text = '';
  let pos = offset;
  let end = -1;
  let jumps = 0;
  let length = 0;
  for (;;) {
    if (pos >= buf.length) return undefined;
    const len = buf[pos]!;
    if (len === 0) {
      if (end === -1) end = pos + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= buf.length) return undefined;
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      // Only backward pointers, and few: a pointer loop cannot spin us.
      if (target >= pos || ++jumps > MAX_POINTER_JUMPS) return undefined;
      if (end === -1) end = pos + 2;
      pos = target;
      continue;
    }
    if (kind !== 0) return undefined; // 0x40/0x80 label types are not in use (RFC 6891 §5)
    if (pos + 1 + len > buf.length) return undefined;
    length += len + 1;
    if (length > MAX_NAME_BYTES) return undefined;
    if (text !== '') text += '.';
    text += labelText(buf, pos + 1, pos + 1 + len, lower);
    pos += 1 + len;
  }
  return { text, end };
}

/** Skips one resource record; returns the offset after it, or undefined. */
function skipRecord(buf: Buffer, offset: number): { type: number; cls: number; ttlOffset: number; rdOffset: number; end: number } | undefined {
  const name = readName(buf, offset, false);
  if (name === undefined || name.end + 10 > buf.length) return undefined;
  const p = name.end;
  const rdLength = buf.readUInt16BE(p + 8);
  const end = p + 10 + rdLength;
  if (end > buf.length) return undefined;
  return { type: buf.readUInt16BE(p), cls: buf.readUInt16BE(p + 2), ttlOffset: p + 4, rdOffset: p + 10, end };
}

/** Parses a client query. Never throws: malformed input is a value. */
export function decodeQuery(packet: Buffer, peer: Peer, atMs: number, ourUdpSize: number): Decoded {
  if (packet.length < HEADER_BYTES) return { ok: false, reason: 'short_header', reply: undefined };
  const id = packet.readUInt16BE(0);
  const flags = packet.readUInt16BE(2);
  // A response sent to us is never answered: answering could start a reflection loop.
  if ((flags & 0x8000) !== 0) return { ok: false, reason: 'not_a_query', reply: undefined };
  const opcode = (flags >> 11) & 0x0f;
  const rd = (flags & 0x0100) !== 0;
  const cd = (flags & 0x0010) !== 0;
  const qdcount = packet.readUInt16BE(4);
  if (opcode !== 0) return malformed(id, flags, 'not_a_query', RCODE.NOTIMP);
  if (qdcount !== 1) return malformed(id, flags, 'qdcount');
  const name = readName(packet, HEADER_BYTES, true);
  if (name === undefined) return malformed(id, flags, 'bad_name');
  if (name.end + 4 > packet.length) return malformed(id, flags, 'truncated');
  const type = packet.readUInt16BE(name.end);
  const cls = packet.readUInt16BE(name.end + 2);
  const questionEnd = name.end + 4;
  let offset = questionEnd;
  let edns: Query['edns'] = undefined;
  const beforeAdditional = packet.readUInt16BE(6) + packet.readUInt16BE(8);
  const records = beforeAdditional + packet.readUInt16BE(10);
  for (let i = 0; i < records; i++) {
    const rr = skipRecord(packet, offset);
    if (rr === undefined) return malformed(id, flags, 'truncated');
    if (rr.type === QTYPE.OPT) {
      // One OPT, in the additional section, owned by the root (RFC 6891 §6.1.1).
      if (edns !== undefined || i < beforeAdditional || packet[offset] !== 0) return malformed(id, flags, 'bad_opt');
      const version = packet[rr.ttlOffset + 1]!;
      if (version !== 0) return { ok: false, reason: 'bad_opt', reply: badVersReply(id, flags, packet.subarray(HEADER_BYTES, questionEnd), ourUdpSize) };
      edns = { udpSize: Math.max(512, rr.cls), dnssecOk: (packet.readUInt16BE(rr.ttlOffset + 2) & 0x8000) !== 0 };
    }
    offset = rr.end;
  }
  if (offset !== packet.length && peer.transport === 'tcp') return malformed(id, flags, 'trailing');
  const maxReplyBytes = peer.transport === 'tcp' ? 65_535 : edns === undefined ? 512 : Math.min(edns.udpSize, ourUdpSize);
  return {
    ok: true,
    query: {
      id,
      name: name.text,
      type,
      class: cls,
      rd,
      cd,
      // A view, not a copy: dgram and our TCP framing hand over a fresh Buffer per message, never reused.
      question: packet.subarray(HEADER_BYTES, questionEnd),
      edns,
      maxReplyBytes,
      peer,
      atMs,
    },
  };
}

function malformed(id: number, flags: number, reason: MalformedReason, rcode: number = RCODE.FORMERR): Decoded {
  return { ok: false, reason, reply: headerOnlyReply(id, flags, rcode) };
}

/** FORMERR/NOTIMP with no sections: the question may be what was malformed, so it is not echoed. */
function headerOnlyReply(id: number, queryFlags: number, rcode: number): Buffer {
  const out = Buffer.alloc(HEADER_BYTES);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(0x8000 | (queryFlags & 0x7900) | 0x0080 | rcode, 2); // QR, opcode, RD copied, RA
  return out;
}

function badVersReply(id: number, queryFlags: number, question: Buffer, ourUdpSize: number): Buffer {
  const out = Buffer.alloc(HEADER_BYTES + question.length + 11);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(0x8000 | (queryFlags & 0x0100) | 0x0080, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(1, 10);
  question.copy(out, HEADER_BYTES);
  writeOptHeader(out, HEADER_BYTES + question.length, ourUdpSize, 1 /* BADVERS = 16 → upper 8 bits = 1 */, false, 0);
  return out;
}

function writeOptHeader(buf: Buffer, offset: number, udpSize: number, extRcode: number, dnssecOk: boolean, rdLength: number): number {
  buf[offset] = 0; // root owner
  buf.writeUInt16BE(QTYPE.OPT, offset + 1);
  buf.writeUInt16BE(udpSize, offset + 3);
  buf[offset + 5] = extRcode;
  buf[offset + 6] = 0; // version 0
  buf.writeUInt16BE(dnssecOk ? 0x8000 : 0, offset + 7);
  buf.writeUInt16BE(rdLength, offset + 9);
  return offset + 11;
}

// ---------------------------------------------------------------------------------------------
// Upstream side: our query to an upstream, and the upstream's reply kept as raw bytes.

/** A query for `q` as we send it upstream: fresh ID, RD, the client's question bytes, our EDNS. */
export function encodeUpstreamQuery(q: Query, id: number, udpSize: number): Buffer {
  const out = Buffer.alloc(HEADER_BYTES + q.question.length + 11);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(0x0100 | (q.cd ? 0x0010 : 0), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(1, 10);
  q.question.copy(out, HEADER_BYTES);
  writeOptHeader(out, HEADER_BYTES + q.question.length, udpSize, 0, q.edns?.dnssecOk ?? false, 0);
  return out;
}

/**
 * An upstream reply reduced to what we forward and cache: the sections after the question with the
 * OPT record removed (we add our own per client), where each TTL sits, and what the cache and the
 * rebinding check need. Owner names may point into the question at offset 12; every client's
 * question has the same length (same name, case may differ), so those pointers stay valid.
 */
export interface Reply {
  readonly rcode: number;
  readonly flags: number;
  readonly tc: boolean;
  readonly answerCount: number;
  readonly authorityCount: number;
  readonly additionalCount: number;
  /**
   * The records as latin1 text, and where each TTL sits (offsets in the client's reply, as char codes).
   * Strings, not Buffers: a cached answer costs a third of the memory (`npm run bench`, RSS after
   * 500,000 names), and writing a latin1 string into the reply is as fast as a copy.
   */
  readonly body: string;
  readonly ttlOffsets: string;
  /** The upstream's own RFC 8914 EDE options (raw, latin1), passed on to clients that speak EDNS. */
  readonly edeOptions: string;
  /** TTL the cache may keep this for: min answer TTL; for negative answers min(SOA TTL, SOA MINIMUM) (RFC 2308 §5). */
  readonly cacheTtlSec: number | undefined;
  readonly addresses: readonly string[];
}

const NO_ADDRESSES: readonly string[] = Object.freeze([]);

/** Parses an upstream reply and checks it answers `q` (ID, name case-insensitively, type, class). */
export function decodeUpstreamReply(buf: Buffer, q: Query, expectedId: number): Reply | WardenError {
  if (buf.length < HEADER_BYTES) return new WardenError('ERR_WIRE_FORMAT', 'upstream reply shorter than a header');
  if (buf.readUInt16BE(0) !== expectedId) return new WardenError('ERR_UPSTREAM_MISMATCH', 'upstream reply ID does not match');
  const flags = buf.readUInt16BE(2);
  if ((flags & 0x8000) === 0) return new WardenError('ERR_UPSTREAM_MISMATCH', 'upstream sent a query, not a reply');
  const tc = (flags & 0x0200) !== 0;
  if (buf.readUInt16BE(4) !== 1) return new WardenError('ERR_UPSTREAM_MISMATCH', 'upstream reply has no single question');
  const name = readName(buf, HEADER_BYTES, true);
  if (name === undefined || name.end + 4 > buf.length) return new WardenError('ERR_WIRE_FORMAT', 'upstream reply question malformed');
  if (name.text !== q.name || buf.readUInt16BE(name.end) !== q.type || buf.readUInt16BE(name.end + 2) !== q.class) {
    return new WardenError('ERR_UPSTREAM_MISMATCH', 'upstream reply is for another question');
  }
  const questionEnd = name.end + 4;
  if (questionEnd - HEADER_BYTES !== q.question.length) return new WardenError('ERR_UPSTREAM_MISMATCH', 'upstream reply question differs in length');
  const counts: [number, number, number] = [buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)];
  let rcode = flags & 0x000f;
  let ttlOffsets = '';
  let edeOptions = '';
  let addresses: string[] | undefined;
  const kept: Buffer[] = [];
  let minAnswerTtl = Infinity;
  let negativeTtl: number | undefined;
  let offset = questionEnd;
  let keptBytes = 0;
  const total = counts[0] + counts[1] + counts[2];
  for (let i = 0; i < total; i++) {
    const rr = skipRecord(buf, offset);
    if (rr === undefined) {
      if (tc) break; // a truncated reply may end mid-record; we retry over TCP anyway
      return new WardenError('ERR_WIRE_FORMAT', 'upstream reply record malformed');
    }
    if (rr.type === QTYPE.OPT) {
      // Removing an OPT that is not the last record would move the records after it and break any
      // compression pointer into them; every real server puts it last, so anything else is refused.
      if (i !== total - 1) return new WardenError('ERR_WIRE_FORMAT', 'upstream reply has records after its OPT');
      rcode |= buf[rr.ttlOffset]! << 4; // extended RCODE bits
      edeOptions = edeOptionsOf(buf, rr.rdOffset, rr.end);
      counts[2] -= 1;
      offset = rr.end;
      continue;
    }
    const ttl = buf.readUInt32BE(rr.ttlOffset) & 0x7fffffff;
    ttlOffsets += String.fromCharCode(HEADER_BYTES + q.question.length + keptBytes + (rr.ttlOffset - offset));
    if (i < counts[0]) {
      minAnswerTtl = Math.min(minAnswerTtl, ttl);
      if (rr.cls === CLASS_IN && rr.type === QTYPE.A && rr.end - rr.rdOffset === 4) (addresses ??= []).push(`${buf[rr.rdOffset]!}.${buf[rr.rdOffset + 1]!}.${buf[rr.rdOffset + 2]!}.${buf[rr.rdOffset + 3]!}`);
      if (rr.cls === CLASS_IN && rr.type === QTYPE.AAAA && rr.end - rr.rdOffset === 16) (addresses ??= []).push(formatIpv6(buf.subarray(rr.rdOffset, rr.end)));
    } else if (i < counts[0] + counts[1] && rr.type === QTYPE.SOA) {
      const soaMinimum = soaMinimumOf(buf, rr.rdOffset, rr.end);
      if (soaMinimum !== undefined) negativeTtl = Math.min(ttl, soaMinimum);
    }
    kept.push(buf.subarray(offset, rr.end));
    keptBytes += rr.end - offset;
    offset = rr.end;
  }
  const answerCount = counts[0];
  const cacheTtlSec = answerCount > 0 && Number.isFinite(minAnswerTtl) ? minAnswerTtl : negativeTtl;
  return {
    rcode, flags, tc, answerCount: counts[0], authorityCount: counts[1], additionalCount: counts[2],
    body: Buffer.concat(kept, keptBytes).toString('latin1'), ttlOffsets, edeOptions, cacheTtlSec, addresses: addresses ?? NO_ADDRESSES,
  };
}

/** The EDE options (code 15) among an OPT record's options, raw; '' when there are none or they are malformed. */
function edeOptionsOf(buf: Buffer, start: number, end: number): string {
  let out = '';
  for (let p = start; p + 4 <= end; ) {
    const code = buf.readUInt16BE(p);
    const length = buf.readUInt16BE(p + 2);
    if (p + 4 + length > end) return '';
    // Passed on as is; one with a text longer than ours would eat the client's UDP budget and is dropped.
    if (code === OPT_CODE_EDE && length >= 2 && length <= 2 + EDE_TEXT_MAX_BYTES) out += buf.toString('latin1', p, p + 4 + length);
    p += 4 + length;
  }
  return out;
}

function soaMinimumOf(buf: Buffer, rdOffset: number, end: number): number | undefined {
  const mname = readName(buf, rdOffset, false);
  if (mname === undefined) return undefined;
  const rname = readName(buf, mname.end, false);
  if (rname === undefined || rname.end + 20 > end) return undefined;
  return buf.readUInt32BE(rname.end + 16);
}

function formatIpv6(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return groups.join(':');
}

/**
 * The client's copy of a (possibly cached) upstream reply: its ID, its question bytes, TTLs reduced
 * by `ageSec`, our OPT if it sent one; TC=1 with no records when it does not fit `maxReplyBytes`.
 */
export function encodeForwardedReply(q: Query, reply: Reply, ageSec: number, udpSize: number): Buffer {
  const optBytes = q.edns === undefined ? 0 : 11 + reply.edeOptions.length;
  const size = HEADER_BYTES + q.question.length + reply.body.length + optBytes;
  if (size > q.maxReplyBytes) return truncatedReply(q, reply.rcode, reply.flags, udpSize);
  const out = Buffer.allocUnsafe(size);
  writeReplyHeader(out, q, reply.flags, reply.rcode, reply.answerCount, reply.authorityCount, reply.additionalCount + (optBytes > 0 ? 1 : 0));
  q.question.copy(out, HEADER_BYTES);
  out.write(reply.body, HEADER_BYTES + q.question.length, 'latin1');
  if (ageSec > 0) {
    const offsets = reply.ttlOffsets;
    for (let i = 0; i < offsets.length; i++) {
      const at = offsets.charCodeAt(i);
      out.writeUInt32BE(Math.max(0, (out.readUInt32BE(at) & 0x7fffffff) - ageSec), at);
    }
  }
  if (optBytes > 0) {
    const at = writeOptHeader(out, size - optBytes, udpSize, reply.rcode >> 4, q.edns!.dnssecOk, reply.edeOptions.length);
    if (reply.edeOptions.length > 0) out.write(reply.edeOptions, at, 'latin1');
  }
  return out;
}

function truncatedReply(q: Query, rcode: number, flags: number, udpSize: number): Buffer {
  const optBytes = q.edns === undefined ? 0 : 11;
  const out = Buffer.alloc(HEADER_BYTES + q.question.length + optBytes);
  writeReplyHeader(out, q, flags | 0x0200, rcode, 0, 0, optBytes > 0 ? 1 : 0);
  q.question.copy(out, HEADER_BYTES);
  if (optBytes > 0) writeOptHeader(out, HEADER_BYTES + q.question.length, udpSize, rcode >> 4, q.edns!.dnssecOk, 0);
  return out;
}

function writeReplyHeader(out: Buffer, q: Query, upstreamFlags: number, rcode: number, an: number, ns: number, ar: number): void {
  out.writeUInt16BE(q.id, 0);
  // QR, RA; RD and CD as the client sent them; TC and AD from the upstream; AA cleared (we are not authoritative).
  const flags = 0x8080 | (q.rd ? 0x0100 : 0) | (q.cd ? 0x0010 : 0) | (upstreamFlags & 0x0220) | (rcode & 0x0f);
  out.writeUInt16BE(flags, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(an, 6);
  out.writeUInt16BE(ns, 8);
  out.writeUInt16BE(ar, 10);
}

/**
 * Header and question only, TC=1, no OPT (and so no EDE): a rate-limited refusal "slipped" (RRL). Never
 * larger than the query it answers; a real client retries over TCP and gets the full answer there.
 */
export function encodeSlipReply(q: Query, rcode: keyof typeof RCODE): Buffer {
  const out = Buffer.alloc(HEADER_BYTES + q.question.length);
  writeReplyHeader(out, q, 0x0200, RCODE[rcode], 0, 0, 0);
  q.question.copy(out, HEADER_BYTES);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Our own replies (refused, blocked, failed): built with dns-packet, question bytes echoed as sent.

export interface SynthOptions {
  readonly rcode: 'NOERROR' | 'NXDOMAIN' | 'REFUSED' | 'SERVFAIL';
  readonly ede: { readonly code: number; readonly text: string } | undefined;
  /** Adds an SOA to the authority section so stubs cache the negative answer for this long (RFC 2308). */
  readonly negativeTtlSec?: number;
}

const LDH_LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** The wrapper's guard on names handed to dns-packet: labels 1–63 bytes of letters, digits, '-' and '_'. */
export function isSafeName(name: string): boolean {
  if (name === '') return true;
  if (name.length > 253) return false;
  for (const label of name.split('.')) if (!LDH_LABEL.test(label)) return false;
  return true;
}

function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  return bytes.subarray(0, maxBytes).toString('utf8').replace(/\uFFFD$/, '');
}

export function encodeSynthReply(q: Query, opts: SynthOptions, udpSize: number): Buffer {
  const authorities: dnsPacket.Answer[] = [];
  if (opts.negativeTtlSec !== undefined) {
    // Owner: the query name when it is plain LDH (so a stub caches the block for this name), else the root.
    const owner = isSafeName(q.name) ? q.name : '.';
    authorities.push({
      type: 'SOA',
      name: owner,
      ttl: opts.negativeTtlSec,
      data: { mname: 'dnswarden.invalid', rname: 'hostmaster.dnswarden.invalid', serial: 1, refresh: 3600, retry: 600, expire: 86_400, minimum: opts.negativeTtlSec },
    } as dnsPacket.Answer);
  }
  const additionals: dnsPacket.Answer[] = [];
  if (q.edns !== undefined) {
    const options: { code: number; data: Buffer }[] = [];
    if (opts.ede !== undefined) {
      const text = Buffer.from(truncateUtf8(opts.ede.text, EDE_TEXT_MAX_BYTES), 'utf8');
      const data = Buffer.alloc(2 + text.length);
      data.writeUInt16BE(opts.ede.code, 0);
      text.copy(data, 2);
      options.push({ code: OPT_CODE_EDE, data });
    }
    additionals.push({ type: 'OPT', name: '.', udpPayloadSize: udpSize, flags: q.edns.dnssecOk ? dnsPacket.DNSSEC_OK : 0, options } as unknown as dnsPacket.Answer);
  }
  const rest = dnsPacket.encode({ type: 'response', id: q.id, flags: 0, questions: [], answers: [], authorities, additionals });
  // dns-packet never compresses names, so our question can be spliced in after its header unchanged.
  const out = Buffer.allocUnsafe(rest.length + q.question.length);
  writeReplyHeader(out, q, 0, RCODE[opts.rcode], 0, authorities.length, additionals.length);
  q.question.copy(out, HEADER_BYTES);
  rest.copy(out, HEADER_BYTES + q.question.length, HEADER_BYTES);
  if (out.length > q.maxReplyBytes) return truncatedReply(q, RCODE[opts.rcode], 0, udpSize);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Authoritative replies: local zones (src/zones/) and RPZ local data. Records arrive with wire RDATA
// already (parsed once from the zone file); only owner names are written here.

/** One record of a local answer: owner in the dotted key form (lower case, master-file escapes), RDATA in wire form. */
export interface LocalRecord {
  readonly name: string;
  readonly type: number;
  readonly ttl: number;
  readonly rdata: Buffer;
}

/** The forwarded answer to a CNAME target outside a local zone, appended after the in-zone chain. */
export interface ForwardedTail {
  /** The query that was resolved for the target (its question is what the reply's pointers refer to). */
  readonly query: Query;
  readonly reply: Reply;
  readonly ageSec: number;
}

export interface LocalReplyOptions {
  readonly rcode: 'NOERROR' | 'NXDOMAIN';
  /** AA: set for a local zone's own data, clear for an RPZ rewrite. */
  readonly authoritative: boolean;
  readonly answer: readonly LocalRecord[];
  readonly authority: readonly LocalRecord[];
  readonly additional: readonly LocalRecord[];
  readonly tail?: ForwardedTail;
  readonly ede?: { readonly code: number; readonly text: string };
}

/** The dotted key form back to wire labels (`\.`/`\\` and `\DDD` escapes, as labelText and the zone parser write them). */
export function nameToWire(name: string): Buffer {
  const bytes: number[] = [];
  let label: number[] = [];
  const flush = (): void => {
    bytes.push(label.length, ...label);
    label = [];
  };
  if (name !== '') {
    for (let i = 0; i < name.length; i++) {
      const c = name.charCodeAt(i);
      if (c === 0x5c) {
        const digits = name.slice(i + 1, i + 4);
        if (/^\d{3}$/.test(digits)) {
          label.push(Number(digits) & 0xff);
          i += 3;
        } else {
          label.push(name.charCodeAt(i + 1) & 0xff);
          i += 1;
        }
      } else if (c === 0x2e) flush();
      else label.push(c & 0xff);
    }
    flush();
  }
  bytes.push(0);
  return Buffer.from(bytes);
}

/** Bytes of a record's owner as written: a pointer to the question (2) for the query's own name. */
function ownerBytes(r: LocalRecord, qname: string): Buffer | undefined {
  return r.name === qname ? undefined : nameToWire(r.name);
}

/** Writes one record at `p`; the query's own name points at the question (shorter, and keeps the client's case). */
function writeRecord(out: Buffer, p: number, r: LocalRecord, owner: Buffer | undefined): number {
  if (owner === undefined) {
    out[p] = 0xc0;
    out[p + 1] = HEADER_BYTES;
    p += 2;
  } else p += owner.copy(out, p);
  out.writeUInt16BE(r.type, p);
  out.writeUInt16BE(CLASS_IN, p + 2);
  out.writeUInt32BE(r.ttl >>> 0, p + 4);
  out.writeUInt16BE(r.rdata.length, p + 8);
  return p + 10 + r.rdata.copy(out, p + 10);
}

// Types whose RDATA may hold compressed names (RFC 3597 §4): those names are expanded when a forwarded
// answer is moved behind our own records, where its pointers would no longer land.
const NAME_RDATA: ReadonlyMap<number, { readonly before: number; readonly names: number }> = new Map([
  [QTYPE.NS, { before: 0, names: 1 }], [QTYPE.CNAME, { before: 0, names: 1 }], [QTYPE.PTR, { before: 0, names: 1 }],
  [QTYPE.SOA, { before: 0, names: 2 }], [QTYPE.MX, { before: 2, names: 1 }],
]);

/** A forwarded reply's answer and authority records as LocalRecords (names expanded, TTLs aged), or undefined if unreadable. */
function tailRecords(tail: ForwardedTail): { answer: LocalRecord[]; authority: LocalRecord[] } | undefined {
  const { query, reply, ageSec } = tail;
  const buf = Buffer.alloc(HEADER_BYTES + query.question.length + reply.body.length);
  query.question.copy(buf, HEADER_BYTES);
  buf.write(reply.body, HEADER_BYTES + query.question.length, 'latin1');
  const answer: LocalRecord[] = [];
  const authority: LocalRecord[] = [];
  let offset = HEADER_BYTES + query.question.length;
  for (let i = 0; i < reply.answerCount + reply.authorityCount; i++) {
    const owner = readName(buf, offset, true);
    const rr = skipRecord(buf, offset);
    if (owner === undefined || rr === undefined) return undefined;
    let rdata = buf.subarray(rr.rdOffset, rr.end);
    const layout = NAME_RDATA.get(rr.type);
    if (layout !== undefined && rr.cls === CLASS_IN) {
      const parts: Buffer[] = [buf.subarray(rr.rdOffset, rr.rdOffset + layout.before)];
      let p = rr.rdOffset + layout.before;
      for (let n = 0; n < layout.names; n++) {
        const name = readName(buf, p, false);
        if (name === undefined) return undefined;
        parts.push(nameToWire(name.text));
        p = name.end;
      }
      parts.push(buf.subarray(p, rr.end));
      rdata = Buffer.concat(parts);
    }
    const ttl = Math.max(0, (buf.readUInt32BE(rr.ttlOffset) & 0x7fffffff) - ageSec);
    (i < reply.answerCount ? answer : authority).push({ name: owner.text, type: rr.type, ttl, rdata });
    offset = rr.end;
  }
  return { answer, authority };
}

/**
 * A reply we answer ourselves from records: header (AA as asked), the question echoed, the sections,
 * our OPT (with EDE when given) when the client sent one; TC=1 with no records when it does not fit.
 */
export function encodeLocalReply(q: Query, opts: LocalReplyOptions, udpSize: number): Buffer {
  let rcode: number = RCODE[opts.rcode];
  let answer = opts.answer;
  let authority = opts.authority;
  if (opts.tail !== undefined) {
    const tail = tailRecords(opts.tail);
    if (tail === undefined) return encodeSynthReply(q, { rcode: 'SERVFAIL', ede: { code: 0, text: 'upstream answer for the CNAME target unreadable' } }, udpSize);
    answer = [...answer, ...tail.answer];
    authority = tail.authority;
    rcode = opts.tail.reply.rcode & 0x0f;
  }
  const sections = [answer, authority, opts.additional];
  // Owners other than the query's name, encoded once (sized first, then written into one buffer).
  const owners: (Buffer | undefined)[] = [];
  let recordBytes = 0;
  for (const section of sections) {
    for (const r of section) {
      const owner = ownerBytes(r, q.name);
      owners.push(owner);
      recordBytes += (owner === undefined ? 2 : owner.length) + 10 + r.rdata.length;
    }
  }
  let edeOption: Buffer | undefined;
  if (q.edns !== undefined && opts.ede !== undefined) {
    const text = Buffer.from(truncateUtf8(opts.ede.text, EDE_TEXT_MAX_BYTES), 'utf8');
    edeOption = Buffer.alloc(6 + text.length);
    edeOption.writeUInt16BE(OPT_CODE_EDE, 0);
    edeOption.writeUInt16BE(2 + text.length, 2);
    edeOption.writeUInt16BE(opts.ede.code, 4);
    text.copy(edeOption, 6);
  }
  const optBytes = q.edns === undefined ? 0 : 11 + (edeOption?.length ?? 0);
  const size = HEADER_BYTES + q.question.length + recordBytes + optBytes;
  const aa = opts.authoritative ? 0x0400 : 0;
  if (size > q.maxReplyBytes) {
    const out = truncatedReply(q, rcode, 0, udpSize);
    out.writeUInt16BE(out.readUInt16BE(2) | aa, 2);
    return out;
  }
  const out = Buffer.allocUnsafe(size);
  writeReplyHeader(out, q, 0, rcode, answer.length, authority.length, opts.additional.length + (optBytes > 0 ? 1 : 0));
  if (aa !== 0) out.writeUInt16BE(out.readUInt16BE(2) | aa, 2);
  q.question.copy(out, HEADER_BYTES);
  let p = HEADER_BYTES + q.question.length;
  let i = 0;
  for (const section of sections) for (const r of section) p = writeRecord(out, p, r, owners[i++]);
  if (optBytes > 0) {
    p = writeOptHeader(out, p, udpSize, 0, q.edns!.dnssecOk, edeOption?.length ?? 0);
    if (edeOption !== undefined) edeOption.copy(out, p);
  }
  return out;
}

/** The question section for `name`/`type` (class IN), for a query we ask on a client's behalf (a CNAME target). */
export function encodeQuestion(name: string, type: number): Buffer {
  const wire = nameToWire(name);
  const out = Buffer.alloc(wire.length + 4);
  wire.copy(out, 0);
  out.writeUInt16BE(type, wire.length);
  out.writeUInt16BE(CLASS_IN, wire.length + 2);
  return out;
}
