// Presentation form → wire form for record data (RFC 1035 §5.1 text, RFC 3597 generic RDATA, RFC 9460
// SvcParams): names with \X/\DDD escapes completed by an origin, TTLs with BIND units, addresses, and the
// RDATA of SOA NS A AAAA CNAME DNAME MX TXT SRV PTR CAA HTTPS SVCB. Pure: no I/O; errors go through the
// caller's `fail`, which knows the file:line. Never tokenizes files (master-file.ts does).
import { isIPv4, isIPv6 } from 'node:net';

export const RRTYPE = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, DNAME: 39, SVCB: 64, HTTPS: 65, CAA: 257,
} as const;
const TYPE_OF: ReadonlyMap<string, number> = new Map(Object.entries(RRTYPE));
const TYPE_NAME: ReadonlyMap<number, string> = new Map(Object.entries(RRTYPE).map(([k, v]) => [v, k]));
export const rrtypeName = (t: number): string => TYPE_NAME.get(t) ?? `TYPE${t}`;

/** A record type from its mnemonic or `TYPEnnn` (RFC 3597), or undefined. */
export function rrtypeOf(token: string): number | undefined {
  const upper = token.toUpperCase();
  const known = TYPE_OF.get(upper);
  if (known !== undefined) return known;
  const m = /^TYPE(\d{1,5})$/.exec(upper);
  return m && Number(m[1]) <= 65535 ? Number(m[1]) : undefined;
}


const MAX_TTL = 2_147_483_647; // RFC 2181 §8

/** One token of a master-file line; `quoted` when it was written in double quotes. */
export interface Token {
  readonly text: string;
  readonly quoted: boolean;
}


/** Presentation text with \X and \DDD escapes → bytes (RFC 1035 §5.1). */
export function unescape(text: string, fail: (msg: string) => never): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x5c) {
      if (c > 0x7f) bytes.push(...Buffer.from(text[i]!, 'utf8'));
      else bytes.push(c);
      continue;
    }
    const d = /^\d{3}/.exec(text.slice(i + 1, i + 4));
    if (d) {
      const v = Number(d[0]);
      if (v > 255) fail(`escape \\${d[0]} is over 255`);
      bytes.push(v);
      i += 3;
    } else if (i + 1 < text.length) {
      bytes.push(text.charCodeAt(i + 1));
      i += 1;
    } else fail('a lone "\\" at the end');
  }
  return Buffer.from(bytes);
}

/** A domain name in presentation form → its labels as bytes, relative names completed with `origin`. */
export function nameLabels(text: string, origin: readonly Buffer[], fail: (msg: string) => never): Buffer[] {
  if (text === '@') return [...origin];
  if (text === '.') return [];
  const labels: Buffer[] = [];
  let cur = '';
  let absolute = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\') {
      cur += c + (text[i + 1] ?? '');
      i += 1;
      if (/\d/.test(text[i] ?? '')) {
        cur += text.slice(i + 1, i + 3);
        i += 2;
      }
      continue;
    }
    if (c === '.') {
      if (cur === '') fail(`empty label in name "${text}"`);
      labels.push(unescape(cur, fail));
      cur = '';
      if (i === text.length - 1) absolute = true;
      continue;
    }
    cur += c;
  }
  if (cur !== '') labels.push(unescape(cur, fail));
  const all = absolute ? labels : [...labels, ...origin];
  for (const l of all) if (l.length > 63) fail(`label longer than 63 bytes in "${text}"`);
  if (all.reduce((n, l) => n + l.length + 1, 1) > 255) fail(`name longer than 255 bytes: "${text}"`);
  return all;
}

/** Labels → the lower-case dotted form used as a key everywhere (escapes for dots and odd bytes). */
export function labelsToKey(labels: readonly Buffer[]): string {
  return labels
    .map((l) => {
      let s = '';
      for (const b of l) {
        const ch = b >= 0x41 && b <= 0x5a ? b + 0x20 : b;
        if (ch === 0x2e || ch === 0x5c) s += `\\${String.fromCharCode(ch)}`;
        else if (ch <= 0x20 || ch >= 0x7f) s += `\\${String(ch).padStart(3, '0')}`;
        else s += String.fromCharCode(ch);
      }
      return s;
    })
    .join('.');
}

export function labelsToWire(labels: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const l of labels) parts.push(Buffer.from([l.length]), l);
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** A TTL: seconds, or BIND's units (`1w2d3h4m5s`, case-insensitive). */
export function parseTtl(text: string): number | undefined {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    return n <= MAX_TTL ? n : undefined;
  }
  const m = /^(?:\d+[wdhms])+$/i.exec(text);
  if (!m) return undefined;
  const unit: Record<string, number> = { w: 604800, d: 86400, h: 3600, m: 60, s: 1 };
  let total = 0;
  for (const [, n, u] of text.matchAll(/(\d+)([wdhms])/gi)) total += Number(n) * unit[u!.toLowerCase()]!;
  return total <= MAX_TTL ? total : undefined;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function ipv4Bytes(text: string): Buffer | undefined {
  return isIPv4(text) ? Buffer.from(text.split('.').map(Number)) : undefined;
}

