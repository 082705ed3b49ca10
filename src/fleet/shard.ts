// Sharded listening sockets for server.workers > 1. The supervisor opens, for every listen.dns
// address, one UDP and one TCP socket per worker on the same address and port (SO_REUSEPORT), with
// a kernel program that hands a packet or connection to worker shardOf(source address). So every
// query of one client address reaches the same worker, and that worker's scoring window sees all of
// them. The native part (src/fleet/native/reuseport.c) only opens the sockets; workers adopt them by fd.
import { createRequire } from 'node:module';
import { isIPv4 } from 'node:net';
import { splitHostPort } from '../ops/config.js';
import { ConfigError } from '../errors.js';

interface ReusePortAddon {
  openGroup(kind: 'udp' | 'tcp', host: string, port: number, shards: number, backlog: number): { fds: number[]; port: number };
  closeFd(fd: number): void;
}

const ADDON_PATH = '../../../src/fleet/native/build/Release/reuseport.node';
const TCP_BACKLOG = 511;

function loadAddon(): ReusePortAddon {
  try {
    return createRequire(import.meta.url)(ADDON_PATH) as ReusePortAddon;
  } catch (err) {
    throw new ConfigError('server.workers', `more than one worker needs the native reuseport addon, which is not built (run \`npm run build:native\`; it needs python3, make and a C compiler): ${(err as Error).message}`);
  }
}

/** One listen.dns address as the workers see it: the port actually bound and each worker's two fds. */
export interface ShardedListener {
  readonly address: string;
  readonly port: number;
  readonly udpFds: readonly number[];
  readonly tcpFds: readonly number[];
}

/** The fds one worker adopts for one listen address. */
export interface AdoptedSockets {
  readonly udpFd: number;
  readonly tcpFd: number;
}

const BIND_ATTEMPTS = 8;

/** Opens every listen address's socket groups in the supervisor (port 0: the kernel picks one for UDP and TCP alike). */
export function openShardedListeners(addresses: readonly string[], workers: number): ShardedListener[] {
  const addon = loadAddon();
  const out: ShardedListener[] = [];
  try {
    for (const spec of addresses) {
      const { host, port } = splitHostPort(spec)!;
      const open = (kind: 'udp' | 'tcp', at: number): { fds: number[]; port: number } => {
        try {
          return addon.openGroup(kind, host, at, workers, kind === 'tcp' ? TCP_BACKLOG : 0);
        } catch (err) {
          // Worded as the single-process server words it: "bind EADDRINUSE 127.0.0.1:53".
          const e = err as Error & { code?: string };
          throw Object.assign(new Error(`bind ${e.code ?? 'error'} ${spec} (${kind}): ${e.message}`), { code: e.code });
        }
      };
      for (let attempt = 1; ; attempt++) {
        const udp = open('udp', port);
        try {
          const tcp = open('tcp', udp.port);
          out.push({ address: host, port: udp.port, udpFds: udp.fds, tcpFds: tcp.fds });
          break;
        } catch (err) {
          for (const fd of udp.fds) addon.closeFd(fd);
          if (port !== 0 || attempt >= BIND_ATTEMPTS) throw err;
        }
      }
    }
  } catch (err) {
    closeShardedListeners(out);
    throw err;
  }
  return out;
}

export function closeShardedListeners(listeners: readonly ShardedListener[]): void {
  const addon = loadAddon();
  for (const l of listeners) for (const fd of [...l.udpFds, ...l.tcpFds]) addon.closeFd(fd);
}

/** The 32-bit word the kernel program hashes: an IPv4 address, or the XOR of an IPv6 address's four words. */
function addressWord(address: string): number {
  if (isIPv4(address)) return address.split('.').reduce((a, b) => ((a << 8) | Number(b)) >>> 0, 0);
  const groups = expandIPv6(address);
  let word = 0;
  for (let i = 0; i < 8; i += 2) word = (word ^ (((groups[i]! << 16) | groups[i + 1]!) >>> 0)) >>> 0;
  return word;
}

function expandIPv6(address: string): number[] {
  const [head, tail] = address.includes('::') ? address.split('::') as [string, string] : [address, undefined];
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => Number.parseInt(g, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/** The worker the kernel program picks for a source address (the same arithmetic as reuseport.c). */
export function shardOf(address: string, workers: number): number {
  let h = addressWord(address);
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x45d9f3b) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  return h % workers;
}
