// `node bench/tcp-flood.mjs` (after `npm run build`): the TCP flood of the security issue against a real
// `dnswarden serve` — 16 connections from a source with no session, each pipelining 200,000 queries and
// never reading an answer — and the server's RSS before, at the end of the flood, and after the clients
// leave. Bounded in time (BENCH_FLOOD_SECONDS, default 60, for the flood to settle). Prints one JSON object.
// Figures (2-core VM, loaded): before back-pressure RSS 80 → 405 MB; with it 79 → 92 MB.
// Env: FLOOD_CONNECTIONS (16), FLOOD_QUERIES (200000) per connection.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, TOKEN, WARDEN_NODE_ARGS, freePort, httpText, log, rssKb, sleep, start, stop, waitFor } from './lib.mjs';

const CONNECTIONS = Number(process.env.FLOOD_CONNECTIONS ?? 16);
const QUERIES = Number(process.env.FLOOD_QUERIES ?? 200_000);
const SETTLE_LIMIT_MS = Number(process.env.BENCH_FLOOD_SECONDS ?? 60) * 1000;

/** A framed A query for flood-<i>.example.com (the ID varies; nothing here waits for an answer). */
function framedQuery(id) {
  const labels = ['flood', 'example', 'com'];
  const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])]);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id & 0xffff, 0);
  header.writeUInt16BE(0x0100, 2); // RD
  header.writeUInt16BE(1, 4); // QDCOUNT
  const msg = Buffer.concat([header, qname, Buffer.from([0, 1, 0, 1])]);
  return Buffer.concat([Buffer.from([msg.length >> 8, msg.length & 0xff]), msg]);
}

async function refusedCount(adminPort) {
  const { text } = await httpText(adminPort, '/metrics');
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('dnswarden_queries_total{') && line.includes('transport="tcp"')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  const value = (name) => {
    const v = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1];
    return v === undefined ? null : Number(v);
  };
  return { answered: sum, writePaused: value('dnswarden_tcp_write_paused_total'), frameTimeouts: value('dnswarden_tcp_frame_timeouts_total'), open: value('dnswarden_tcp_connections') };
}

const dir = mkdtempSync(join(tmpdir(), 'dnswarden-tcp-flood-'));
const clients = [];
let server;
try {
  const dnsPort = await freePort();
  const adminPort = await freePort();
  const conf = join(dir, 'warden.yaml');
  // No session at all: every query is answered REFUSED + EDE 18 (no upstream is ever asked).
  writeFileSync(conf, `listen: { dns: ["127.0.0.1:${dnsPort}"], admin: "127.0.0.1:${adminPort}" }
admin: { token: "${TOKEN}" }
storage: { dir: "${join(dir, 'data')}" }
upstreams: [ { address: "127.0.0.1:9" } ]
sessions: { static: [] }
server: { tcp_idle_timeout_ms: 120000, tcp_max_connections_per_source: 64 }
logging: { level: warn }
`);
  server = start('warden', 'node', [...WARDEN_NODE_ARGS, CLI, 'serve', '--config', conf], join(dir, 'warden.out'));
  await waitFor('warden', async () => (await httpText(adminPort, '/healthz')).status === 200, 30_000, server);
  await sleep(1000);
  const before = rssKb(server.child.pid);
  log(`RSS before: ${before.rss_mb} MB; flooding ${CONNECTIONS} × ${QUERIES} queries, never reading`);

  const payload = Buffer.concat(Array.from({ length: QUERIES }, (_, i) => framedQuery(i)));
  for (let c = 0; c < CONNECTIONS; c++) {
    const sock = connect({ host: '127.0.0.1', port: dnsPort });
    sock.on('error', () => undefined);
    await new Promise((ok, fail) => { sock.once('connect', ok); sock.once('error', fail); });
    sock.pause(); // never read an answer
    sock.write(payload);
    clients.push(sock);
  }

  // The flood has settled when every query is answered, or every connection has been paused for its unsent
  // replies and the answer count has stopped moving for 3 s; else at the time bound.
  const t0 = Date.now();
  let last = -1;
  let quietSince = Date.now();
  let peak = before;
  let counts = { answered: 0, writePaused: null };
  while (Date.now() - t0 < SETTLE_LIMIT_MS) {
    await sleep(500);
    counts = await refusedCount(adminPort);
    const now = rssKb(server.child.pid);
    if (now.rss_mb > peak.rss_mb) peak = now;
    if (counts.answered >= CONNECTIONS * QUERIES) break;
    if (counts.answered !== last) { last = counts.answered; quietSince = Date.now(); }
    // A CPU-starved server can stall for seconds: quiet only counts once every connection has been paused.
    else if (Date.now() - quietSince >= 3000 && (counts.writePaused ?? 0) >= CONNECTIONS) break;
  }
  const during = rssKb(server.child.pid);
  const settledS = (Date.now() - t0) / 1000;
  for (const s of clients) s.destroy();
  await sleep(3000);
  const after = rssKb(server.child.pid);
  console.log(JSON.stringify({
    connections: CONNECTIONS,
    queries_per_connection: QUERIES,
    queries_answered: counts.answered,
    tcp_write_paused_total: counts.writePaused,
    tcp_frame_timeouts_total: counts.frameTimeouts,
    tcp_connections_open_at_end: counts.open,
    settled_after_s: Math.round(settledS * 10) / 10,
    rss_before_mb: before.rss_mb,
    rss_flood_mb: during.rss_mb,
    rss_peak_sampled_mb: peak.rss_mb,
    rss_hwm_mb: after.hwm_mb,
    rss_after_clients_left_mb: after.rss_mb,
  }, null, 2));
} finally {
  for (const s of clients) s.destroy();
  if (server !== undefined) await stop(server);
  rmSync(dir, { recursive: true, force: true });
}
