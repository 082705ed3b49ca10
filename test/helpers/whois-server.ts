// A real WHOIS (port-43 protocol) TCP server on 127.0.0.1 (port 0) for domain-age tests: reads
// one query line, answers with a fixtures/whois text, then closes. Also a slow answer, a reset,
// garbage bytes and a trickle that never ends (to prove the overall deadline). Counts queries.
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';

const FIXTURES = new URL('../../fixtures/whois/', import.meta.url);
const text = (name: string): string => readFileSync(new URL(name, FIXTURES), 'utf8');

export interface WhoisServer {
  /** "127.0.0.1:PORT" for `domain_age.whois.servers`. */
  readonly address: string;
  readonly queries: Map<string, number>;
  close(): Promise<void>;
}

/** Domains the server knows; anything else gets the registry's "Domain not found." text. */
export const WHOIS_DOMAINS = {
  'example.io': '2014-06-03T19:02:51Z',
  'fresh.io': '2026-01-14T22:10:00Z',
  'slow.io': '2019-07-01T00:00:00Z',
} as const;

export async function startWhoisServer(opts: { slowMs?: number } = {}): Promise<WhoisServer> {
  const slowMs = opts.slowMs ?? 400;
  const queries = new Map<string, number>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined); // a client that gives up mid-answer is not a test failure
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      const end = buffered.indexOf('\r\n');
      if (end === -1 || buffered.length > 1024) return;
      const domain = buffered.slice(0, end).trim().toLowerCase();
      queries.set(domain, (queries.get(domain) ?? 0) + 1);
      answer(socket, domain);
    });
  });

  const later = (ms: number, fn: () => void): void => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  function answer(socket: Socket, domain: string): void {
    switch (domain) {
      case 'reset.io':
        socket.resetAndDestroy();
        return;
      case 'garbage.io':
        socket.end(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x0a, 0x43, 0x72, 0x65, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x3a, 0x0a, 0xde, 0xad]));
        return;
      case 'weird-date.io':
        socket.end(registryText('weird-date.io', 'last Tuesday, probably'));
        return;
      case 'trickle.io': {
        // One comment line every 50 ms: whoiser's idle timeout never fires; only our deadline can end it.
        const tick = (): void => {
          if (socket.destroyed) return;
          socket.write('% still looking...\r\n');
          later(50, tick);
        };
        tick();
        return;
      }
    }
    const created = (WHOIS_DOMAINS as Record<string, string>)[domain];
    if (created === undefined) {
      socket.end(text('not-found-io.txt'));
      return;
    }
    const reply = registryText(domain, created);
    if (domain === 'slow.io') later(slowMs, () => socket.end(reply));
    else socket.end(reply);
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    queries,
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function registryText(domain: string, created: string): string {
  return text('identity-digital-io.txt')
    .replace('Domain Name: example.io', `Domain Name: ${domain}`)
    .replace('Creation Date: 2014-06-03T19:02:51Z', `Creation Date: ${created}`)
    .replace(/\n/g, '\r\n');
}
