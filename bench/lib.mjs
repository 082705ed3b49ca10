// Shared by the benchmark scripts (run.mjs: the full comparison with Unbound; ab.mjs: two dnswarden builds side
// by side): the processes (NSD, Unbound, dnswarden) on free loopback ports, each tracked by PID and stopped on
// every exit path; dnsperf runs and their parsing; CPU and RSS readings from /proc; the query sets.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { get as httpGet } from 'node:http';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = join(BENCH_DIR, '..');
const CLI = join(ROOT, 'dist/src/cli.js');
const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : Number(process.env[k]));
const P = {
  rounds: env('BENCH_ROUNDS', 5),
  /** Scoring-on and scoring-off dnswardens in the main rounds, pooled for the on/off ratios (process luck: run.mjs). */
  pairs: env('BENCH_PAIRS', 2),
  hitSeconds: env('BENCH_HIT_SECONDS', 5),
  missSeconds: env('BENCH_MISS_SECONDS', 4),
  missNames: env('BENCH_MISS_NAMES', 150_000),
  floodNames: env('BENCH_FLOOD_NAMES', 500_000),
  profile: env('BENCH_PROFILE', 1) === 1,
  latencyQps: env('BENCH_LATENCY_QPS', 5000),
  latencySeconds: 2,
  dnsperfClients: 4,
  dnsperfOutstanding: 200,
  dnsperfTimeoutSec: 2,
  write: env('BENCH_NO_WRITE', 0) !== 1,
  floodChunkSeconds: 60,
  floodSecondVariantBeforeS: env('BENCH_FLOOD_SECOND_BEFORE_S', 480),
  /** 'blocked': only the blocked-traffic rounds (with the cache-hit set beside them), for a quick before/after. */
  only: process.env.BENCH_ONLY ?? '',
};
const ZONE = 'wardenbench'; // a made-up TLD: nothing under it can leave the machine; tldts treats it as a suffix
const ANSWER_IP = '198.51.100.7'; // public-looking (TEST-NET-2), so the rebinding check passes
const TOKEN = 'bench-token-0123456789';
const HOSTS = ['www', 'api', 'cdn', 'static', 'img', 'docs', 'auth', 'mail', 'blog', 'login'];
const T0 = Date.now();
const log = (...a) => process.stderr.write(`[bench +${((Date.now() - T0) / 1000).toFixed(0)}s] ${a.join(' ')}\n`);

// ------------------------------------------------------------------------------------------------
// Processes: every child tracked by PID and stopped on every exit path.
const procs = new Map(); // pid → { name, child, exited: Promise }
function start(name, cmd, args, logFile) {
  // The child writes its output to the file itself: through a pipe, its log would wait in its own memory while
  // this process sits in a spawnSync(dnsperf) and drains nothing (a flood's log lines then cost heap and GC).
  const fd = openSync(logFile, 'w');
  let child;
  try {
    child = spawn(cmd, args, { stdio: ['ignore', fd, fd], cwd: ROOT });
  } finally {
    closeSync(fd);
  }
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const rec = { name, child, exited, alive: true, logFile };
  exited.then(() => { rec.alive = false; procs.delete(child.pid); });
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  procs.set(child.pid, rec);
  return rec;
}
async function stop(rec, graceMs = 5000) {
  if (!rec.alive) return rec.exited;
  try { process.kill(rec.child.pid, 'SIGTERM'); } catch { /* gone */ }
  const done = await Promise.race([rec.exited, sleep(graceMs).then(() => undefined)]);
  if (done === undefined && rec.alive) {
    try { process.kill(rec.child.pid, 'SIGKILL'); } catch { /* gone */ }
    return rec.exited;
  }
  return done;
}
async function stopAll() {
  await Promise.all([...procs.values()].map((r) => stop(r)));
}
process.on('exit', () => {
  for (const pid of procs.keys()) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { log(`${sig}: stopping children`); stopAll().finally(() => process.exit(130)); });
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: opts.timeoutMs ?? 300_000, cwd: ROOT });
  if (r.error) throw r.error;
  return r;
}

