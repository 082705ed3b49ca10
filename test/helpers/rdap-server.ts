// A real RDAP HTTP server on 127.0.0.1 (port 0) serving fixtures/rdap answers, a slow one, a
// server error and garbage, for domain-age tests. Counts requests per domain.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const FIXTURES = new URL('../../fixtures/rdap/', import.meta.url);
const fixture = (name: string): Record<string, unknown> => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as Record<string, unknown>;

/** What each test domain answers. Anything not listed gets an RFC 9083 404. */
export const RDAP_DOMAINS = {
  'example.com': { created: '1995-08-14T04:00:00Z' },
  'new-sync-cdn.com': { created: '2026-01-12T09:30:00Z' },
  'slow.com': { created: '2020-02-29T12:00:00Z', slow: true },
  'slow1.com': { created: '2020-02-29T12:00:00Z', slow: true },
  'slow2.com': { created: '2020-02-29T12:00:00Z', slow: true },
  'slow3.com': { created: '2020-02-29T12:00:00Z', slow: true },
  'slow4.com': { created: '2020-02-29T12:00:00Z', slow: true },
  'slow5.com': { created: '2020-02-29T12:00:00Z', slow: true },
  'future.com': { created: '2031-05-01T00:00:00Z' },
  'ancient.com': { created: '1970-01-01T00:00:00Z' },
} as const;

export interface RdapServer {
  /** Base URL to use in `domain_age.rdap.servers`, ending in "/". */
  readonly url: string;
  /** Requests per domain, e.g. requests.get('example.com'). */
  readonly requests: Map<string, number>;
  /** Most requests this server was answering at one moment. */
  readonly maxActive: number;
  /** Replace the bootstrap document served at /bootstrap.json. */
  bootstrap: unknown;
  close(): Promise<void>;
}

export async function startRdapServer(opts: { slowMs?: number } = {}): Promise<RdapServer> {
  const slowMs = opts.slowMs ?? 400;
  const requests = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const state = { bootstrap: undefined as unknown, active: 0, maxActive: 0 };

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/bootstrap.json') return send(res, 200, JSON.stringify(state.bootstrap ?? {}));
    const match = /^\/domain\/([^/]+)$/.exec(path);
    if (match === null) return send(res, 400, JSON.stringify({ errorCode: 400, title: 'Bad Request' }));
    const domain = decodeURIComponent(match[1]!).toLowerCase();
    requests.set(domain, (requests.get(domain) ?? 0) + 1);
    state.active++;
    state.maxActive = Math.max(state.maxActive, state.active);
    res.on('close', () => state.active--);

    switch (domain) {
      case 'broken.com':
        return send(res, 500, readFileSync(new URL('error-500.json', FIXTURES), 'utf8'));
      case 'garbage.com':
        return send(res, 200, '<html><body>502 Bad Gateway</body></html>\u0000\u00ff', 'text/html');
      case 'nodate.com':
        return send(res, 200, JSON.stringify(fixture('domain-no-registration.json')));
      case 'huge.com':
        return send(res, 200, JSON.stringify({ ...fixture('domain-example.com.json'), ldhName: 'HUGE.COM', padding: 'x'.repeat(512 * 1024) }));
    }
    const known = (RDAP_DOMAINS as Record<string, { created: string; slow?: boolean }>)[domain];
    if (known === undefined) return send(res, 404, readFileSync(new URL('error-404.json', FIXTURES), 'utf8'));
    const base = domain === 'example.com' ? fixture('domain-example.com.json') : fixture('domain-young.json');
    const events = (base['events'] as Array<{ eventAction: string; eventDate: string }>).map((e) =>
      e.eventAction === 'registration' ? { ...e, eventDate: known.created } : e,
    );
    const body = JSON.stringify({ ...base, ldhName: domain.toUpperCase(), events });
    if (known.slow !== true) return send(res, 200, body);
    const timer = setTimeout(() => {
      timers.delete(timer);
      send(res, 200, body);
    }, slowMs);
    timers.add(timer);
  };

  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    get maxActive() {
      return state.maxActive;
    },
    get bootstrap() {
      return state.bootstrap;
    },
    set bootstrap(doc: unknown) {
      state.bootstrap = doc;
    },
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function send(res: ServerResponse, status: number, body: string, type = 'application/rdap+json'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
