// RDAP client for registration dates: the IANA bootstrap (RFC 9224) maps a TLD to base URLs, and
// `queryRdap` fetches `<base>domain/<name>` (RFC 9082) under a hard deadline and a size cap, then
// reads the `registration` event (RFC 9083 §4.5). Returns values, never throws; never validates
// plausibility of a date (the caller does, in one place) and never caches.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

/** What a registry said about one domain. `createdMs` is as parsed, not yet judged plausible. */
export type RegistryAnswer =
  | { readonly kind: 'ok'; readonly createdMs: number }
  | { readonly kind: 'not_found'; readonly detail: string }
  | { readonly kind: 'error'; readonly detail: string }
  | { readonly kind: 'timeout' };

/** TLD → RDAP base URL (ending in "/"), from an RFC 9224 bootstrap document. */
export class RdapBootstrap {
  readonly #baseUrls: ReadonlyMap<string, string>;

  private constructor(
    baseUrls: ReadonlyMap<string, string>,
    readonly publication: string,
  ) {
    this.#baseUrls = baseUrls;
  }

  /** Validates the document's shape; undefined when it is not a usable bootstrap file. */
  static parse(doc: unknown): RdapBootstrap | undefined {
    if (typeof doc !== 'object' || doc === null) return undefined;
    const { services, publication } = doc as { services?: unknown; publication?: unknown };
    if (!Array.isArray(services)) return undefined;
    const baseUrls = new Map<string, string>();
    for (const service of services) {
      if (!Array.isArray(service) || service.length < 2) continue;
      const [entries, urls] = service as [unknown, unknown];
      if (!Array.isArray(entries) || !Array.isArray(urls)) continue;
      const url = pickBaseUrl(urls.filter((u): u is string => typeof u === 'string'));
      if (url === undefined) continue;
      for (const entry of entries) if (typeof entry === 'string') baseUrls.set(entry.toLowerCase(), url);
    }
    if (baseUrls.size === 0) return undefined;
    return new RdapBootstrap(baseUrls, typeof publication === 'string' ? publication : 'unknown');
  }

  static fromText(text: string): RdapBootstrap | undefined {
    try {
      return RdapBootstrap.parse(JSON.parse(text));
    } catch {
      return undefined;
    }
  }

  get size(): number {
    return this.#baseUrls.size;
  }

  /** Base URL for the longest listed suffix of `domain` (RFC 9224 §4: longest match wins). */
  baseUrlFor(domain: string): string | undefined {
    let suffix = domain; // walked from the longest suffix down, so the first match is the longest
    for (;;) {
      const url = this.#baseUrls.get(suffix);
      if (url !== undefined) return url;
      const dot = suffix.indexOf('.');
      if (dot === -1) return undefined;
      suffix = suffix.slice(dot + 1);
    }
  }
}

// The copy of IANA's file shipped in fixtures/rdap/ (see its README): this module runs from src/
// under vitest from src/domain-age/ and from dist/src/domain-age/ when built.
const SHIPPED_BOOTSTRAP = [
  new URL('../../fixtures/rdap/dns.json', import.meta.url),
  new URL('../../../fixtures/rdap/dns.json', import.meta.url),
];

/** The shipped bootstrap, or undefined when the file is missing from this installation. */
export function readShippedBootstrap(): RdapBootstrap | undefined {
  for (const url of SHIPPED_BOOTSTRAP) {
    let text: string;
    try {
      text = readFileSync(url, 'utf8');
    } catch {
      continue;
    }
    const parsed = RdapBootstrap.fromText(text);
    if (parsed !== undefined) return parsed;
  }
  return undefined;
}

/** A configured bootstrap file; throws (the message names the path) when unreadable or not one. */
export function readBootstrapFile(path: string): RdapBootstrap {
  const parsed = RdapBootstrap.fromText(readFileSync(path, 'utf8'));
  if (parsed === undefined) throw new Error(`${path} is not an RDAP bootstrap file`);
  return parsed;
}

/** The bootstrap text from an http(s) URL or a file path, for a refresh. Throws on failure. */
export async function fetchBootstrapText(source: string, signal: AbortSignal, timeoutMs: number): Promise<string> {
  if (!/^https?:\/\//.test(source)) return readFile(source, 'utf8');
  const response = await fetch(source, { signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) });
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new Error(`HTTP ${response.status}`);
  }
  return response.text();
}