async function freePort() {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
    });
    const udpFree = await new Promise((resolve) => {
      const u = createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
  throw new Error('no free port');
}

async function waitFor(what, fn, timeoutMs = 20_000, rec = undefined) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (rec !== undefined && !rec.alive) throw new Error(`${what}: process exited early; see ${rec.logFile}:\n${tail(rec.logFile)}`);
    try { if (await fn()) return; } catch { /* not yet */ }
    if (Date.now() > until) throw new Error(`${what}: not ready after ${timeoutMs} ms${rec ? `; see ${rec.logFile}:\n${tail(rec.logFile)}` : ''}`);
    await sleep(100);
  }
}
const tail = (f) => { try { return readFileSync(f, 'utf8').split('\n').slice(-15).join('\n'); } catch { return ''; } };

function digA(port, name) {
  const r = run('dig', ['@127.0.0.1', '-p', String(port), '+short', '+time=1', '+tries=1', name, 'A'], { timeoutMs: 5000 });
  return r.stdout.trim();
}

/** CPU time (user + system) a process has used, in µs, from /proc/PID/stat. */
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
function cpuUs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK; // utime, stime (fields 14, 15 of stat)
}

/**
 * CPU µs per cache-hit query at a fixed rate every server can sustain: robust on a shared machine,
 * unlike peak QPS, because it does not depend on who else gets the cores.
 */
function cpuPerQuery(pid, port, file, qps, seconds) {
  const before = cpuUs(pid);
  const r = dnsperf(port, file, { seconds, qps });
  return { qps, completed: r.completed, cpu_us_per_query: round1((cpuUs(pid) - before) / Math.max(1, r.completed)) };
}

/** utime, stime (clock ticks) of a process (all threads) and of its main thread, with the wall clock. */
function cpuTicks(pid) {
  const fields = (file) => readFileSync(file, 'utf8').split(') ')[1].split(' ');
  const all = fields(`/proc/${pid}/stat`);
  const main = fields(`/proc/${pid}/task/${pid}/stat`);
  return { atMs: performance.now(), usr: Number(all[11]), sys: Number(all[12]), main: Number(main[11]) + Number(main[12]) };
}

/**
 * Runs dnsperf at saturation and adds where the server's time went: user and system CPU µs per answered
 * query (all threads: GC helpers included) and how busy the main thread was. A single-threaded server
 * whose main thread is near 100 % is limited by its own per-query cost there, not by the machine.
 */
function dnsperfWithCpu(pid, port, file, opts) {
  const before = cpuTicks(pid);
  const r = dnsperf(port, file, opts);
  const after = cpuTicks(pid);
  const us = (ticks) => (ticks * 1e6) / CLK_TCK;
  const n = Math.max(1, r.completed);
  r.server_cpu = {
    usr_us_per_query: round1(us(after.usr - before.usr) / n),
    sys_us_per_query: round1(us(after.sys - before.sys) / n),
    main_thread_busy_pct: round1((100 * us(after.main - before.main)) / ((after.atMs - before.atMs) * 1000)),
    main_thread_us_per_query: round1(us(after.main - before.main) / n),
  };
  return r;
}

/** RSS summed over a process and its children (a supervisor and its workers), with each process's own. */
function rssTreeKb(pid) {
  const pids = [pid];
  for (let i = 0; i < pids.length; i++) {
    for (const task of readdirSync(`/proc/${pids[i]}/task`)) {
      const kids = readFileSync(`/proc/${pids[i]}/task/${task}/children`, 'utf8').trim();
      if (kids !== '') pids.push(...kids.split(' ').map(Number));
    }
  }
  const each = pids.map((p) => ({ pid: p, ...rssKb(p) }));
  return { rss_mb: round1(each.reduce((a, x) => a + x.rss_mb, 0)), hwm_mb: round1(each.reduce((a, x) => a + x.hwm_mb, 0)), processes: each };
}

