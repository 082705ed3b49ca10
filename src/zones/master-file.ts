// RFC 1035 §5 master files → records with their RDATA already in wire form. Owns: the tokenizer
// (comments, quoted strings with \X and \DDD escapes, parentheses across lines, a blank owner meaning
// "the previous one"), the directives $ORIGIN, $TTL and $INCLUDE (relative to the including file),
// TTLs with BIND units (1h30m); each record's data goes to rdata.ts for its wire form (SOA NS A AAAA CNAME DNAME MX
// TXT SRV PTR CAA HTTPS SVCB and RFC 3597's generic `TYPE123 \# len hex`. Every error names
// file:line and what is wrong. Never judges a zone as a whole (apex SOA, CNAME beside other data:
// zone.ts does) and never touches sockets; its only I/O is reading the files it is given.
//
// Why wire RDATA at parse time: answers are then copied, not encoded, per query, and HTTPS/SVCB —
// which dns-packet cannot encode — need no special path. Names inside RDATA are written uncompressed
// (always allowed; RFC 3597 §4 requires it for newer types).
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { encodeRdata, labelsToKey, nameLabels, parseTtl, rrtypeOf, type Token } from './rdata.js';

export { RRTYPE, labelsToKey, parseTtl, rrtypeName, rrtypeOf } from './rdata.js';

/** One resource record of a zone. `owner` is lower case, absolute, without the trailing dot ('' = root). */
export interface ZoneRecord {
  readonly owner: string;
  readonly type: number;
  readonly ttl: number;
  readonly rdata: Buffer;
  /** The target name of CNAME, DNAME, NS, MX, SRV, HTTPS/SVCB (lower case, absolute): what answers chase. */
  readonly target?: string;
  /** Where it was written, for zone-level errors (`zones/corp.zone:12`). */
  readonly at: string;
}


const MAX_INCLUDE_DEPTH = 8;

interface Line {
  readonly tokens: Token[];
  /** The line began with whitespace: the owner is the previous record's. */
  readonly blankOwner: boolean;
  readonly lineNo: number;
}


/** Splits a master file into logical lines (parentheses joined), with 1-based numbers of where each began. */
function logicalLines(text: string, file: string): Line[] {
  const out: Line[] = [];
  let tokens: Token[] = [];
  let depth = 0;
  let startLine = 1;
  let blankOwner = false;
  let lineNo = 1;
  let atLineStart = true;
  const fail = (msg: string): never => {
    throw new ConfigError('', `${file}:${lineNo}: ${msg}`);
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (atLineStart && depth === 0) {
      startLine = lineNo;
      blankOwner = c === ' ' || c === '\t';
      atLineStart = false;
    }
    if (c === '\n') {
      lineNo += 1;
      i += 1;
      if (depth === 0) {
        if (tokens.length > 0) out.push({ tokens, blankOwner, lineNo: startLine });
        tokens = [];
        atLineStart = true;
      }
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r') {
      i += 1;
      continue;
    }
    if (c === ';') {
      while (i < text.length && text[i] !== '\n') i += 1;
      continue;
    }
    if (c === '(') {
      depth += 1;
      i += 1;
      continue;
    }
    if (c === ')') {
      if (depth === 0) fail('")" without "("');
      depth -= 1;
      i += 1;
      continue;
    }
    if (c === '"') {
      // A quoted string ends on its own line (as in BIND): a newline inside is an unclosed quote.
      const close = closingQuote(text, i + 1);
      if (close < 0) fail('unterminated quoted string');
      tokens.push({ text: text.slice(i + 1, close), quoted: true });
      i = close + 1;
      continue;
    }
    let j = i;
    let s = '';
    while (j < text.length && !' \t\r\n;()"'.includes(text[j]!)) {
      // key="quoted value" (SVCB/HTTPS params, RFC 9460 App. A) is one token.
      if (text[j] === '=' && text[j + 1] === '"') {
        const close = closingQuote(text, j + 2);
        if (close < 0) fail('unterminated quoted string');
        s += `=${text.slice(j + 2, close)}`;
        j = close + 1;
        continue;
      }
      if (text[j] === '\\' && j + 1 < text.length && text[j + 1] !== '\n') {
        s += text[j]! + text[j + 1]!;
        j += 2;
        continue;
      }
      s += text[j]!;
      j += 1;
    }
    tokens.push({ text: s, quoted: false });
    i = j;
  }
  if (depth !== 0) throw new ConfigError('', `${file}:${startLine}: "(" is never closed`);
  if (tokens.length > 0) out.push({ tokens, blankOwner, lineNo: startLine });
  return out;
}

/** The index of the `"` that closes a quoted string whose text starts at `from` (escapes skipped), or -1. */
function closingQuote(text: string, from: number): number {
  for (let j = from; j < text.length; j++) {
    if (text[j] === '\\') j += 1;
    else if (text[j] === '"') return j;
    else if (text[j] === '\n') return -1;
  }
  return -1;
}