/** RFC 9224 §3: prefer https when a service lists both; base URLs must end in "/". */
function pickBaseUrl(urls: readonly string[]): string | undefined {
  const chosen = urls.find((u) => u.startsWith('https://')) ?? urls.find((u) => u.startsWith('http://'));
  if (chosen === undefined) return undefined;
  return chosen.endsWith('/') ? chosen : `${chosen}/`;
}

export interface RdapQueryOptions {
  readonly timeoutMs: number;
  readonly maxResponseBytes: number;
  /** Aborted when the owner closes; the query then ends as an error. */
  readonly signal: AbortSignal;
}

/** One RDAP domain query; every failure mode is a value. */
export async function queryRdap(baseUrl: string, domain: string, opts: RdapQueryOptions): Promise<RegistryAnswer> {
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  const signal = AbortSignal.any([opts.signal, deadline]);
  const url = `${baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`}domain/${encodeURIComponent(domain)}`;
  try {
    const response = await fetch(url, {
      signal,
      redirect: 'follow',
      headers: { accept: 'application/rdap+json, application/json;q=0.9' },
    });
    // RFC 7480 §5.3: 404 means the registry has no such object.
    if (response.status === 404) {
      await response.body?.cancel();
      return { kind: 'not_found', detail: 'HTTP 404' };
    }
    if (response.status !== 200) {
      await response.body?.cancel();
      return { kind: 'error', detail: `HTTP ${response.status}` };
    }
    const text = await readCapped(response, opts.maxResponseBytes);
    if (text === undefined) return { kind: 'error', detail: `response larger than ${opts.maxResponseBytes} bytes` };
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      return { kind: 'error', detail: 'response is not JSON' };
    }
    return registrationOf(doc, domain);
  } catch (err) {
    if (deadline.aborted) return { kind: 'timeout' };
    if (opts.signal.aborted) return { kind: 'error', detail: 'cancelled' };
    return { kind: 'error', detail: err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err) };
  }
}

/** The `registration` event date of an RDAP domain object (RFC 9083 §4.5, §5.3). */
export function registrationOf(doc: unknown, domain: string): RegistryAnswer {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return { kind: 'error', detail: 'response is not an RDAP object' };
  const obj = doc as { objectClassName?: unknown; ldhName?: unknown; events?: unknown; errorCode?: unknown };
  if (typeof obj.errorCode === 'number') {
    return obj.errorCode === 404 ? { kind: 'not_found', detail: 'RDAP error 404' } : { kind: 'error', detail: `RDAP error ${obj.errorCode}` };
  }
  if (obj.objectClassName !== 'domain') return { kind: 'error', detail: 'not an RDAP domain object' };
  if (typeof obj.ldhName === 'string' && obj.ldhName.toLowerCase().replace(/\.$/, '') !== domain) {
    return { kind: 'error', detail: `answer is for ${obj.ldhName}` };
  }
  if (!Array.isArray(obj.events)) return { kind: 'not_found', detail: 'no events' };
  for (const event of obj.events as unknown[]) {
    if (typeof event !== 'object' || event === null) continue;
    const { eventAction, eventDate } = event as { eventAction?: unknown; eventDate?: unknown };
    if (eventAction !== 'registration') continue;
    if (typeof eventDate !== 'string') return { kind: 'error', detail: 'registration event without a date' };
    const createdMs = parseRfc3339(eventDate);
    return createdMs === undefined ? { kind: 'error', detail: `unparseable date ${JSON.stringify(eventDate.slice(0, 40))}` } : { kind: 'ok', createdMs };
  }
  return { kind: 'not_found', detail: 'no registration event' };
}

// RFC 3339 as RDAP requires (RFC 9083 §4.5); Date.parse alone would accept "March 7" and friends.
const RFC3339 = /^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?$/;

function parseRfc3339(text: string): number | undefined {
  const trimmed = text.trim();
  if (!RFC3339.test(trimmed)) return undefined;
  const ms = Date.parse(trimmed.replace(' ', 'T'));
  return Number.isFinite(ms) ? ms : undefined;
}

/** Reads at most `maxBytes` of the body; undefined (and the body cancelled) when it is larger. */
async function readCapped(response: Response, maxBytes: number): Promise<string | undefined> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel();
    return undefined;
  }
  if (response.body === null) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