function rssKb(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rss_mb: round1(get('VmRSS') / 1024), hwm_mb: round1(get('VmHWM') / 1024) };
}
const round1 = (x) => Math.round(x * 10) / 10;
const round3 = (x) => Math.round(x * 1000) / 1000;
const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

// ------------------------------------------------------------------------------------------------
// dnsperf
function dnsperfArgs(port, file, { seconds, maxRuns, qps, verbose = false, source, clients = P.dnsperfClients, outstanding = P.dnsperfOutstanding }) {
  const args = ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', String(seconds), '-t', String(P.dnsperfTimeoutSec),
    '-c', String(clients), '-q', String(outstanding), '-T', '1'];
  if (source !== undefined) args.push('-a', source);
  if (maxRuns !== undefined) args.push('-n', String(maxRuns));
  if (qps !== undefined) args.push('-Q', String(qps));
  if (verbose) args.push('-v');
  return args;
}

function dnsperf(port, file, opts) {
  const r = run('dnsperf', dnsperfArgs(port, file, opts), { timeoutMs: (opts.seconds + P.dnsperfTimeoutSec + 30) * 1000 });
  return parseDnsperf(r, opts.verbose);
}

/**
 * Several dnsperf processes at once, one per source address (each a different agent session, steered to
 * its own worker when server.workers > 1), each sending its own file; their QPS and counts summed. The
 * outstanding-query budget is split between them, so the offered load is the same as one dnsperf's.
 */
async function dnsperfFrom(sources, port, files, opts) {
  const each = { ...opts, outstanding: Math.ceil(P.dnsperfOutstanding / sources.length), clients: Math.max(1, Math.ceil(P.dnsperfClients / sources.length)) };
  const runs = await Promise.all(sources.map((source, i) => new Promise((resolve, reject) => {
    const child = spawn('dnsperf', dnsperfArgs(port, files[i % files.length], { ...each, source }), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => { stdout += c; });
    child.stderr.on('data', (c) => { stderr += c; });
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  })));
  const parts = runs.map((r) => parseDnsperf(r, false));
  const sum = (k) => parts.reduce((a, p) => a + p[k], 0);
  const completed = sum('completed');
  const rcodes = {};
  for (const p of parts) for (const [k, v] of Object.entries(p.rcodes)) rcodes[k] = (rcodes[k] ?? 0) + v;
  return {
    sent: sum('sent'), completed, lost: sum('lost'), qps: round1(sum('qps')), run_s: Math.max(...parts.map((p) => p.run_s)),
    avg_latency_ms: round3(parts.reduce((a, p) => a + p.avg_latency_ms * p.completed, 0) / Math.max(1, completed)),
    max_latency_ms: Math.max(...parts.map((p) => p.max_latency_ms)), rcodes, sources: sources.length,
  };
}

function parseDnsperf(r, verbose = false) {
  const out = r.stdout;
  const num = (re) => { const m = re.exec(out); return m ? Number(m[1]) : NaN; };
  const result = {
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    qps: round1(num(/Queries per second:\s+([\d.]+)/)),
    run_s: num(/Run time \(s\):\s+([\d.]+)/),
    avg_latency_ms: round3(num(/Average Latency \(s\):\s+([\d.]+)/) * 1000),
    max_latency_ms: round3(num(/Average Latency \(s\):.*max ([\d.]+)/) * 1000),
    stddev_latency_ms: round3(num(/Latency StdDev \(s\):\s+([\d.]+)/) * 1000),
    rcodes: Object.fromEntries([...(/Response codes:\s+(.*)/.exec(out)?.[1] ?? '').matchAll(/([A-Z]+) (\d+)/g)].map((m) => [m[1], Number(m[2])])),
  };
  if (!Number.isFinite(result.qps)) throw new Error(`dnsperf gave no statistics (exit ${r.status}):\n${out}\n${r.stderr}`);
  if (verbose) {
    // -v lines: "> NOERROR name A 0.000123" (latency in seconds, last field)
    const lat = [];
    for (const line of out.split('\n')) {
      if (!line.startsWith('> ')) continue;
      const v = Number(line.slice(line.lastIndexOf(' ') + 1));
      if (Number.isFinite(v)) lat.push(v * 1000);
    }
    lat.sort((a, b) => a - b);
    const pct = (p) => (lat.length ? round3(lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]) : NaN);
    result.samples = lat.length;
    result.p50_ms = pct(50);
    result.p99_ms = pct(99);
    result.p999_ms = pct(99.9);
  }
  return result;
}

