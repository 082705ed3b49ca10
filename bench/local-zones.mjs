#!/usr/bin/env node
// Local-zone answers against cache hits, same dnswarden process, same run: QPS of 1,000 names answered from a
// local zone (`zones:`, never scored) and of the bench's 1,000 cache-hit names (scored, from the cache), in
// alternating dnsperf runs (rounds × seconds bounded). `node bench/local-zones.mjs` runs it alone (after
// `npm run build`); bench/run.mjs calls `localZoneRounds` as one more section. Every process it starts is
// tracked by PID (lib.mjs) and stopped.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  CLI, HOSTS, TOKEN, WARDEN_NODE_ARGS, ZONE, digA, dnsperf, dnsperfWithCpu, freePort, hitNames, httpText, log, median, round1, round3,
  start, startNsd, stop, stopAll, waitFor,
} from './lib.mjs';

const LOCAL_ZONE = 'corp.benchlocal';
const LOCAL_IP = '10.77.0.7';

/** 1,000 names in one local zone, 10 hosts under each of 100 subzones (the cache-hit set's shape). */
function localNames() {
  const names = [];
  for (let s = 0; s < 100; s++) for (const h of HOSTS) names.push(`${h}.site${String(s).padStart(3, '0')}.${LOCAL_ZONE}`);
  return names;
}

export async function localZoneRounds(tmp, { nsdPort, hitFile, rounds = 3, seconds = 5 }) {
  const zoneFile = join(tmp, `${LOCAL_ZONE}.zone`);
  writeFileSync(zoneFile, [`$ORIGIN ${LOCAL_ZONE}.`, '$TTL 3600', '@ SOA ns hostmaster 1 3600 600 86400 300', '@ NS ns', 'ns A 127.0.0.1',
    ...localNames().map((n) => `${n}. A ${LOCAL_IP}`)].join('\n') + '\n');
  const localFile = join(tmp, 'local.txt');
  writeFileSync(localFile, `${localNames().map((n) => `${n} A`).join('\n')}\n`);
  const dnsPort = await freePort();
  const adminPort = await freePort();
  const conf = join(tmp, 'warden-zones.yaml');
  writeFileSync(conf, `listen: { dns: ["127.0.0.1:${dnsPort}"], admin: "127.0.0.1:${adminPort}" }
admin: { token: "${TOKEN}" }
storage: { dir: "${join(tmp, 'warden-zones-data')}" }
upstreams: [ { address: "127.0.0.1:${nsdPort}", timeout_ms: 1000 } ]
sessions: { static: [ { id: bench, addresses: ["127.0.0.0/8"], type: interactive, user: bench, role: bench } ] }
zones: [ { name: ${LOCAL_ZONE}, file: ${zoneFile} } ]
logging: { level: warn }
`);
  const rec = start('warden-zones', 'node', [...WARDEN_NODE_ARGS, CLI, 'serve', '--config', conf], join(tmp, 'warden-zones.out'));
  try {
    await waitFor('warden-zones', async () => (await httpText(adminPort, '/healthz')).status === 200, 30_000, rec);
    await waitFor('warden-zones', () => digA(dnsPort, `www.site000.${LOCAL_ZONE}`) === LOCAL_IP, 20_000, rec);
    dnsperf(dnsPort, hitFile, { seconds: 5, maxRuns: 2 }); // warm: every hit name cached
    const out = { zone: LOCAL_ZONE, names: 1000, rounds: [] };
    for (let r = 0; r < rounds; r++) {
      // Alternate which goes first, so a drift in machine load does not favour one.
      const order = r % 2 === 0 ? ['local', 'cache_hit'] : ['cache_hit', 'local'];
      const round = {};
      for (const k of order) round[k] = dnsperfWithCpu(rec.child.pid, dnsPort, k === 'local' ? localFile : hitFile, { seconds });
      round.ratio_local_to_hit = round3(round.local.qps / round.cache_hit.qps);
      out.rounds.push(round);
      log(`local zone round ${r + 1}/${rounds}: local ${round.local.qps} q/s, cache hit ${round.cache_hit.qps} q/s, ratio ${round.ratio_local_to_hit}`);
    }
    out.median = {
      local_qps: round1(median(out.rounds.map((x) => x.local.qps))),
      cache_hit_qps: round1(median(out.rounds.map((x) => x.cache_hit.qps))),
      ratio_local_to_hit: round3(median(out.rounds.map((x) => x.ratio_local_to_hit))),
      local_us_per_query: round1(median(out.rounds.map((x) => x.local.server_cpu.main_thread_us_per_query))),
      cache_hit_us_per_query: round1(median(out.rounds.map((x) => x.cache_hit.server_cpu.main_thread_us_per_query))),
      local_noerror: out.rounds.every((x) => x.local.lost === 0 && Object.keys(x.local.rcodes ?? { NOERROR: 1 }).every((c) => c === 'NOERROR')),
    };
    return out;
  } finally {
    await stop(rec);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const tmp = mkdtempSync(join(tmpdir(), 'dnswarden-bench-zones-'));
  try {
    const nsdPort = await freePort();
    const nsd = await startNsd(tmp, nsdPort);
    const hitFile = join(tmp, 'hit.txt');
    writeFileSync(hitFile, `${hitNames().map((n) => `${n} A`).join('\n')}\n`);
    const result = await localZoneRounds(tmp, { nsdPort, hitFile, rounds: Number(process.env.BENCH_ROUNDS ?? 3), seconds: Number(process.env.BENCH_HIT_SECONDS ?? 5) });
    await stop(nsd);
    process.stdout.write(`${JSON.stringify({ upstream_zone: ZONE, ...result.median }, null, 2)}\n`);
  } finally {
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}
