// Real Linux network namespaces for the containment proof (test/netns): builds a small private network out of
// `ip netns` + veth pairs, runs commands and daemons inside it, and tears every piece down again.
// Never touches the host's own namespace: no addresses, routes or rules are added outside the namespaces made here,
// and all traffic stays on private test addresses (10.200.0.0/16, fd20:200::/32) between those namespaces.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RunResult {
  readonly code: number | null; // null when killed (timeout)
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly timeoutMs?: number;
  readonly input?: string;
}

/** Runs a program to completion (never through a shell) and returns its exit status and output. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 15_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    if (child.stdin !== null) {
      child.stdin.on('error', () => undefined); // a program that exits without reading its input
      child.stdin.end(opts.input);
    }
  });
}

/** Runs a program and throws (with its output) unless it exits 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const result = await run(cmd, args, opts);
  if (result.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${result.code ?? result.signal}:\n${result.stderr}${result.stdout}`);
  }
  return result;
}

/** Runs a program inside a named network namespace. */
export function nsRun(ns: string, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
}

export function nsRunOk(ns: string, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return runOk('ip', ['netns', 'exec', ns, cmd, ...args], opts);
}

/**
 * Fails with a message that says what is missing when this machine cannot build network namespaces
 * (not root, no `ip`, no netns support, no nft). The proof must fail loudly here, never skip.
 */
export async function assertNetnsCapable(tools: readonly string[]): Promise<void> {
  if (process.platform !== 'linux') throw new Error(`netns proof needs Linux network namespaces; this is ${process.platform}`);
  if (process.getuid?.() !== 0) {
    throw new Error('netns proof needs root (ip netns, veth, nftables); run the suite as root, as CI does');
  }
  for (const tool of tools) {
    const found = await run('sh', ['-c', 'command -v "$1"', 'sh', tool]);
    if (found.code !== 0) throw new Error(`netns proof needs '${tool}' on PATH (see .ci/deploy-checks.sh for the Debian packages)`);
  }
  const probe = `dwprobe${process.pid}`;
  const added = await run('ip', ['netns', 'add', probe]);
  if (added.code !== 0) {
    throw new Error(`this machine cannot create network namespaces (ip netns add failed: ${added.stderr.trim()}); the containment proof cannot run here`);
  }
  try {
    const nft = await nsRun(probe, 'nft', ['list', 'ruleset']);
    if (nft.code !== 0) throw new Error(`nftables is unusable inside a network namespace here: ${nft.stderr.trim()}`);
  } finally {
    await run('ip', ['netns', 'del', probe]);
  }
}

const PREFIX = 'dwt';

/** Deletes namespaces left by earlier runs of this helper whose process is gone (a killed test run). */
export async function removeStaleNamespaces(): Promise<void> {
  const list = await run('ip', ['netns', 'list']);
  for (const line of list.stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const match = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
    if (match === null) continue;
    const pid = Number(match[1]);
    if (pid === process.pid || isAlive(pid)) continue;
    await deleteNamespace(name);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kills what still runs inside the namespace (processes this helper started there), then deletes it. */
async function deleteNamespace(name: string): Promise<void> {
  const pids = await run('ip', ['netns', 'pids', name]);
  for (const pid of pids.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p))) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await run('ip', ['netns', 'del', name]);
}