// ------------------------------------------------------------------------------------------------
// Query sets
function hitNames() {
  const names = [];
  for (let s = 0; s < 100; s++) for (const h of HOSTS) names.push(`${h}.site${String(s).padStart(3, '0')}.${ZONE}`);
  return names; // 1,000 names over 100 registrable domains: a browsing agent's shape, nothing tunnel-like
}
/**
 * A tunnel's shape: `count` random 24-character base32 labels under one registrable domain (a seeded generator, so
 * every run sends the same names). Looped by dnsperf, a session sending them is blocked, then quarantined.
 */
function blockFloodNames(count = 1000, domain = `tun.${ZONE}`) {
  let x = 0x9e3779b9;
  const next = () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x >>> 0; };
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const names = [];
  for (let i = 0; i < count; i++) {
    let label = '';
    for (let j = 0; j < 24; j++) label += alphabet[next() % 32];
    names.push(`${label}.${domain}`);
  }
  return names;
}
/** Unique names never asked before: `tag` makes them unique per round × server; 8 hosts per registrable domain. */
function writeMissFile(path, tag, count) {
  const lines = new Array(count);
  for (let i = 0; i < count; i++) lines[i] = `${HOSTS[i % 8]}.${tag}d${Math.floor(i / 8).toString(36)}.${ZONE} A`;
  writeFileSync(path, `${lines.join('\n')}\n`);
}

// ------------------------------------------------------------------------------------------------
// Servers
/** Checks a daemon's config with its own checker, runs it in the foreground (-d) and waits until it answers. */
async function startDaemon(name, checker, conf, dir, port) {
  const check = run(checker, [conf]);
  if (check.status !== 0) throw new Error(`${checker}: ${check.stdout}${check.stderr}`);
  const rec = start(name, name, ['-d', '-c', conf], join(dir, `${name}.out`));
  await waitFor(name, () => digA(port, `www.site000.${ZONE}`) === ANSWER_IP, 20_000, rec);
  return rec;
}

async function startNsd(dir, port) {
  const zoneFile = join(dir, `${ZONE}.zone`);
  const rr = hitNames().map((n) => `${n}. 3600 IN A ${ANSWER_IP}`);
  writeFileSync(zoneFile, [
    `$ORIGIN ${ZONE}.`, '$TTL 3600',
    `@ IN SOA ns.${ZONE}. hostmaster.${ZONE}. 1 3600 600 86400 300`,
    `@ IN NS ns.${ZONE}.`, `ns IN A 127.0.0.1`,
    ...rr,
    `* 3600 IN A ${ANSWER_IP}`, // every cache-miss name resolves (also two labels deep: no closer encloser exists)
    '',
  ].join('\n'));
  const conf = join(dir, 'nsd.conf');
  writeFileSync(conf, `server:
  ip-address: 127.0.0.1@${port}
  port: ${port}
  server-count: 1
  username: ""
  pidfile: "${dir}/nsd.pid"
  xfrdfile: "${dir}/xfrd.state"
  zonelistfile: "${dir}/zone.list"
  xfrdir: "${dir}"
  database: ""
  logfile: "${dir}/nsd.log"
  verbosity: 0
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
  hide-version: yes
  zonefiles-check: no
remote-control:
  control-enable: no
zone:
  name: "${ZONE}"
  zonefile: "${zoneFile}"
`);
  return startDaemon('nsd', 'nsd-checkconf', conf, dir, port);
}