function ipv6Bytes(text: string): Buffer | undefined {
  if (!isIPv6(text)) return undefined;
  let s = text;
  const tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const b = ipv4Bytes(v4[1]!)!;
    tail.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
    s = s.slice(0, -v4[1]!.length);
    if (s.endsWith(':') && !s.endsWith('::')) s = s.slice(0, -1);
  }
  const [head, rest] = s.includes('::') ? s.split('::') : [s, undefined];
  const words = (part: string | undefined) => (part ? part.split(':').filter((w) => w !== '').map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const r = [...words(rest), ...tail];
  const fill = rest === undefined ? [] : new Array<number>(8 - h.length - r.length).fill(0);
  const all = rest === undefined ? [...h, ...tail] : [...h, ...fill, ...r];
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

const SVC_KEYS: Readonly<Record<string, number>> = { mandatory: 0, alpn: 1, 'no-default-alpn': 2, port: 3, ipv4hint: 4, ech: 5, ipv6hint: 6 };
function svcKey(name: string): number | undefined {
  const known = SVC_KEYS[name];
  if (known !== undefined) return known;
  const m = /^key(\d{1,5})$/.exec(name);
  return m && Number(m[1]) <= 65535 ? Number(m[1]) : undefined;
}

/** A comma-separated SvcParam value list (RFC 9460 App. A.1: `\,` escapes a comma inside an item). */
function commaList(value: string): string[] {
  const items: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '\\' && i + 1 < value.length) {
      cur += value[i]! + value[i + 1]!;
      i += 1;
    } else if (value[i] === ',') {
      items.push(cur);
      cur = '';
    } else cur += value[i]!;
  }
  items.push(cur);
  return items;
}

interface RdataContext {
  readonly origin: readonly Buffer[];
  readonly fail: (msg: string) => never;
}