export interface ParseOptions {
  /** The zone's name: the initial $ORIGIN. */
  readonly origin: string;
  /** TTL for records before any $TTL (BIND takes the SOA MINIMUM; we require $TTL or an explicit TTL). */
  readonly defaultTtl?: number;
  /** Reads an included file (tests inject; default fs). */
  readonly readFile?: (path: string) => string;
}

/** Parses a master file (and what it includes) into records. Throws ConfigError naming file:line. */
export function parseMasterFile(path: string, opts: ParseOptions): ZoneRecord[] {
  const read = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const records: ZoneRecord[] = [];
  const originLabels = nameLabels(opts.origin.endsWith('.') ? opts.origin : `${opts.origin}.`, [], (m) => {
    throw new ConfigError('', `zone name: ${m}`);
  });
  const state = { ttl: opts.defaultTtl, lastOwner: undefined as Buffer[] | undefined, lastTtl: undefined as number | undefined };
  parseInto(path, read, originLabels, state, records, [path], 0, 'zone file');
  return records;
}

interface ParseState {
  ttl: number | undefined;
  lastOwner: Buffer[] | undefined;
  lastTtl: number | undefined;
}

/** A file's text; `from` names where it was asked for ($INCLUDE's file:line) so the error points there. */
function readZoneText(path: string, read: (p: string) => string, from: string): string {
  try {
    return read(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError('', `${from}: cannot read ${path} (${code ?? (err as Error).message})`);
  }
}

function parseInto(path: string, read: (p: string) => string, startOrigin: Buffer[], state: ParseState, out: ZoneRecord[], chain: string[], depth: number, from: string): void {
  const text = readZoneText(path, read, from);
  let origin = startOrigin;
  for (const line of logicalLines(text, path)) {
    const at = `${path}:${line.lineNo}`;
    const fail = (msg: string): never => {
      throw new ConfigError('', `${at}: ${msg}`);
    };
    const toks = line.tokens;
    const first = toks[0]!;
    if (!line.blankOwner && !first.quoted && first.text.startsWith('$')) {
      const directive = first.text.toUpperCase();
      if (directive === '$ORIGIN') {
        if (toks.length !== 2) fail('$ORIGIN takes one name');
        origin = nameLabels(toks[1]!.text, origin, fail);
      } else if (directive === '$TTL') {
        const ttl = toks.length === 2 ? parseTtl(toks[1]!.text) : undefined;
        if (ttl === undefined) fail(`$TTL: "${toks.slice(1).map((t) => t.text).join(' ')}" is not a TTL`);
        state.ttl = ttl;
      } else if (directive === '$INCLUDE') {
        if (toks.length < 2 || toks.length > 3) fail('$INCLUDE takes a file name and an optional origin');
        if (depth >= MAX_INCLUDE_DEPTH) fail(`$INCLUDE nested deeper than ${MAX_INCLUDE_DEPTH}`);
        const file = resolve(dirname(path), toks[1]!.text);
        if (chain.includes(file)) fail(`$INCLUDE ${toks[1]!.text} includes itself`);
        const incOrigin = toks[2] ? nameLabels(toks[2].text, origin, fail) : origin;
        // RFC 1035 §5.1: the included file's $ORIGIN changes do not reach back into this file.
        parseInto(file, read, incOrigin, state, out, [...chain, file], depth + 1, `${at}: $INCLUDE`);
      } else fail(`unsupported directive ${first.text} (supported: $ORIGIN, $TTL, $INCLUDE)`);
      continue;
    }
    let i = 0;
    let owner: Buffer[];
    if (line.blankOwner) {
      if (!state.lastOwner) fail('a record with no owner name and no record before it');
      owner = state.lastOwner!;
    } else {
      owner = nameLabels(toks[0]!.text, origin, fail);
      i = 1;
    }
    // [TTL] [class] type, TTL and class in either order (RFC 1035 §5.1).
    let ttl: number | undefined;
    let type: number | undefined;
    for (let k = 0; k < 2 && i < toks.length; k++) {
      const t = toks[i]!.text;
      if (ttl === undefined && /^\d/.test(t)) {
        ttl = parseTtl(t);
        if (ttl === undefined) fail(`TTL "${t}" is not a TTL`);
        i += 1;
      } else if (/^(IN|CLASS1)$/i.test(t)) i += 1;
      else if (/^(CH|HS|CS|CLASS\d+)$/i.test(t)) fail(`class ${t}: only IN is served`);
    }
    if (i >= toks.length) fail('the record type is missing');
    type = rrtypeOf(toks[i]!.text);
    if (type === undefined) fail(`unknown record type "${toks[i]!.text}"`);
    i += 1;
    const effectiveTtl = ttl ?? state.ttl ?? state.lastTtl;
    if (effectiveTtl === undefined) fail('no TTL: give one on the record or set $TTL first');
    const { rdata, target } = encodeRdata(type!, toks.slice(i), { origin, fail });
    if (rdata.length > 65535) fail('RDATA longer than 65535 bytes');
    state.lastOwner = owner;
    state.lastTtl = effectiveTtl;
    out.push({ owner: labelsToKey(owner), type: type!, ttl: effectiveTtl!, rdata, ...(target === undefined ? {} : { target }), at });
  }
}