async function startUnbound(dir, port, nsdPort) {
  const conf = join(dir, 'unbound.conf');
  writeFileSync(conf, `server:
  interface: 127.0.0.1@${port}
  port: ${port}
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "${dir}"
  pidfile: "${dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  msg-cache-size: 64m
  rrset-cache-size: 128m
  so-rcvbuf: 4m
  so-sndbuf: 4m
  local-zone: "${ZONE}." transparent
remote-control:
  control-enable: no
forward-zone:
  name: "${ZONE}."
  forward-addr: 127.0.0.1@${nsdPort}
`);
  return startDaemon('unbound', 'unbound-checkconf', conf, dir, port);
}

/** policy.enabled is the lead's coming key; until the schema has it, the baseline is an allow-list proxy. */
function baselineMode(dir, cli = CLI) {
  const f = join(dir, 'probe.yaml');
  writeFileSync(f, 'policy: { enabled: false }\n');
  const r = run('node', [cli, 'check-config', f], { timeoutMs: 30_000 });
  return r.status === 0 ? 'policy.enabled=false' : 'allow-list proxy';
}

// The fleet runs' client addresses: two agents, each its own session, steered to different workers (run.mjs checks).
const FLEET_SOURCES = ['127.0.0.2', '127.0.0.3'];

function wardenConfig({ dnsPort, adminPort, nsdPort, dataDir, scoring, baseline, cacheEntries, queriesPerSocket, workers, mode, extraYaml }) {
  // Scoring on: every per-query signal and window runs as in production, but the session-wide budgets and the
  // bandwidth cap are lifted — the miss rounds and the RSS flood send tens of thousands of never-seen names a
  // second from one session, which is exactly what those stop (they would turn the run into a blocked-query
  // benchmark); their accounting is still done on every forwarded query.
  let policy = 'policy: { session_types: { interactive: { session_volume_budget_bytes: 1e15, bandwidth_bytes_per_min: 1e15, encoded_volume_budget_bytes: 1e15, total_volume_budget_bytes: 1e15, repeat_volume_budget_bytes: 1e15 } } }\n';
  if (mode !== undefined) policy = `policy: { mode: ${mode}, session_types: { interactive: { session_volume_budget_bytes: 1e15, bandwidth_bytes_per_min: 1e15, encoded_volume_budget_bytes: 1e15, total_volume_budget_bytes: 1e15, repeat_volume_budget_bytes: 1e15 } } }\n`;
  if (!scoring) {
    policy = baseline === 'policy.enabled=false'
      ? 'policy: { enabled: false }\n'
      // Proxy for "scoring off": the bench zone is allow-listed, so judge() returns its prebuilt verdict after
      // one zone lookup and observe() returns at once: no scoring, no session window, no verdict metrics.
      : `policy: { allow: ["${ZONE}"] }\n`;
  }
  return `listen: { dns: ["127.0.0.1:${dnsPort}"], admin: "127.0.0.1:${adminPort}" }
admin: { token: "${TOKEN}" }
storage: { dir: "${dataDir}" }
upstreams: [ { address: "127.0.0.1:${nsdPort}", timeout_ms: 1000 } ]
${cacheEntries === undefined ? '' : `cache: { max_entries: ${cacheEntries} }\n`}${queriesPerSocket === undefined ? '' : `resolver: { queries_per_socket: ${queriesPerSocket} }\n`}${workers === undefined
    ? 'sessions: { static: [ { id: bench, addresses: ["127.0.0.0/8"], type: interactive, user: bench, role: bench } ] }'
    // One session per agent address, as registrations give them: a session is judged by one worker.
    : `sessions: { static: [ ${['127.0.0.1', ...FLEET_SOURCES].map((a, i) => `{ id: bench-${i}, addresses: ["${a}/32"], type: interactive, user: bench, role: bench }`).join(', ')} ] }`}
logging: { level: warn }
${workers === undefined ? '' : `server: { workers: ${workers} }\n`}${policy}${extraYaml === undefined ? '' : `${extraYaml}\n`}`;
}

