// A real DNS server process as dnswarden's upstream in tests: NSD (Debian package) on 127.0.0.1,
// a free port, serving fixtures/zones/. Owns its temp dir, its process and its control socket;
// never mocks DNS, never touches a system-wide daemon, and stops only the process it started.
//
// Why NSD rather than Unbound: the upstream here stands for "the authority", and NSD is an
// authoritative-only server. What it answers is exactly the zone file (TTLs as written, RFC 2308
// SOA in negative answers, TC=1 at 512 bytes without EDNS and at the requester's EDNS size with it),
// with no cache or recursion in between that could blur what the test sees. Query counting is
// real: `nsd-control stats_noreset` over a unix control socket in the instance's own temp dir
// (no TLS keys needed for a socket), read straight from the running server.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const ZONES_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../fixtures/zones');

/** Zone files served by every upstream instance (origin → file in fixtures/zones). */
export const ZONES: Readonly<Record<string, string>> = {
  'dnswarden.test': 'dnswarden.test.zone',
  'corp.internal': 'corp.internal.zone',
  'example.com': 'example.com.zone',
};

/** Strings of a TXT fixture RRset, exactly as generated into dnswarden.test.zone. */
function txtStrings(prefix: string, count: number, size: number): string[] {
  const out: string[] = [];
  for (let i = 1; i <= count; i++) {
    const head = `${prefix}-${String(i).padStart(2, '0')}-`;
    out.push(head + String.fromCharCode(96 + i).repeat(size - head.length));
  }
  return out;
}

/** What fixtures/zones/dnswarden.test.zone serves; tests assert these values. Keep in step with the file. */
export const FIXTURE = {
  zone: 'dnswarden.test',
  defaultTtl: 300,
  soa: { ttl: 3600, minimum: 300, mname: 'ns1.dnswarden.test', rname: 'hostmaster.dnswarden.test', serial: 2024010101 },
  /** RFC 2308: the SOA in a negative answer carries min(SOA TTL, MINIMUM). */
  negativeTtl: 300,
  a: { name: 'www.dnswarden.test', address: '192.0.2.10' },
  aaaa: { name: 'www.dnswarden.test', address: '2001:db8::10' },
  multiA: { name: 'dual.dnswarden.test', addresses: ['192.0.2.20', '192.0.2.21'] },
  txt: { name: 'txt.dnswarden.test', text: 'hello from the fixture zone' },
  mx: { name: 'dnswarden.test', exchanges: [{ preference: 10, exchange: 'mx1.dnswarden.test' }, { preference: 20, exchange: 'mx2.dnswarden.test' }] },
  /** chain → chain2 → chain3 → target (A 192.0.2.30): three CNAMEs, then the A. */
  cnameChain: {
    name: 'chain.dnswarden.test',
    links: [
      ['chain.dnswarden.test', 'chain2.dnswarden.test'],
      ['chain2.dnswarden.test', 'chain3.dnswarden.test'],
      ['chain3.dnswarden.test', 'target.dnswarden.test'],
    ] as const,
    target: 'target.dnswarden.test',
    address: '192.0.2.30',
  },
  shortTtl: { name: 'short.dnswarden.test', address: '192.0.2.40', ttl: 5 },
  /** 4 × 200-byte strings: the reply (~870 B) is > 512 and < 1232. */
  bigTxt: { name: 'big.dnswarden.test', strings: txtStrings('big', 4, 200) },
  /** 8 × 250-byte strings: the reply (~2.1 kB) is > 1232, so TC=1 even with EDNS 1232. */
  hugeTxt: { name: 'huge.dnswarden.test', strings: txtStrings('huge', 8, 250) },
  nxdomain: { name: 'does-not-exist.dnswarden.test' },
  nodata: { name: 'nodata.dnswarden.test', existingType: 'A', address: '192.0.2.50' },
  privateTld: { name: 'git.corp.internal', address: '10.20.0.5', cname: 'api.corp.internal', negativeTtl: 60 },
  rebinding: { metadata: 'metadata.example.com', address: '169.254.169.254' },
} as const;

export interface UpstreamOptions {
  /** Extra zone files (origin → absolute path) served besides ZONES. */
  readonly extraZones?: Readonly<Record<string, string>>;
  /** Fixed port (e.g. to restart on the same port); default a free one. */
  readonly port?: number;
  /** Milliseconds to wait for the server to answer after spawn. Default 10 000. */
  readonly startTimeoutMs?: number;
}

export interface Upstream {
  readonly address: '127.0.0.1';
  readonly port: number;
  /** "127.0.0.1:PORT", the form dnswarden's `upstreams[].address` takes. */
  readonly hostPort: string;
  readonly pid: number | undefined;
  /** Queries the server has received since start (UDP + TCP), from its own statistics. */
  queryCount(): Promise<number>;
  /** Stops the process (by PID) and removes its temp dir; the port then refuses. Idempotent. */
  stop(): Promise<void>;
  /** Kills the process (by PID) but keeps the instance: the port refuses until restart(). */
  pause(): Promise<void>;
  /** Starts it again on the same port and temp dir (stopping it first if running); not after stop(). */
  restart(): Promise<void>;
  /** The instance's log (NSD's logfile), for failure messages. */
  log(): string;
}