/** A long-running process started inside a namespace, with its output kept for diagnostics. */
export class Daemon {
  #output = '';
  #exited: Promise<void>;
  #exitCode: number | null | undefined;
  #cleanups: Array<() => void> = [];

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.#output += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.#output += chunk));
    this.#exited = new Promise((resolve) => {
      child.on('close', (code) => {
        this.#exitCode = code;
        resolve();
      });
      child.on('error', (err) => {
        this.#output += `\nspawn error: ${err.message}`;
        this.#exitCode = null;
        resolve();
      });
    });
  }

  get output(): string {
    return this.#output;
  }

  get running(): boolean {
    return this.#exitCode === undefined;
  }

  /** Resolves once `ready()` holds; rejects with the daemon's output if it exits or the time runs out. */
  async waitFor(what: string, ready: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await ready()) return;
      if (!this.running) throw new Error(`${this.name} exited (${this.#exitCode}) before ${what}:\n${this.#output}`);
      if (Date.now() > deadline) throw new Error(`${this.name}: no ${what} within ${timeoutMs} ms:\n${this.#output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Runs `fn` after the process has stopped (temporary files and the like). */
  onStopped(fn: () => void): void {
    this.#cleanups.push(fn);
  }

  async stop(): Promise<void> {
    if (this.running) {
      this.child.kill('SIGTERM');
      const killer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
      await this.#exited;
      clearTimeout(killer);
    }
    for (const fn of this.#cleanups.splice(0)) fn();
  }
}

/** Starts `cmd args` inside namespace `ns` without waiting for it (see Daemon.waitFor). */
export function startDaemon(name: string, ns: string, cmd: string, args: readonly string[]): Daemon {
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Daemon(name, child);
}

export interface NsdZone {
  readonly name: string;
  readonly file: string; // absolute path
}

/** Runs NSD in the foreground inside `ns`, answering on each `addr@port` in `listen`, and waits until it answers. */
export async function startNsd(
  name: string,
  ns: string,
  listen: readonly string[],
  zones: readonly NsdZone[],
  probe: { readonly server: string; readonly name: string },
): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), `dnswarden-${name}-`));
  const conf = join(dir, 'nsd.conf');
  writeFileSync(
    conf,
    [
      'server:',
      ...listen.map((a) => `  ip-address: ${a}`),
      `  do-ip6: ${listen.some((a) => a.includes(':')) ? 'yes' : 'no'}`,
      '  username: ""',
      '  chroot: ""',
      `  zonesdir: "${dir}"`,
      `  pidfile: "${join(dir, 'nsd.pid')}"`,
      '  database: ""',
      `  zonelistfile: "${join(dir, 'zone.list')}"`,
      `  xfrdfile: "${join(dir, 'xfrd.state')}"`,
      `  xfrdir: "${dir}"`,
      `  logfile: "${join(dir, 'nsd.log')}"`,
      '  server-count: 1',
      '  verbosity: 1',
      '  hide-version: yes',
      'remote-control:',
      '  control-enable: no',
      ...zones.flatMap((z) => ['zone:', `  name: ${z.name}`, `  zonefile: "${z.file}"`]),
      '',
    ].join('\n'),
  );
  const daemon = startDaemon(name, ns, 'nsd', ['-d', '-c', conf]);
  daemon.onStopped(() => rmSync(dir, { recursive: true, force: true }));
  await waitOrStop(daemon, daemon.waitFor(
    `an answer from ${probe.server}`,
    async () => {
      const r = await nsRun(ns, 'dig', ['+short', '+tries=1', '+time=1', `@${probe.server}`, probe.name, 'A'], { timeoutMs: 3000 });
      return r.code === 0 && r.stdout.trim() !== '';
    },
    10_000,
  ));
  return daemon;
}

/** Awaits `ready`; if it rejects, stops the daemon first so nothing is left running. */
export async function waitOrStop(daemon: Daemon, ready: Promise<void>): Promise<void> {
  try {
    await ready;
  } catch (err) {
    await daemon.stop();
    throw err;
  }
}

/** Addresses of the proof network (all private, all inside namespaces made by createTopology). */
export const NET = {
  agent: '10.200.1.2', // the registered session's address
  agentUnregistered: '10.200.1.3', // a second address on the agent, with no session
  agentGw: '10.200.1.1', // dnswarden listens here
  wardenUp: '10.200.2.1',
  upstream: '10.200.2.2', // the real DNS server dnswarden forwards to
  rogueGw: '10.200.3.1',
  rogue: '10.200.3.3', // a resolver the agent must not reach
  agent6: 'fd20:200:1::2',
  agentGw6: 'fd20:200:1::1',
  rogueGw6: 'fd20:200:3::1',
  rogue6: 'fd20:200:3::3',
} as const;

export interface Topology {
  readonly id: string;
  /** Namespace names: agent, warden (dnswarden + router), upstream (real resolver), rogue. */
  readonly ns: { readonly agent: string; readonly warden: string; readonly upstream: string; readonly rogue: string };
  /** Deletes every namespace (and so every veth and nft rule inside them), killing what runs there. */
  destroy(): Promise<void>;
}

/**
 * agent (10.200.1.2, .3; fd20:200:1::2) ── warden/router (10.200.1.1 | 10.200.2.1 | 10.200.3.1)
 *                                              ├── upstream (10.200.2.2)
 *                                              └── rogue   (10.200.3.3; fd20:200:3::3)
 * The agent's default routes point at the warden namespace, which forwards to the rogue resolver, so without
 * the confinement rules the agent reaches the rogue directly, as a container reaches the internet.
 */
export async function createTopology(): Promise<Topology> {
  await removeStaleNamespaces();
  const id = `${PREFIX}${process.pid}-${Date.now().toString(36).slice(-4)}`;
  const ns = { agent: `${id}-agent`, warden: `${id}-warden`, upstream: `${id}-up`, rogue: `${id}-rogue` };
  const created: string[] = [];
  const destroy = async (): Promise<void> => {
    for (const name of created.reverse()) await deleteNamespace(name);
    created.length = 0;
  };
  try {
    for (const name of Object.values(ns)) {
      await runOk('ip', ['netns', 'add', name]);
      created.push(name);
      await nsRunOk(name, 'ip', ['link', 'set', 'lo', 'up']);
      // No IPv6 duplicate address detection on these private links: a tentative link-local address would
      // hold neighbour discovery (and so the first IPv6 packets) back by a second or two.
      await nsRunOk(name, 'sh', ['-ec', 'echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad; echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad']);
    }
    // veth pairs are created straight inside their namespaces: nothing appears in the host's namespace.
    await runOk('ip', ['link', 'add', 'a0', 'netns', ns.agent, 'type', 'veth', 'peer', 'name', 'w0', 'netns', ns.warden]);
    await runOk('ip', ['link', 'add', 'u0', 'netns', ns.upstream, 'type', 'veth', 'peer', 'name', 'w1', 'netns', ns.warden]);
    await runOk('ip', ['link', 'add', 'x0', 'netns', ns.rogue, 'type', 'veth', 'peer', 'name', 'w2', 'netns', ns.warden]);

    const sh = (name: string, script: string) => nsRunOk(name, 'sh', ['-ec', script]);
    await sh(
      ns.agent,
      `ip addr add ${NET.agent}/24 dev a0
       ip addr add ${NET.agentUnregistered}/24 dev a0
       ip -6 addr add ${NET.agent6}/64 dev a0 nodad
       ip link set a0 up
       ip route add default via ${NET.agentGw}
       ip -6 route add default via ${NET.agentGw6}`,
    );
    await sh(
      ns.warden,
      `ip addr add ${NET.agentGw}/24 dev w0
       ip -6 addr add ${NET.agentGw6}/64 dev w0 nodad
       ip addr add ${NET.wardenUp}/24 dev w1
       ip addr add ${NET.rogueGw}/24 dev w2
       ip -6 addr add ${NET.rogueGw6}/64 dev w2 nodad
       ip link set w0 up; ip link set w1 up; ip link set w2 up
       echo 1 > /proc/sys/net/ipv4/ip_forward
       echo 1 > /proc/sys/net/ipv6/conf/all/forwarding`,
    );
    await sh(
      ns.upstream,
      `ip addr add ${NET.upstream}/24 dev u0
       ip link set u0 up
       ip route add default via ${NET.wardenUp}`,
    );
    await sh(
      ns.rogue,
      `ip addr add ${NET.rogue}/24 dev x0
       ip -6 addr add ${NET.rogue6}/64 dev x0 nodad
       ip link set x0 up
       ip route add default via ${NET.rogueGw}
       ip -6 route add default via ${NET.rogueGw6}`,
    );
  } catch (err) {
    await destroy();
    throw err;
  }
  return { id, ns, destroy };
}

export interface DigResult extends RunResult {
  /** The answer section's A records (dig +short style), in order. */
  readonly addresses: readonly string[];
  /** `status:` from the reply header, e.g. NOERROR, NXDOMAIN, REFUSED; undefined when no reply came. */
  readonly status: string | undefined;
  /** The `; EDE: ...` line, e.g. "15 (Blocked): (rule threshold ...)"; undefined when absent. */
  readonly ede: string | undefined;
}

/** dig from inside `ns`, as a person would; one try, short timeout, so a dropped query ends quickly. */
export async function dig(ns: string, args: readonly string[], timeSec = 2): Promise<DigResult> {
  const result = await nsRun(ns, 'dig', ['+tries=1', `+time=${timeSec}`, '+nocookie', ...args], { timeoutMs: (timeSec + 3) * 1000 });
  const status = /status: ([A-Z]+)/.exec(result.stdout)?.[1];
  const ede = /^; EDE: (.*)$/m.exec(result.stdout)?.[1];
  const addresses: string[] = [];
  const answer = /;; ANSWER SECTION:\n([\s\S]*?)(?:\n\n|$)/.exec(result.stdout)?.[1] ?? '';
  for (const line of answer.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields[3] === 'A' && fields[4] !== undefined) addresses.push(fields[4]);
  }
  return { ...result, status, ede, addresses };
}

/** A TCP connect from inside `ns`; resolves 'connected', 'refused' or 'timeout'. Uses bash's /dev/tcp. */
export async function tcpConnect(ns: string, host: string, port: number, timeoutSec = 2): Promise<'connected' | 'refused' | 'timeout'> {
  const r = await nsRun(ns, 'timeout', [String(timeoutSec), 'bash', '-c', `exec 3<>/dev/tcp/${host}/${port}`], { timeoutMs: (timeoutSec + 3) * 1000 });
  if (r.code === 0) return 'connected';
  if (r.code === 124) return 'timeout';
  if (/refused/i.test(r.stderr)) return 'refused';
  throw new Error(`tcp connect to ${host}:${port} failed unexpectedly (exit ${r.code}): ${r.stderr}`);
}