// dnswarden runs as `npm start` and the container run it: with the V8 heap flags of src/cli.ts's shebang.
const WARDEN_NODE_ARGS = (process.env.BENCH_WARDEN_NODE_ARGS ?? '--max-semi-space-size=4 --heap-growing-percent=15').split(' ').filter(Boolean);
async function startWarden(dir, name, opts, nodeArgs = WARDEN_NODE_ARGS, cli = CLI) {
  const dataDir = join(dir, `${name}-data`);
  mkdirSync(dataDir, { recursive: true });
  const dnsPort = await freePort();
  const adminPort = await freePort();
  const conf = join(dir, `${name}.yaml`);
  writeFileSync(conf, wardenConfig({ ...opts, dnsPort, adminPort, dataDir }));
  const rec = start(name, 'node', [...nodeArgs, cli, 'serve', '--config', conf], join(dir, `${name}.out`));
  // Ready: the admin server answers /healthz (it starts after the DNS listeners) and a query resolves.
  await waitFor(name, async () => (await httpText(adminPort, '/healthz')).status === 200, 30_000, rec);
  await waitFor(name, () => digA(dnsPort, `www.site000.${ZONE}`) === ANSWER_IP, 20_000, rec);
  return { rec, pid: rec.child.pid, port: dnsPort, adminPort, name };
}

/** One GET without keep-alive (a pooled connection the server has since closed makes fetch() fail). */
function httpText(port, path) {
  return new Promise((resolve, reject) => {
    const req = httpGet({ host: '127.0.0.1', port, path, agent: false, headers: { authorization: `Bearer ${TOKEN}` }, timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function metrics(adminPort) {
  const { status, text } = await httpText(adminPort, '/metrics');
  if (status !== 200) throw new Error(`/metrics: HTTP ${status}`);
  const pick = {};
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    if (/resident_memory|heap_size_used|heap_size_total|cache_(entries|hits_total|misses_total)|sessions_|quarantin|malformed|verdicts_total|upstream_failures|transport_faults/.test(line)) {
      const i = line.lastIndexOf(' ');
      pick[line.slice(0, i)] = Number(line.slice(i + 1));
    }
  }
  return pick;
}

function machine() {
  const v = (cmd, args, re) => { try { const r = run(cmd, args, { timeoutMs: 10_000 }); return (re.exec(`${r.stdout}${r.stderr}`)?.[1] ?? '').trim(); } catch { return ''; } };
  return {
    nproc: Number(run('nproc', []).stdout.trim()),
    cpu: cpus()[0]?.model ?? '',
    mem_gb: round1(totalmem() / 2 ** 30),
    kernel: v('uname', ['-r'], /(.+)/),
    node: process.version,
    unbound: v('unbound', ['-V'], /Version (\S+)/),
    nsd: v('nsd', ['-v'], /NSD version (\S+)/),
    dnsperf: v('dnsperf', ['-h'], /Version (\S+)/),
    load_avg_at_start: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  };
}


export {
  T0, BENCH_DIR, ROOT, CLI, P, ZONE, ANSWER_IP, TOKEN, HOSTS, log, start, stop, stopAll, run, freePort, waitFor, tail, digA, CLK_TCK, cpuUs, cpuPerQuery, cpuTicks, dnsperfWithCpu, dnsperfFrom, rssKb, rssTreeKb, FLEET_SOURCES, round1, round3, median, dnsperf, hitNames, blockFloodNames, writeMissFile, startNsd, startUnbound, baselineMode, wardenConfig, WARDEN_NODE_ARGS, startWarden, httpText, metrics, machine, sleep,
};
