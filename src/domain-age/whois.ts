// WHOIS fallback for TLDs without RDAP: whoiser does the port-43 query, wrapped in one overall
// deadline (whoiser's own `timeout` is a socket idle timeout per hop, not a bound on the whole
// lookup), and this module reads the creation date out of the raw text itself. Returns values,
// never throws; never judges plausibility (the caller does) and never caches.
// whoiser is loaded on the first WHOIS lookup: most deployments never make one, and it costs ~10 MB of RSS.
const whoiser = (): Promise<typeof import('whoiser')> => import('whoiser');
import type { RegistryAnswer } from './rdap.js';

/** A configured server for a TLD: whoiser.query() takes host and port, whoiser.domain() does not. */
export interface WhoisServer {
  readonly host: string;
  readonly port: number;
}

/** "whois.nic.io", "127.0.0.1:4343", "[::1]:4343" → host and port (43 when absent). */
export function parseWhoisServer(value: string): WhoisServer | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/.exec(value);
  if (match === null) return undefined;
  const port = match[3] === undefined ? 43 : Number(match[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: (match[1] ?? match[2])!, port };
}

export interface WhoisQueryOptions {
  /** Query this server directly; without it whoiser picks the registry's server itself. */
  readonly server?: WhoisServer | undefined;
  /** Overall deadline for the whole lookup, server discovery included. */
  readonly timeoutMs: number;
  /** Aborted when the owner closes; the lookup then ends as an error. */
  readonly signal: AbortSignal;
}

/** One WHOIS lookup under an overall deadline. */
export async function queryWhois(domain: string, opts: WhoisQueryOptions): Promise<RegistryAnswer> {
  const work = fetchWhoisText(domain, opts);
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const bounded = new Promise<RegistryAnswer>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'timeout' }), opts.timeoutMs);
    onAbort = () => resolve({ kind: 'error', detail: 'cancelled' });
    opts.signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    // whoiser cannot be cancelled: on the deadline its socket is left to its own idle timeout
    // (set to the same timeoutMs below), and its late result or rejection is absorbed here.
    return await Promise.race([
      work.then(
        (text): RegistryAnswer => creationFromWhois(text),
        (err: unknown): RegistryAnswer => ({ kind: 'error', detail: err instanceof Error ? err.message : String(err) }),
      ),
      bounded,
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) opts.signal.removeEventListener('abort', onAbort);
  }
}

async function fetchWhoisText(domain: string, opts: WhoisQueryOptions): Promise<string> {
  if (opts.signal.aborted) throw new Error('cancelled');
  const { domain: whoisDomain, query: whoisQuery } = await whoiser();
  if (opts.server !== undefined) {
    return whoisQuery({ host: opts.server.host, port: opts.server.port, query: domain, timeout: opts.timeoutMs });
  }
  // follow: 1 = the registry's answer only; the creation date is there, the registrar hop adds none.
  const results = await whoisDomain(domain, { follow: 1, timeout: opts.timeoutMs, raw: true });
  const first = Object.values(results)[0];
  const raw = typeof first === 'object' && first !== null && !Array.isArray(first) ? (first as Record<string, unknown>)['__raw'] : undefined;
  if (typeof raw !== 'string') throw new Error('no WHOIS answer');
  return raw;
}

// Labels registries use for the creation date (lower-case, without the colon), from the
// registry formats whoiser's parser knows plus .uk/.jp/.br/.pl/.hk/.fr layouts.
const CREATION_LABELS: ReadonlySet<string> = new Set([
  'creation date', 'created', 'created on', 'created date', 'registered on', 'registered',
  'registration date', 'registration time', 'domain registration date', 'domain create date',
  'domain registered', 'record created', 'relevant dates registered on', 'domain name commencement date',
  'created at', 'registered date', 'creation-date', 'first registration date',
]);

// Phrases a registry uses when the name is not registered; checked only when no date was found.
const NOT_FOUND = /\b(?:no match(?:es)?(?: for)?|not found|no data found|no entries found|no object found|object does not exist|status:\s*(?:free|available)|is available for registration|domain not found)\b/i;

/** The creation date in a raw WHOIS answer. */
export function creationFromWhois(text: string): RegistryAnswer {
  if (text.trim() === '') return { kind: 'error', detail: 'empty WHOIS answer' };
  let sawLabel = false;
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('%') || line.startsWith('#') || line.startsWith('>>>')) continue;
    let label: string;
    let value: string;
    const bracket = /^\[([^\]]+)\]\s*(.*)$/.exec(line); // JPRS: "[Created on]   2001/03/12"
    if (bracket !== null) {
      label = bracket[1]!;
      value = bracket[2]!;
    } else {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      label = line.slice(0, colon);
      value = line.slice(colon + 1);
    }
    if (!CREATION_LABELS.has(label.trim().toLowerCase().replace(/\s+/g, ' '))) continue;
    sawLabel = true;
    const createdMs = parseRegistryDate(value);
    if (createdMs !== undefined) return { kind: 'ok', createdMs };
  }
  if (sawLabel) return { kind: 'error', detail: 'unparseable creation date' };
  if (NOT_FOUND.test(text)) return { kind: 'not_found', detail: 'registry reports no such domain' };
  return { kind: 'error', detail: 'no creation date in WHOIS answer' };
}

const MONTHS: Readonly<Record<string, number>> = {
  jan: 1, feb: 2, mar: 3, apr: 4, may: 5, jun: 6, jul: 7, aug: 8, sep: 9, oct: 10, nov: 11, dec: 12,
};
const ISO_LIKE = /^(\d{4})[-./](\d{1,2})[-./](\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?)?/i;
const COMPACT = /^(\d{4})(\d{2})(\d{2})(?:\s|$)/; // .br: "created: 19960101 #..."
const DAY_MON_YEAR = /^(\d{1,2})[- ]([A-Za-z]{3})[A-Za-z]*[- ](\d{4})/; // .uk: "14-Aug-1996"
const DAY_MONTH_YEAR = /^(\d{1,2})[./](\d{1,2})[./](\d{4})/; // "31.12.2003", "31/12/2003" (day first)

/** A registry date (UTC unless an offset is given); undefined for anything it cannot read exactly. */
export function parseRegistryDate(text: string): number | undefined {
  const value = text.trim();
  let m = ISO_LIKE.exec(value);
  if (m !== null) {
    const base = utc(Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0));
    if (base === undefined) return undefined;
    return base - offsetMs(m[7]);
  }
  m = COMPACT.exec(value);
  if (m !== null) return utc(Number(m[1]), Number(m[2]), Number(m[3]), 0, 0, 0);
  m = DAY_MON_YEAR.exec(value);
  if (m !== null) {
    const month = MONTHS[m[2]!.toLowerCase()];
    return month === undefined ? undefined : utc(Number(m[3]), month, Number(m[1]), 0, 0, 0);
  }
  m = DAY_MONTH_YEAR.exec(value);
  if (m !== null) return utc(Number(m[3]), Number(m[2]), Number(m[1]), 0, 0, 0);
  return undefined;
}

function utc(year: number, month: number, day: number, hour: number, minute: number, second: number): number | undefined {
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return undefined;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  // Date.UTC rolls 2023-02-30 over into March; a registry never means that.
  return new Date(ms).getUTCDate() === day ? ms : undefined;
}

function offsetMs(zone: string | undefined): number {
  if (zone === undefined || /^(?:z|utc|gmt)$/i.test(zone)) return 0;
  const sign = zone.startsWith('-') ? -1 : 1;
  const digits = zone.slice(1).replace(':', '');
  return sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4))) * 60_000;
}