/** Presentation RDATA tokens → wire RDATA (and the target name the type points at, if any). */
export function encodeRdata(type: number, tokens: readonly Token[], ctx: RdataContext): { rdata: Buffer; target?: string } {
  const { fail, origin } = ctx;
  const need = (n: number) => {
    if (tokens.length !== n) fail(`${rrtypeName(type)} takes ${n} field${n === 1 ? '' : 's'}, found ${tokens.length}`);
  };
  const num = (t: Token | undefined, max: number, what: string): number => {
    if (!t || !/^\d+$/.test(t.text) || Number(t.text) > max) fail(`${rrtypeName(type)} ${what}: expected a number 0–${max}, found "${t?.text ?? ''}"`);
    return Number(t!.text);
  };
  const name = (t: Token | undefined) => {
    if (!t) fail(`${rrtypeName(type)}: a name is missing`);
    const labels = nameLabels(t!.text, origin, fail);
    return { wire: labelsToWire(labels), key: labelsToKey(labels) };
  };
  if (tokens[0]?.text === '\\#' && !tokens[0].quoted) {
    // RFC 3597 §5: \# <length> <hex…>
    const len = num(tokens[1], 65535, 'generic length');
    const hex = tokens.slice(2).map((t) => t.text).join('');
    if (!/^[0-9a-f]*$/i.test(hex) || hex.length !== len * 2) fail(`generic RDATA: ${len} bytes announced, ${hex.length / 2} given`);
    return { rdata: Buffer.from(hex, 'hex') };
  }
  switch (type) {
    case RRTYPE.A: {
      need(1);
      const b = ipv4Bytes(tokens[0]!.text);
      if (!b) fail(`A: "${tokens[0]!.text}" is not an IPv4 address`);
      return { rdata: b! };
    }
    case RRTYPE.AAAA: {
      need(1);
      const b = ipv6Bytes(tokens[0]!.text);
      if (!b) fail(`AAAA: "${tokens[0]!.text}" is not an IPv6 address`);
      return { rdata: b! };
    }
    case RRTYPE.NS:
    case RRTYPE.CNAME:
    case RRTYPE.DNAME:
    case RRTYPE.PTR: {
      need(1);
      const n = name(tokens[0]);
      return { rdata: n.wire, target: n.key };
    }
    case RRTYPE.MX: {
      need(2);
      const n = name(tokens[1]);
      return { rdata: Buffer.concat([u16(num(tokens[0], 65535, 'preference')), n.wire]), target: n.key };
    }
    case RRTYPE.SRV: {
      need(4);
      const n = name(tokens[3]);
      const fields = [num(tokens[0], 65535, 'priority'), num(tokens[1], 65535, 'weight'), num(tokens[2], 65535, 'port')];
      return { rdata: Buffer.concat([...fields.map(u16), n.wire]), target: n.key };
    }
    case RRTYPE.SOA: {
      need(7);
      const times = tokens.slice(2).map((t, i) => {
        const v = i === 0 ? (/^\d+$/.test(t.text) && Number(t.text) <= 0xffffffff ? Number(t.text) : undefined) : parseTtl(t.text);
        if (v === undefined) fail(`SOA ${['serial', 'refresh', 'retry', 'expire', 'minimum'][i]}: "${t.text}" is not a number`);
        return u32(v!);
      });
      return { rdata: Buffer.concat([name(tokens[0]).wire, name(tokens[1]).wire, ...times]) };
    }
    case RRTYPE.TXT: {
      if (tokens.length === 0) fail('TXT: no text');
      return {
        rdata: Buffer.concat(
          tokens.map((t) => {
            const b = unescape(t.text, fail);
            if (b.length > 255) fail(`TXT: a string of ${b.length} bytes (at most 255 each; split it into several quoted strings)`);
            return Buffer.concat([Buffer.from([b.length]), b]);
          }),
        ),
      };
    }
    case RRTYPE.CAA: {
      need(3);
      const tag = tokens[1]!.text;
      if (!/^[a-z0-9]{1,255}$/i.test(tag)) fail(`CAA tag "${tag}": letters and digits only`);
      const value = unescape(tokens[2]!.text, fail);
      return { rdata: Buffer.concat([Buffer.from([num(tokens[0], 255, 'flags'), tag.length]), Buffer.from(tag, 'ascii'), value]) };
    }
    case RRTYPE.SVCB:
    case RRTYPE.HTTPS: {
      if (tokens.length < 2) fail(`${rrtypeName(type)}: priority and target are required`);
      const target = name(tokens[1]);
      const params = new Map<number, Buffer>();
      for (const t of tokens.slice(2)) {
        const eq = t.text.indexOf('=');
        const keyName = (eq < 0 ? t.text : t.text.slice(0, eq)).toLowerCase();
        const value = eq < 0 ? undefined : t.text.slice(eq + 1);
        const key = svcKey(keyName);
        if (key === undefined) fail(`${rrtypeName(type)}: unknown SvcParam "${keyName}"`);
        if (params.has(key!)) fail(`${rrtypeName(type)}: SvcParam "${keyName}" given twice`);
        params.set(key!, svcValue(key!, keyName, value, fail));
      }
      const sorted = [...params.entries()].sort((a, b) => a[0] - b[0]);
      const body = sorted.flatMap(([k, v]) => [u16(k), u16(v.length), v]);
      return { rdata: Buffer.concat([u16(num(tokens[0], 65535, 'priority')), target.wire, ...body]), target: target.key };
    }
    default:
      return fail(`${rrtypeName(type)}: write its RDATA in the generic form \\# <length> <hex> (RFC 3597)`);
  }
}

function svcValue(key: number, keyName: string, value: string | undefined, fail: (msg: string) => never): Buffer {
  const needValue = (): string => {
    if (value === undefined || value === '') fail(`SvcParam ${keyName} needs a value`);
    return value!;
  };
  switch (key) {
    case 0:
      return Buffer.concat(
        commaList(needValue()).map((k) => {
          const n = svcKey(k.toLowerCase());
          if (n === undefined) fail(`SvcParam mandatory: unknown key "${k}"`);
          return u16(n!);
        }),
      );
    case 1:
      return Buffer.concat(
        commaList(needValue()).map((id) => {
          const b = unescape(id, fail);
          if (b.length === 0 || b.length > 255) fail(`SvcParam alpn: an id of ${b.length} bytes`);
          return Buffer.concat([Buffer.from([b.length]), b]);
        }),
      );
    case 2:
      if (value !== undefined) fail('SvcParam no-default-alpn takes no value');
      return Buffer.alloc(0);
    case 3: {
      const v = needValue();
      if (!/^\d+$/.test(v) || Number(v) > 65535) fail(`SvcParam port: "${v}" is not a port`);
      return u16(Number(v));
    }
    case 4:
    case 6:
      return Buffer.concat(
        commaList(needValue()).map((a) => {
          const b = key === 4 ? ipv4Bytes(a) : ipv6Bytes(a);
          if (!b) fail(`SvcParam ${keyName}: "${a}" is not an ${key === 4 ? 'IPv4' : 'IPv6'} address`);
          return b!;
        }),
      );
    case 5: {
      const v = needValue();
      if (!/^[A-Za-z0-9+/]+=*$/.test(v)) fail('SvcParam ech: not base64');
      return Buffer.from(v, 'base64');
    }
    default:
      return value === undefined ? Buffer.alloc(0) : unescape(value, fail);
  }
}