/** A port that is free for both UDP and TCP on 127.0.0.1 right now. */
export async function freePort(address = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((ok, fail) => {
      const srv = createServer();
      srv.once('error', fail);
      srv.listen(0, address, () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => ok(p));
      });
    });
    const udpFree = await new Promise<boolean>((ok) => {
      const sock = createSocket(address.includes(':') ? 'udp6' : 'udp4');
      sock.once('error', () => ok(false));
      sock.bind(port, address, () => sock.close(() => ok(true)));
    });
    if (udpFree) return port;
  }
  throw new Error('no free port found on loopback after 20 attempts');
}

/**
 * A loopback port where nothing listens (UDP gets ICMP port-unreachable, TCP a RST):
 * "an upstream that is down".
 */
export async function closedPort(): Promise<number> {
  return freePort();
}

export interface ReceivedQuery {
  readonly transport: 'udp' | 'tcp';
  readonly id: number;
  readonly sourcePort: number;
  readonly bytes: Buffer;
}

export interface ScriptedUpstream {
  readonly address: '127.0.0.1';
  readonly port: number;
  readonly hostPort: string;
  /** Every query received, in order. */
  readonly received: readonly ReceivedQuery[];
  stop(): Promise<void>;
}

/**
 * A UDP+TCP socket pair on a free loopback port that records every query and answers only what
 * `respond` returns or resolves to (default: nothing, i.e. "an upstream that times out"). Not a stand-in for the
 * real upstream: it is the misbehaving one (silent, lying) next to NSD in failover tests, and it
 * shows what dnswarden puts on the wire (query IDs, source ports).
 */
export async function startScriptedUpstream(
  respond: (query: Buffer, transport: 'udp' | 'tcp') => Buffer | undefined | Promise<Buffer | undefined> = () => undefined,
): Promise<ScriptedUpstream> {
  const port = await freePort();
  const received: ReceivedQuery[] = [];
  const udp = createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    if (msg.length < 2) return;
    received.push({ transport: 'udp', id: msg.readUInt16BE(0), sourcePort: rinfo.port, bytes: msg });
    void Promise.resolve(respond(msg, 'udp')).then((reply) => {
      if (reply !== undefined) udp.send(reply, rinfo.port, rinfo.address);
    });
  });
  udp.on('error', () => undefined);
  await new Promise<void>((ok, fail) => {
    udp.once('error', fail);
    udp.bind(port, '127.0.0.1', () => ok());
  });
  const sockets = new Set<import('node:net').Socket>();
  const tcp = createServer((s) => {
    sockets.add(s);
    let buf = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        if (msg.length < 2) continue;
        received.push({ transport: 'tcp', id: msg.readUInt16BE(0), sourcePort: s.remotePort ?? 0, bytes: Buffer.from(msg) });
        void Promise.resolve(respond(Buffer.from(msg), 'tcp')).then((reply) => {
          if (reply !== undefined && !s.destroyed) s.write(Buffer.concat([Buffer.from([reply.length >> 8, reply.length & 0xff]), reply]));
        });
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((ok, fail) => {
    tcp.once('error', fail);
    tcp.listen(port, '127.0.0.1', () => ok());
  });
  return {
    address: '127.0.0.1',
    port,
    hostPort: `127.0.0.1:${port}`,
    received,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([new Promise<void>((ok) => udp.close(() => ok())), new Promise<void>((ok) => tcp.close(() => ok()))]);
    },
  };
}

function nsdConf(dir: string, port: number, zones: Readonly<Record<string, string>>): string {
  const lines = [
    'server:',
    `  ip-address: 127.0.0.1@${port}`,
    `  port: ${port}`,
    // One server process: the stats are one number, and two cores are shared with the test run.
    '  server-count: 1',
    '  username: ""',
    `  pidfile: "${join(dir, 'nsd.pid')}"`,
    `  xfrdfile: "${join(dir, 'xfrd.state')}"`,
    `  zonelistfile: "${join(dir, 'zone.list')}"`,
    `  xfrdir: "${dir}"`,
    '  database: ""',
    `  logfile: "${join(dir, 'nsd.log')}"`,
    '  verbosity: 1',
    // Response rate limiting would turn a load test into TC/dropped answers: off.
    '  rrl-ratelimit: 0',
    '  rrl-whitelist-ratelimit: 0',
    '  reuseport: no',
    '  hide-version: yes',
    '  zonefiles-check: no',
    'remote-control:',
    '  control-enable: yes',
    `  control-interface: "${join(dir, 'nsd.ctl')}"`,
  ];
  for (const [origin, file] of Object.entries(zones)) {
    lines.push('zone:', `  name: "${origin}"`, `  zonefile: "${file}"`);
  }
  return `${lines.join('\n')}\n`;
}

/** A tiny SOA query for readiness checks (no dependence on the dns-client helper). */
function soaProbe(id: number, zone: string): Buffer {
  const labels = zone.split('.').filter((l) => l !== '');
  const parts: Buffer[] = [Buffer.from([id >> 8, id & 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l, 'ascii'));
  parts.push(Buffer.from([0, 0, 6, 0, 1]));
  return Buffer.concat(parts);
}

async function answersSoa(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((ok) => {
    const sock = createSocket('udp4');
    const id = Math.floor(Math.random() * 0xffff);
    const timer = setTimeout(() => {
      sock.close();
      ok(false);
    }, timeoutMs);
    sock.on('error', () => {
      clearTimeout(timer);
      sock.close();
      ok(false);
    });
    sock.on('message', (msg) => {
      if (msg.length >= 12 && msg.readUInt16BE(0) === id) {
        clearTimeout(timer);
        sock.close();
        ok((msg[3]! & 0x0f) === 0 && msg.readUInt16BE(6) > 0);
      }
    });
    sock.send(soaProbe(id, FIXTURE.zone), port, '127.0.0.1');
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((ok) => child.once('exit', () => ok()));
}

/** Starts NSD on 127.0.0.1 serving the fixture zones; resolves once it answers a SOA query. */
export async function startUpstream(opts: UpstreamOptions = {}): Promise<Upstream> {
  const dir = mkdtempSync(join(tmpdir(), 'dnswarden-upstream-'));
  const zones: Record<string, string> = {};
  for (const [origin, file] of Object.entries(ZONES)) zones[origin] = join(ZONES_DIR, file);
  for (const [origin, file] of Object.entries(opts.extraZones ?? {})) zones[origin] = file;
  const confPath = join(dir, 'nsd.conf');
  const logPath = join(dir, 'nsd.log');
  const startTimeoutMs = opts.startTimeoutMs ?? 10_000;
  let port = opts.port ?? (await freePort());
  let child: ChildProcess | undefined;
  let stderr = '';

  const launch = async (): Promise<void> => {
    writeFileSync(confPath, nsdConf(dir, port, zones));
    stderr = '';
    // -d: stay in the foreground as our child, so its PID is ours to signal and reap.
    // detached: its own process group, so the xfrd/server children it forks can be reaped as a group.
    const proc = spawn('nsd', ['-d', '-c', confPath], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    proc.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    proc.on('error', (err) => {
      stderr += `spawn failed: ${err.message}\n`;
    });
    child = proc;
    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) break;
      if (await answersSoa(port, 200)) return;
    }
    const why = `${stderr}${existsSync(logPath) ? readFileSync(logPath, 'utf8') : ''}`;
    await kill();
    throw new Error(`NSD did not start on 127.0.0.1:${port} within ${startTimeoutMs} ms:\n${why}`);
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.pid === undefined) return;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const timedOut = await Promise.race([exited(proc).then(() => false), new Promise<boolean>((ok) => setTimeout(() => ok(true), 3000).unref())]);
      if (timedOut) {
        try {
          process.kill(-proc.pid, 'SIGKILL'); // the group we created with detached: true
        } catch {
          /* already gone */
        }
        await exited(proc);
      }
    }
    // NSD's forked server/xfrd processes exit with the parent; make sure none still holds the port.
    try {
      process.kill(-proc.pid, 0);
      process.kill(-proc.pid, 'SIGKILL');
    } catch {
      /* group is empty */
    }
  };

  // Port races (another process took it between freePort() and NSD's bind): retry on a new port.
  for (let attempt = 0; ; attempt++) {
    try {
      await launch();
      break;
    } catch (err) {
      if (opts.port !== undefined || attempt >= 2) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
      port = await freePort();
    }
  }

  let removed = false;
  const upstream: Upstream = {
    address: '127.0.0.1',
    get port() {
      return port;
    },
    get hostPort() {
      return `127.0.0.1:${port}`;
    },
    get pid() {
      return child?.pid;
    },
    async queryCount() {
      if (child === undefined) throw new Error('upstream is stopped: no query count');
      const { stdout } = await execFileAsync('nsd-control', ['-c', confPath, 'stats_noreset'], { timeout: 5000 });
      const match = /^num\.queries=(\d+)$/m.exec(stdout);
      if (match === null) throw new Error(`nsd-control stats_noreset had no num.queries:\n${stdout}`);
      return Number(match[1]);
    },
    async stop() {
      await kill();
      if (!removed) {
        removed = true;
        rmSync(dir, { recursive: true, force: true });
      }
    },
    async pause() {
      await kill();
    },
    async restart() {
      await kill();
      if (removed) throw new Error('upstream was stopped for good; start a new one');
      await launch();
    },
    log() {
      return existsSync(logPath) ? readFileSync(logPath, 'utf8') : '';
    },
  };
  return upstream;
}
