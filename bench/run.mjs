#!/usr/bin/env node
// `npm run bench`: dnswarden against single-threaded Unbound 1.17, both forwarding to the same local NSD,
// measured with dnsperf over loopback. See bench/README.md for the method. Writes
// bench/results/<ISO-date>.json, bench/results/latest.md and the "latest numbers" block of bench/README.md.
//
// Every process started here is tracked by PID and stopped (SIGTERM, then SIGKILL) on success, failure or
// signal. Every load is bounded in count (-n) and time (-l). Knobs (environment):
//   BENCH_ROUNDS (5)  BENCH_HIT_SECONDS (5)  BENCH_MISS_SECONDS (4)  BENCH_MISS_NAMES (150000)
//   BENCH_FLOOD_NAMES (500000)  BENCH_FLOOD_SECOND_BEFORE_S (480: skip the 600k-cache flood after this)  BENCH_PROFILE (1: CPU-profile dnswarden hit/miss runs; 0: skip)
//   BENCH_LATENCY_QPS (5000: fixed-rate probe for p50/p99)  BENCH_NO_WRITE (1: print only, write nothing)
//   BENCH_ONLY (blocked: only the blocked-traffic rounds, printed, nothing written — a quick before/after;
//     the RSS flood and the query log's cost run alone as `node bench/rss.mjs` and `node bench/query-log.mjs`)
//   BENCH_FLEET_QUARANTINES (50) BENCH_FLEET_BACKGROUND_QPS (2000): the fleet-over-Redis section (bench/fleet.mjs)
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { summarizeProfile } from './cpuprofile.mjs';
import { shardOf } from '../dist/src/fleet/shard.js';
import { localZoneRounds } from './local-zones.mjs';
import { sessionsMarkdown } from './sessions.mjs';
import { fleetMarkdown, fleetRedisBench } from './fleet.mjs';
import { queryLogMarkdown, queryLogRounds } from './query-log.mjs';
import { floodRss } from './rss.mjs';
import {
  T0, BENCH_DIR, P, ZONE, HOSTS, log, start, stop, stopAll, run, freePort, cpuPerQuery, dnsperfWithCpu, dnsperfFrom, rssKb, rssTreeKb, FLEET_SOURCES,
  round1, round3, median, dnsperf, hitNames, blockFloodNames, writeMissFile, startNsd, startUnbound, baselineMode, startWarden, metrics, machine, sleep,
} from './lib.mjs';

// ------------------------------------------------------------------------------------------------
async function main() {
  const tmp = mkdtempSync(join(tmpdir(), 'dnswarden-bench-'));
  log(`work dir ${tmp}; params ${JSON.stringify(P)}`);
  const result = { date: new Date().toISOString(), command: 'npm run bench', params: { ...P, zone: ZONE }, machine: machine() };
  try {
    const baseline = baselineMode(tmp);
    result.scoring_off_baseline = baseline;
    log(`scoring-off baseline: ${baseline}`);

    const nsdPort = await freePort();
    const nsd = await startNsd(tmp, nsdPort);
    const ubPort = await freePort();
    const unbound = await startUnbound(tmp, ubPort, nsdPort);
    const on = await startWarden(tmp, 'warden-on', { nsdPort, scoring: true, baseline });
    const off = await startWarden(tmp, 'warden-off', { nsdPort, scoring: false, baseline });
    log(`nsd :${nsdPort} (pid ${nsd.child.pid}), unbound :${ubPort} (pid ${unbound.child.pid}), warden-on :${on.port} (pid ${on.pid}), warden-off :${off.port} (pid ${off.pid})`);
    const servers = [
      { key: 'unbound', port: ubPort, pid: unbound.child.pid },
      { key: 'warden_on', port: on.port, pid: on.pid, adminPort: on.adminPort },
      { key: 'warden_off', port: off.port, pid: off.pid, adminPort: off.adminPort },
    ];

    // Process luck: two dnswardens of the same build and config differ by up to ±5 % in cache-hit QPS here, and
    // now and then by more (bench/onoff-processes.mjs), which one pair's same-round ratios keep. The scoring on/off
    // ratios therefore pool P.pairs processes of each (mean QPS per round, median over rounds); the extra pairs get
    // the same hit and miss runs as warden_on / warden_off.
    const pairs = [];
    for (let i = 2; i <= P.pairs; i++) {
      for (const scoring of [true, false]) {
        const w = await startWarden(tmp, `warden-${scoring ? 'on' : 'off'}-${i}`, { nsdPort, scoring, baseline });
        pairs.push({ key: `warden_${scoring ? 'on' : 'off'}_${i}`, port: w.port, pid: w.pid, adminPort: w.adminPort });
      }
    }
    const rotation = [...servers, ...pairs];
    const onKeys = rotation.filter((s) => s.key.startsWith('warden_on')).map((s) => s.key);
    const offKeys = rotation.filter((s) => s.key.startsWith('warden_off')).map((s) => s.key);

    const ceilingPort = await freePort();
    const ceiling = start('node-ceiling', 'node', [join(BENCH_DIR, 'node-ceiling.mjs'), String(ceilingPort)], join(tmp, 'node-ceiling.out'));
    await sleep(500);

    const hitFile = join(tmp, 'hit.txt');
    writeFileSync(hitFile, `${hitNames().map((n) => `${n} A`).join('\n')}\n`);
    for (const s of rotation) {
      const w = dnsperf(s.port, hitFile, { seconds: 10, maxRuns: 2 }); // warm: every hit name cached
      log(`warm ${s.key}: ${w.completed}/${w.sent} ${JSON.stringify(w.rcodes)}`);
    }

    const floodFile = join(tmp, 'block-flood.txt');
    writeFileSync(floodFile, `${blockFloodNames().map((n) => `${n} A`).join('\n')}\n`);
    if (P.only === 'blocked') {
      result.blocked = await blockedRounds(tmp, { nsdPort, baseline, hitFile, floodFile, unbound: { port: ubPort, pid: unbound.child.pid }, on });
      process.stdout.write(`${JSON.stringify(result.blocked, null, 2)}\n${blockedMarkdown(result.blocked).join('\n')}\n`);
      return;
    }

    result.rounds = [];
    for (let r = 0; r < P.rounds; r++) {
      const order = rotation.map((_, i) => rotation[(i + r) % rotation.length]);
      const round = { order: order.map((s) => s.key), hit: {}, miss: {}, latency_probe: {} };
      for (const s of order) round.hit[s.key] = dnsperfWithCpu(s.pid, s.port, hitFile, { seconds: P.hitSeconds });
      // The Node ceiling (bench/node-ceiling.mjs) answers the hit set only: it forwards nothing.
      round.hit.node_ceiling = dnsperf(ceilingPort, hitFile, { seconds: P.hitSeconds });
      for (const s of order) {
        const f = join(tmp, `miss-${r}-${s.key}.txt`);
        writeMissFile(f, `r${r}${s.key.replace('warden_', '').replace('_', '').slice(0, 3)}`, P.missNames);
        round.miss[s.key] = dnsperfWithCpu(s.pid, s.port, f, { seconds: P.missSeconds, maxRuns: 1 });
        round.miss[s.key].file_exhausted = round.miss[s.key].sent >= P.missNames;
        rmSync(f);
      }
      if (P.latencyQps > 0) {
        for (const s of order.filter((x) => servers.includes(x))) round.latency_probe[s.key] = dnsperf(s.port, hitFile, { seconds: P.latencySeconds, qps: P.latencyQps, verbose: true });
      }
      round.ratios = qpsRatios(round, {
        hit_on_vs_unbound: ['hit', 'warden_on', 'unbound'],
        hit_off_vs_unbound: ['hit', 'warden_off', 'unbound'],
        miss_on_vs_unbound: ['miss', 'warden_on', 'unbound'],
        miss_off_vs_unbound: ['miss', 'warden_off', 'unbound'],
        hit_on_vs_off: ['hit', onKeys, offKeys],
        hit_on_vs_off_first_pair: ['hit', 'warden_on', 'warden_off'],
        hit_ceiling_vs_unbound: ['hit', 'node_ceiling', 'unbound'],
        hit_on_vs_ceiling: ['hit', 'warden_on', 'node_ceiling'],
        miss_on_vs_off: ['miss', onKeys, offKeys],
        miss_on_vs_off_first_pair: ['miss', 'warden_on', 'warden_off'],
      });
      result.rounds.push(round);
      logRound('round', r, rotation, round);
    }

    // Medians over rounds
    const med = (f) => round1(median(result.rounds.map(f)));
    result.median = {};
    for (const s of servers) {
      result.median[s.key] = {
        hit_qps: med((r) => r.hit[s.key].qps),
        miss_qps: med((r) => r.miss[s.key].qps),
        hit_avg_latency_ms: round3(median(result.rounds.map((r) => r.hit[s.key].avg_latency_ms))),
        miss_avg_latency_ms: round3(median(result.rounds.map((r) => r.miss[s.key].avg_latency_ms))),
        probe_p50_ms: round3(median(result.rounds.map((r) => r.latency_probe[s.key]?.p50_ms))),
        probe_p99_ms: round3(median(result.rounds.map((r) => r.latency_probe[s.key]?.p99_ms))),
        rss_after: rssKb(s.pid),
        saturation_cpu: Object.fromEntries(['hit', 'miss'].map((kind) => [kind, Object.fromEntries(
          ['usr_us_per_query', 'sys_us_per_query', 'main_thread_busy_pct', 'main_thread_us_per_query'].map((k) => [k, round1(median(result.rounds.map((r) => r[kind][s.key].server_cpu?.[k])))]),
        )])),
      };
      if (s.adminPort) result.median[s.key].metrics_after = await metrics(s.adminPort);
    }
    // CPU per query at a fixed 20k q/s on the hit set, each server in turn (3 rounds, medians).
    const cpuServers = [...servers, { key: 'node_ceiling', port: ceilingPort, pid: ceiling.child.pid }];
    const cpuRounds = [];
    for (let r = 0; r < 3; r++) cpuRounds.push(Object.fromEntries(cpuServers.map((s) => [s.key, cpuPerQuery(s.pid, s.port, hitFile, 20_000, 4)])));
    result.cpu_per_hit_query_us = Object.fromEntries(cpuServers.map((s) => [s.key, round1(median(cpuRounds.map((x) => x[s.key].cpu_us_per_query)))]));
    result.cpu_rounds = cpuRounds;
    log(`CPU µs per cache-hit query at 20k q/s: ${JSON.stringify(result.cpu_per_hit_query_us)}`);

    // CPU per cache-miss query at a fixed 5k q/s (fresh names each time), with a dnswarden that opens a fresh
    // upstream socket per query (resolver.queries_per_socket: 1) beside the default: what the socket reuse buys.
    const fresh = await startWarden(tmp, 'warden-on-fresh-socket', { nsdPort, scoring: true, baseline, queriesPerSocket: 1 });
    const missCpuServers = [...servers, { key: 'warden_on_fresh_socket', port: fresh.port, pid: fresh.pid }];
    const missCpuRounds = [];
    for (let r = 0; r < 3; r++) {
      missCpuRounds.push(Object.fromEntries(missCpuServers.map((s) => {
        const f = join(tmp, `miss-cpu-${r}-${s.key}.txt`);
        writeMissFile(f, `c${r}${s.key.replace(/[^a-z]/g, '').slice(0, 12)}`, 30_000);
        const x = cpuPerQuery(s.pid, s.port, f, 5000, 4);
        rmSync(f);
        return [s.key, x];
      })));
    }
    await stop(fresh.rec);
    result.cpu_per_miss_query_us = Object.fromEntries(missCpuServers.map((s) => [s.key, round1(median(missCpuRounds.map((x) => x[s.key].cpu_us_per_query)))]));
    result.cpu_miss_rounds = missCpuRounds;
    log(`CPU µs per cache-miss query at 5k q/s: ${JSON.stringify(result.cpu_per_miss_query_us)}`);

    result.blocked = await blockedRounds(tmp, { nsdPort, baseline, hitFile, floodFile, unbound: { port: ubPort, pid: unbound.child.pid }, on });
    result.fleet = await fleetRounds(tmp, { nsdPort, baseline, hitFile, unbound: { port: ubPort, pid: unbound.child.pid }, on });

    // Local-zone answers (issue 16) against cache hits, one dnswarden with a 1,000-name local zone, alternating runs.
    result.local_zone = await localZoneRounds(tmp, { nsdPort, hitFile, rounds: 3, seconds: P.hitSeconds });
    log(`local zone vs cache hit: ${JSON.stringify(result.local_zone.median)}`);

    // The query log's cost on cache hits (issue 17): query_log on vs off, same rounds (bench/query-log.mjs).
    result.query_log = await queryLogRounds(tmp, { nsdPort, baseline, hitFile, rounds: P.rounds, seconds: P.hitSeconds });
    log(`query log on/off (cache hits): ${JSON.stringify(result.query_log.median)}`);

    // A fleet (issue 15): quarantine propagation between three replicas over a real Redis, and cache-hit QPS with
    // fleet.redis on vs off (bench/fleet.mjs).
    result.fleet_redis = await fleetRedisBench(tmp, { nsdPort, hitFile, rounds: 3, seconds: P.hitSeconds });

    result.median.ratios = Object.fromEntries(Object.keys(result.rounds[0].ratios).map((k) => [k, round3(median(result.rounds.map((r) => r.ratios[k])))]));
    const nonNoerror = [];
    for (const [i, r] of result.rounds.entries()) {
      for (const kind of ['hit', 'miss']) for (const [k, v] of [...Object.entries(r[kind]), ...Object.entries(result.fleet.rounds[i]?.[kind] ?? {}).map(([key, x]) => [`fleet ${key}`, x])]) {
        const bad = Object.entries(v.rcodes).filter(([c]) => c !== 'NOERROR');
        if (bad.length > 0 || v.lost > 0) nonNoerror.push(`round ${i + 1} ${kind} ${k}: lost ${v.lost} ${JSON.stringify(Object.fromEntries(bad))}`);
      }
    }
    result.anomalies = nonNoerror;
    log(`medians ${JSON.stringify(result.median.ratios)}`);

    await stop(ceiling);
    await stop(unbound);
    await stop(on.rec);
    await stop(off.rec);

    // CPU profiles of dnswarden (scoring on), each in its own fresh process so the profile is one workload.
    if (P.profile) {
      result.profiles = {};
      for (const kind of ['hit', 'miss', 'blocked', 'observe']) {
        const profDir = join(tmp, `prof-${kind}`);
        const w = await startWarden(tmp, `prof-${kind}`, { nsdPort, scoring: true, baseline, mode: kind === 'observe' ? 'observe' : undefined }, ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
        let perf;
        if (kind === 'blocked' || kind === 'observe') {
          dnsperf(w.port, floodFile, { seconds: 10, maxRuns: 2 }); // blocked: quarantined by now; observe: every name cached
          perf = dnsperf(w.port, floodFile, { seconds: P.hitSeconds });
        } else if (kind === 'hit') {
          dnsperf(w.port, hitFile, { seconds: 10, maxRuns: 2 });
          perf = dnsperf(w.port, hitFile, { seconds: P.hitSeconds });
        } else {
          const f = join(tmp, 'miss-prof.txt');
          writeMissFile(f, 'prof', P.missNames);
          perf = dnsperf(w.port, f, { seconds: P.missSeconds, maxRuns: 1 });
          rmSync(f);
        }
        await stop(w.rec, 15_000);
        const files = existsSync(profDir) ? readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')) : [];
        result.profiles[kind] = files.length
          ? { qps_while_profiled: perf.qps, file: join(profDir, files[0]), ...summarizeProfile(join(profDir, files[0]), 15) }
          : { qps_while_profiled: perf.qps, error: 'no profile written' };
        log(`profile ${kind}: ${perf.qps} qps; top ${JSON.stringify(result.profiles[kind].top_functions?.slice(0, 5))}`);
      }
    }

    // RSS after 500,000 unique names from one session (scoring on), sent in 5 chunks so the RSS curve shows
    // whether growth levels off. First with the embedded default cache (the target's case), then, if time
    // allows, with a 600k cache that keeps every answer (the per-entry cost).
    result.flood = {};
    // The embedded default cache size (what a deployment gets), and a 600k cache that holds every name.
    // Then server.workers: 2 with the names split over the two fleet sessions (all processes' RSS summed).
    for (const [label, cacheEntries, workers] of [['cache_default', undefined, undefined], ['workers2_cache_default', undefined, 2], ['cache_600k', 600_000, undefined]]) {
      if (label === 'cache_600k' && Date.now() - T0 > P.floodSecondVariantBeforeS * 1000) {
        result.flood[label] = { skipped: `time budget: ${Math.round((Date.now() - T0) / 1000)} s elapsed` };
        log(`flood ${label}: skipped (time budget)`);
        continue;
      }
      result.flood[label] = await floodRss(tmp, { nsdPort, baseline, cacheEntries, workers, label: `flood-${label}` });
    }
    await stop(nsd);

    log('codec micro-benchmark');
    const codec = run('node', [join(BENCH_DIR, 'codec.mjs')], { timeoutMs: 120_000 });
    if (codec.status !== 0) throw new Error(`codec bench failed: ${codec.stderr}`);
    result.codec = JSON.parse(codec.stdout);

    log('sessions micro-benchmark (registration and lookup at 10 / 10,000 / 100,000 sessions)');
    const sessions = run('node', [join(BENCH_DIR, 'sessions.mjs'), '--json'], { timeoutMs: 300_000 });
    if (sessions.status !== 0) throw new Error(`sessions bench failed: ${sessions.stderr}`);
    result.sessions = JSON.parse(sessions.stdout);

    result.targets = targets(result);
    result.duration_s = Math.round((Date.now() - T0) / 1000);
    if (P.write) writeOutputs(result);
    else process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(markdown(result));
  } finally {
    await stopAll();
    if (process.env.BENCH_KEEP_TMP !== '1') rmSync(tmp, { recursive: true, force: true });
  }
}

/** Same-round QPS ratios: name → [set, numerator server(s), denominator server(s)]; several servers: their mean QPS. */
function qpsRatios(round, spec) {
  const qps = (set, keys) => (Array.isArray(keys) ? keys.reduce((sum, k) => sum + round[set][k].qps, 0) / keys.length : round[set][keys].qps);
  return Object.fromEntries(Object.entries(spec).map(([name, [set, a, b]]) => [name, round3(qps(set, a) / qps(set, b))]));
}

function logRound(label, r, servers, round) {
  log(`${label} ${r + 1}/${P.rounds} [${round.order.join(',')}] hit ${servers.map((s) => `${s.key}=${round.hit[s.key].qps}`).join(' ')} | miss ${servers.map((s) => `${s.key}=${round.miss[s.key].qps}`).join(' ')} | ${JSON.stringify(round.ratios)}`);
}

/**
 * Two agents at once (FLEET_SOURCES, each its own session, one dnsperf each, the outstanding budget split):
 * Unbound, dnswarden as one process, and dnswarden with server.workers: 2, whose kernel program puts
 * the two sessions on different workers. Same rotation and medians of same-round ratios as the main rounds.
 */
async function fleetRounds(tmp, { nsdPort, baseline, hitFile, unbound, on }) {
  if (shardOf(FLEET_SOURCES[0], 2) === shardOf(FLEET_SOURCES[1], 2)) throw new Error(`fleet sources ${FLEET_SOURCES} share a worker`);
  const w2 = await startWarden(tmp, 'warden-workers2', { nsdPort, scoring: true, baseline, workers: 2 });
  const servers = [{ key: 'unbound', ...unbound }, { key: 'warden_on', port: on.port, pid: on.pid }, { key: 'warden_workers2', port: w2.port, pid: w2.pid }];
  for (const s of servers) for (const source of FLEET_SOURCES) dnsperf(s.port, hitFile, { seconds: 10, maxRuns: 2, source }); // every worker's cache warm
  const fleet = { sources: FLEET_SOURCES, rounds: [] };
  for (let r = 0; r < P.rounds; r++) {
    const order = servers.map((_, i) => servers[(i + r) % servers.length]);
    const round = { order: order.map((s) => s.key), hit: {}, miss: {} };
    for (const s of order) round.hit[s.key] = await dnsperfFrom(FLEET_SOURCES, s.port, [hitFile], { seconds: P.hitSeconds });
    for (const s of order) {
      const files = FLEET_SOURCES.map((_, j) => {
        const f = join(tmp, `fleet-miss-${r}-${s.key}-${j}.txt`);
        writeMissFile(f, `q${r}${s.key.replace(/[^a-z0-9]/g, '').slice(-3)}${j}`, Math.ceil(P.missNames / FLEET_SOURCES.length));
        return f;
      });
      round.miss[s.key] = await dnsperfFrom(FLEET_SOURCES, s.port, files, { seconds: P.missSeconds, maxRuns: 1 });
      files.forEach((f) => rmSync(f));
    }
    round.ratios = qpsRatios(round, {
      hit_workers2_vs_unbound: ['hit', 'warden_workers2', 'unbound'],
      miss_workers2_vs_unbound: ['miss', 'warden_workers2', 'unbound'],
      hit_on_vs_unbound: ['hit', 'warden_on', 'unbound'],
      miss_on_vs_unbound: ['miss', 'warden_on', 'unbound'],
      hit_workers2_vs_on: ['hit', 'warden_workers2', 'warden_on'],
      miss_workers2_vs_on: ['miss', 'warden_workers2', 'warden_on'],
    });
    fleet.rounds.push(round);
    logRound('fleet round', r, servers, round);
  }
  fleet.median = {
    ratios: Object.fromEntries(Object.keys(fleet.rounds[0].ratios).map((k) => [k, round3(median(fleet.rounds.map((x) => x.ratios[k])))])),
    ...Object.fromEntries(servers.map((s) => [s.key, { hit_qps: round1(median(fleet.rounds.map((x) => x.hit[s.key].qps))), miss_qps: round1(median(fleet.rounds.map((x) => x.miss[s.key].qps))) }])),
  };
  fleet.workers2_rss_after = rssTreeKb(w2.pid);
  fleet.workers2_metrics_after = await metrics(w2.adminPort);
  await stop(w2.rec);
  log(`fleet medians ${JSON.stringify(fleet.median.ratios)}`);
  return fleet;
}

/**
 * The cost of blocked traffic: one session looping 1,000 random labels under one domain (blockFloodNames), to a
 * dnswarden that quarantines it (`warden_block`: from the warm-up on, every query meets the closed gate) and to one
 * in observe mode (`warden_observe`: every query answered from the cache and logged as a would-be block). Each round
 * also runs the cache-hit set on Unbound and warden_on, and the flood on Unbound, so every ratio is same-round.
 * Then CPU µs per query at a fixed 20k q/s, as for the hit set.
 */
async function blockedRounds(tmp, { nsdPort, baseline, hitFile, floodFile, unbound, on }) {
  const block = await startWarden(tmp, 'warden-block', { nsdPort, scoring: true, baseline });
  const observe = await startWarden(tmp, 'warden-observe', { nsdPort, scoring: true, baseline, mode: 'observe' });
  const servers = [{ key: 'unbound', ...unbound }, { key: 'warden_on', port: on.port, pid: on.pid }, { key: 'warden_block', port: block.port, pid: block.pid }, { key: 'warden_observe', port: observe.port, pid: observe.pid }];
  for (const s of [servers[0], servers[2], servers[3]]) {
    const w = dnsperf(s.port, floodFile, { seconds: 10, maxRuns: 2 }); // Unbound and observe: every name cached; block: quarantined
    log(`warm flood ${s.key}: ${w.completed}/${w.sent} ${JSON.stringify(w.rcodes)}`);
  }
  const quarantined = (await metrics(block.adminPort)).dnswarden_sessions_quarantined;
  if (quarantined !== 1) throw new Error(`warden_block: the flood did not quarantine its session (dnswarden_sessions_quarantined ${quarantined})`);
  const out = { names: 1000, rounds: [] };
  for (let r = 0; r < P.rounds; r++) {
    const order = servers.map((_, i) => servers[(i + r) % servers.length]);
    const round = { order: order.map((s) => s.key), hit: {}, flood: {} };
    for (const s of order) {
      if (s.key === 'unbound' || s.key === 'warden_on') round.hit[s.key] = dnsperfWithCpu(s.pid, s.port, hitFile, { seconds: P.hitSeconds });
      if (s.key !== 'warden_on') round.flood[s.key] = dnsperfWithCpu(s.pid, s.port, floodFile, { seconds: P.hitSeconds });
    }
    round.ratios = qpsRatios(round, {
      hit_on_vs_unbound: ['hit', 'warden_on', 'unbound'],
      blocked_vs_unbound: ['flood', 'warden_block', 'unbound'],
      observe_vs_unbound: ['flood', 'warden_observe', 'unbound'],
    });
    out.rounds.push(round);
    log(`blocked round ${r + 1}/${P.rounds} [${round.order.join(',')}] hit ${Object.entries(round.hit).map(([k, v]) => `${k}=${v.qps}`).join(' ')} | flood ${Object.entries(round.flood).map(([k, v]) => `${k}=${v.qps} ${JSON.stringify(v.rcodes)}`).join(' ')} | ${JSON.stringify(round.ratios)}`);
  }
  const med = (f) => round1(median(out.rounds.map(f)));
  out.median = {
    ratios: Object.fromEntries(Object.keys(out.rounds[0].ratios).map((k) => [k, round3(median(out.rounds.map((x) => x.ratios[k])))])),
    qps: {
      hit_unbound: med((x) => x.hit.unbound.qps), hit_warden_on: med((x) => x.hit.warden_on.qps),
      flood_unbound: med((x) => x.flood.unbound.qps), flood_warden_block: med((x) => x.flood.warden_block.qps), flood_warden_observe: med((x) => x.flood.warden_observe.qps),
    },
    main_thread_us_per_query: {
      hit_warden_on: med((x) => x.hit.warden_on.server_cpu.main_thread_us_per_query),
      flood_warden_block: med((x) => x.flood.warden_block.server_cpu.main_thread_us_per_query),
      flood_warden_observe: med((x) => x.flood.warden_observe.server_cpu.main_thread_us_per_query),
    },
  };
  // CPU per query at a fixed rate every server sustains (3 rounds, medians): robust on a shared machine.
  const cpu = [];
  for (let r = 0; r < 3; r++) {
    cpu.push({
      hit_unbound: cpuPerQuery(unbound.pid, unbound.port, hitFile, 20_000, 4), hit_warden_on: cpuPerQuery(on.pid, on.port, hitFile, 20_000, 4),
      flood_unbound: cpuPerQuery(unbound.pid, unbound.port, floodFile, 20_000, 4), flood_warden_block: cpuPerQuery(block.pid, block.port, floodFile, 20_000, 4),
      flood_warden_observe: cpuPerQuery(observe.pid, observe.port, floodFile, 20_000, 4),
    });
  }
  out.cpu_us_per_query_at_20k = Object.fromEntries(Object.keys(cpu[0]).map((k) => [k, round1(median(cpu.map((x) => x[k].cpu_us_per_query)))]));
  out.cpu_rounds = cpu;
  out.anomalies = out.rounds.flatMap((x, i) => Object.entries(x.flood).filter(([k, v]) => v.lost > 0 || (k === 'warden_block' && Object.keys(v.rcodes).some((c) => c !== 'NXDOMAIN'))).map(([k, v]) => `round ${i + 1} flood ${k}: lost ${v.lost} ${JSON.stringify(v.rcodes)}`));
  out.block_metrics_after = await metrics(block.adminPort);
  out.observe_metrics_after = await metrics(observe.adminPort);
  out.log_bytes = { warden_block: statSync(block.rec.logFile).size, warden_observe: statSync(observe.rec.logFile).size };
  await stop(block.rec);
  await stop(observe.rec);
  log(`blocked medians ${JSON.stringify(out.median.ratios)}; CPU µs/query at 20k q/s ${JSON.stringify(out.cpu_us_per_query_at_20k)}; log bytes ${JSON.stringify(out.log_bytes)}`);
  return out;
}

function blockedMarkdown(b) {
  const L = [];
  L.push('', '## Blocked traffic (one session looping 1,000 random labels under one domain)', '',
    '`warden_block` quarantined the session during the warm-up, so every query meets the closed gate (NXDOMAIN + EDE 15); `warden_observe` is `policy.mode: observe`, so every query is answered from the cache and counted as a would-be block. The cache-hit set on `warden_on` runs in the same rounds.', '',
    '| round | order | hit on/unbound | blocked/unbound | observe/unbound |', '|---|---|---|---|---|');
  for (const [i, x] of b.rounds.entries()) L.push(`| ${i + 1} | ${x.order.join(', ')} | ${x.ratios.hit_on_vs_unbound} | ${x.ratios.blocked_vs_unbound} | ${x.ratios.observe_vs_unbound} |`);
  const q = b.median.ratios;
  L.push(`| **median** | | **${q.hit_on_vs_unbound}** | **${q.blocked_vs_unbound}** | **${q.observe_vs_unbound}** |`, '');
  const c = b.cpu_us_per_query_at_20k;
  const t = b.median.main_thread_us_per_query;
  L.push('| set | server | QPS (median) | main thread µs/query at saturation | CPU µs/query at 20k q/s |', '|---|---|---|---|---|');
  L.push(`| hit | unbound | ${b.median.qps.hit_unbound} | | ${c.hit_unbound} |`, `| hit | warden_on | ${b.median.qps.hit_warden_on} | ${t.hit_warden_on} | ${c.hit_warden_on} |`);
  L.push(`| flood | unbound | ${b.median.qps.flood_unbound} | | ${c.flood_unbound} |`, `| flood | warden_block | ${b.median.qps.flood_warden_block} | ${t.flood_warden_block} | ${c.flood_warden_block} |`, `| flood | warden_observe | ${b.median.qps.flood_warden_observe} | ${t.flood_warden_observe} | ${c.flood_warden_observe} |`);
  L.push('', `Log written over the whole section: warden_block ${b.log_bytes.warden_block} B, warden_observe ${b.log_bytes.warden_observe} B.`);
  if (b.anomalies.length) L.push('', `Anomalies: ${b.anomalies.join('; ')}`);
  return L;
}

function targets(r) {
  const m = r.median;
  const t = (name, measured, target, kind = 'min') => ({
    name, measured, target, pass: kind === 'min' ? measured >= target : measured <= target,
    gap: kind === 'min' ? round3(measured / target) : round3(target / measured),
  });
  const out = [
    t('cache-hit QPS, warden (scoring on) / Unbound', m.ratios.hit_on_vs_unbound, 0.5),
    t('cache-miss QPS, warden (scoring on) / Unbound', m.ratios.miss_on_vs_unbound, 0.8),
    t(`cache-hit QPS, scoring on / off (${r.scoring_off_baseline}; ${r.params.pairs ?? 1} processes of each, pooled)`, m.ratios.hit_on_vs_off, 0.9),
  ];
  if (r.blocked) {
    const b = r.blocked.median.ratios;
    out.push(
      t('blocked flood (quarantined session) QPS / Unbound, ≥ cache-hit QPS / Unbound of the same rounds', b.blocked_vs_unbound, b.hit_on_vs_unbound),
      t('observe-mode flood QPS / Unbound, ≥ cache-hit QPS / Unbound of the same rounds', b.observe_vs_unbound, b.hit_on_vs_unbound),
    );
  }
  if (r.flood?.cache_default?.rss_after) out.push(t('RSS (MB) after 500k unique names, scoring on, default cache', r.flood.cache_default.rss_after.rss_mb, 150, 'max'));
  if (r.fleet) {
    const f = r.fleet.median.ratios;
    out.push(
      t('two agents: cache-hit QPS, server.workers: 2 (scoring on) / Unbound', f.hit_workers2_vs_unbound, 0.5),
      t('two agents: cache-miss QPS, server.workers: 2 (scoring on) / Unbound', f.miss_workers2_vs_unbound, 0.8),
    );
  }
  const w2 = r.flood?.workers2_cache_default;
  if (w2?.rss_after) out.push(t('RSS (MB) after 500k unique names, server.workers: 2, all 3 processes summed', w2.rss_after.rss_mb, 150, 'max'));
  return out;
}

// ------------------------------------------------------------------------------------------------
function markdown(r) {
  const m = r.median;
  const L = [];
  L.push(`# dnswarden benchmark — ${r.date}`, '');
  L.push(`Command: \`${r.command}\` (dnsperf ${r.machine.dnsperf}: \`-c ${r.params.dnsperfClients} -q ${r.params.dnsperfOutstanding} -T 1 -t ${r.params.dnsperfTimeoutSec}\`, hit \`-l ${r.params.hitSeconds}\`, miss \`-l ${r.params.missSeconds} -n 1\` over ${r.params.missNames} fresh names per server per round).`);
  L.push(`Machine: nproc ${r.machine.nproc} (${r.machine.cpu}), ${r.machine.mem_gb} GB, kernel ${r.machine.kernel}, node ${r.machine.node}, Unbound ${r.machine.unbound}, NSD ${r.machine.nsd}; load average at start ${r.machine.load_avg_at_start}. dnsperf shares the cores with the server under test; other work on the machine is noise, hence same-round ratios and medians of ${r.rounds.length} interleaved rounds. Whole run ${r.duration_s} s.`);
  L.push(`Scoring-off baseline: **${r.scoring_off_baseline}**${r.scoring_off_baseline === 'allow-list proxy' ? ' (the config has no `policy.enabled` key yet; the bench zone is allow-listed instead, so judge() returns its prebuilt allow verdict and observe() returns at once)' : ''}.`, '');
  L.push('## Targets', '', '| target | measured (median of same-round ratios) | target | result |', '|---|---|---|---|');
  for (const t of r.targets) L.push(`| ${t.name} | ${t.measured} | ${t.name.startsWith('RSS') ? '≤' : '≥'} ${t.target} | ${t.pass ? 'met' : `**missed** (${t.name.startsWith('RSS') ? `${round1(t.measured - t.target)} MB over` : `${Math.round((1 - t.gap) * 100)} % short`})`} |`);
  L.push('', '## Throughput and latency (medians over rounds)', '', '| server | hit QPS | miss QPS | hit avg latency ms | miss avg latency ms | probe p50 / p99 ms @ ' + r.params.latencyQps + ' q/s | RSS after rounds MB |', '|---|---|---|---|---|---|---|');
  for (const k of ['unbound', 'warden_on', 'warden_off']) {
    const s = m[k];
    L.push(`| ${k} | ${s.hit_qps} | ${s.miss_qps} | ${s.hit_avg_latency_ms} | ${s.miss_avg_latency_ms} | ${s.probe_p50_ms} / ${s.probe_p99_ms} | ${s.rss_after.rss_mb} |`);
  }
  if (m.warden_on.saturation_cpu) {
    L.push('', '## Where each server\'s time goes at saturation (the QPS runs above; /proc/PID/stat and /proc/PID/task/PID/stat, medians over rounds)', '',
      'CPU µs per answered query, all threads (V8\'s GC helper threads included), and the main thread: a single-threaded server whose main thread is near 100 % busy is limited by its own per-query cost there.', '',
      '| server | set | user µs/query | system µs/query | main thread busy % | main thread µs/query |', '|---|---|---|---|---|---|');
    for (const kind of ['hit', 'miss']) for (const k of ['unbound', 'warden_on', 'warden_off']) {
      const c = m[k].saturation_cpu[kind];
      L.push(`| ${k} | ${kind} | ${c.usr_us_per_query} | ${c.sys_us_per_query} | ${c.main_thread_busy_pct} | ${c.main_thread_us_per_query} |`);
    }
  }
  if (r.local_zone) {
    const z = r.local_zone.median;
    L.push('', '## Local-zone answers vs cache hits (one dnswarden, 1,000 names each, alternating runs, median of 3)', '',
      '| set | QPS | main thread µs/query |', '|---|---|---|',
      `| local zone (\`zones:\`, never scored) | ${z.local_qps} | ${z.local_us_per_query} |`, `| cache hit (scored) | ${z.cache_hit_qps} | ${z.cache_hit_us_per_query} |`,
      '', `Ratio local / hit (median of same-round ratios): ${z.ratio_local_to_hit}; every local answer NOERROR: ${z.local_noerror}.`);
  }
  if (r.query_log) L.push('', '## The query log\'s cost on cache hits (two dnswardens, scoring on, `query_log` on vs `{ enabled: false }`, alternating runs; bench/query-log.mjs)', '', queryLogMarkdown(r.query_log).trimEnd());
  if (r.fleet_redis) L.push('', '## A fleet over Redis (three replicas, `fleet.redis`; bench/fleet.mjs)', '', fleetMarkdown(r.fleet_redis).trimEnd());
  if (r.cpu_per_hit_query_us) {
    const c = r.cpu_per_hit_query_us;
    L.push('', '## CPU per cache-hit query at a fixed 20,000 q/s (median of 3 rounds; /proc/PID/stat user+system)', '', '| server | CPU µs per query | vs Unbound | vs Node ceiling |', '|---|---|---|---|');
    for (const k of Object.keys(c)) L.push(`| ${k} | ${c[k]} | ${round3(c[k] / c.unbound)} | ${round3(c[k] / c.node_ceiling)} |`);
  }
  if (r.cpu_per_miss_query_us) {
    const c = r.cpu_per_miss_query_us;
    L.push('', '## CPU per cache-miss query at a fixed 5,000 q/s (fresh names; median of 3 rounds; the server\'s own CPU, NSD not counted)', '',
      '`warden_on_fresh_socket` is dnswarden with `resolver.queries_per_socket: 1` (a fresh upstream socket and port per query); the others run the default.', '',
      '| server | CPU µs per query | vs Unbound | vs warden_on |', '|---|---|---|---|');
    for (const k of Object.keys(c)) L.push(`| ${k} | ${c[k]} | ${round3(c[k] / c.unbound)} | ${round3(c[k] / c.warden_on)} |`);
  }
  L.push('', '## Same-round ratios', '', '"Node ceiling" is bench/node-ceiling.mjs: a bare node:dgram server answering the hit set from a Map of pre-encoded replies (no sessions, cache, scoring or metrics), measured after the dnswardens in each round. "on/off" pools every scoring-on and every scoring-off dnswarden of the round (mean QPS of each); "first pair" is warden_on / warden_off alone, as runs before the pooling reported it.', '', '| round | order | hit on/unbound | hit off/unbound | miss on/unbound | miss off/unbound | hit on/off | hit on/off, first pair | miss on/off | hit Node ceiling/unbound | hit on/Node ceiling |', '|---|---|---|---|---|---|---|---|---|---|---|');
  for (const [i, x] of r.rounds.entries()) {
    const q = x.ratios;
    L.push(`| ${i + 1} | ${x.order.join(', ')} | ${q.hit_on_vs_unbound} | ${q.hit_off_vs_unbound} | ${q.miss_on_vs_unbound} | ${q.miss_off_vs_unbound} | ${q.hit_on_vs_off} | ${q.hit_on_vs_off_first_pair ?? ''} | ${q.miss_on_vs_off} | ${q.hit_ceiling_vs_unbound} | ${q.hit_on_vs_ceiling} |`);
  }
  const q = m.ratios;
  L.push(`| **median** | | **${q.hit_on_vs_unbound}** | **${q.hit_off_vs_unbound}** | **${q.miss_on_vs_unbound}** | **${q.miss_off_vs_unbound}** | **${q.hit_on_vs_off}** | **${q.hit_on_vs_off_first_pair ?? ''}** | **${q.miss_on_vs_off}** | **${q.hit_ceiling_vs_unbound}** | **${q.hit_on_vs_ceiling}** |`);
  if (r.blocked) L.push(...blockedMarkdown(r.blocked));
  if (r.fleet) {
    const f = r.fleet;
    L.push('', `## Two agents at once (${f.sources.join(' and ')}, each its own session and its own dnsperf; \`server.workers: 2\` puts them on different workers)`, '',
      '`warden_on` is the single-process dnswarden of the rounds above under the same two-agent load; `warden_workers2` is dnswarden with `server.workers: 2` (a supervisor and two workers). Each dnsperf gets half the outstanding-query budget, so the offered load equals one dnsperf\'s.', '',
      '| round | order | hit unbound | hit warden_on | hit workers2 | miss unbound | miss warden_on | miss workers2 | hit workers2/unbound | miss workers2/unbound | hit on/unbound | miss on/unbound |', '|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const [i, x] of f.rounds.entries()) {
      const q = x.ratios;
      L.push(`| ${i + 1} | ${x.order.join(', ')} | ${x.hit.unbound.qps} | ${x.hit.warden_on.qps} | ${x.hit.warden_workers2.qps} | ${x.miss.unbound.qps} | ${x.miss.warden_on.qps} | ${x.miss.warden_workers2.qps} | ${q.hit_workers2_vs_unbound} | ${q.miss_workers2_vs_unbound} | ${q.hit_on_vs_unbound} | ${q.miss_on_vs_unbound} |`);
    }
    const q = f.median.ratios;
    L.push(`| **median** | | ${f.median.unbound.hit_qps} | ${f.median.warden_on.hit_qps} | ${f.median.warden_workers2.hit_qps} | ${f.median.unbound.miss_qps} | ${f.median.warden_on.miss_qps} | ${f.median.warden_workers2.miss_qps} | **${q.hit_workers2_vs_unbound}** | **${q.miss_workers2_vs_unbound}** | **${q.hit_on_vs_unbound}** | **${q.miss_on_vs_unbound}** |`);
    const [sup, ...workers] = f.workers2_rss_after.processes;
    L.push('', `RSS of the \`server.workers: 2\` processes after these rounds: supervisor ${sup.rss_mb} MB, workers ${workers.map((p) => `${p.rss_mb} MB`).join(' and ')}; ${f.workers2_rss_after.rss_mb} MB in all.`);
  }
  if (r.anomalies.length) L.push('', 'Lost queries / non-NOERROR answers: ' + r.anomalies.join('; '));
  if (r.flood) {
    L.push('', '## RSS after 500,000 unique names (one session, scoring on; names `<host>.f<n>.' + r.params.zone + '`, 10 per registrable domain, sent in 5 chunks)', '', '| cache max_entries | sent / completed | time s | rcodes | RSS before MB | RSS after each fifth MB | RSS +3 s MB | peak (VmHWM) MB | cache entries after |', '|---|---|---|---|---|---|---|---|---|');
    for (const [label, f] of Object.entries(r.flood)) {
      if (f.skipped) { L.push(`| ${label} | skipped: ${f.skipped} | | | | | | | |`); continue; }
      L.push(`| ${f.cache_max_entries ?? 'default (30000)'}${f.workers > 1 ? ` per worker, \`server.workers: ${f.workers}\` (names over 2 sessions; RSS of all processes)` : ''} | ${f.dnsperf.sent} / ${f.dnsperf.completed} | ${f.dnsperf.run_s} | ${Object.entries(f.dnsperf.rcodes).map(([a, b]) => `${a} ${b}`).join(', ')} | ${f.rss_before.rss_mb} | ${f.curve.map((x) => x.rss_mb).join(' → ')} | ${f.rss_after_3s.rss_mb} | ${f.rss_after.hwm_mb} | ${f.metrics_after.dnswarden_cache_entries ?? '?'} |`);
    }
  }
  if (r.profiles) {
    L.push('', '## Where dnswarden spends its CPU (scoring on, `node --cpu-prof`, self time, % of non-idle samples)', '');
    for (const [kind, p] of Object.entries(r.profiles)) {
      if (p.error) { L.push(`${kind}: ${p.error}`); continue; }
      L.push(`**${kind}** (${p.qps_while_profiled} q/s while profiled, idle ${p.idle_pct} %)`, '', '| function | % | | file | % |', '|---|---|---|---|---|');
      for (let i = 0; i < 12; i++) {
        const f = p.top_functions[i];
        const g = p.top_files[i];
        L.push(`| ${f ? `\`${f.where}\`` : ''} | ${f?.pct_of_busy ?? ''} | | ${g ? `\`${g.where}\`` : ''} | ${g?.pct_of_busy ?? ''} |`);
      }
      L.push('');
    }
  }
  if (r.codec) {
    L.push('', `## Codec micro-benchmark (µs per op, median of ${r.codec['wire decodeQuery'].runs} × ${r.codec['wire decodeQuery'].iterations}; reply ${r.codec.reply_bytes} B: CNAME + 2 A + OPT)`, '', '| operation | µs/op |', '|---|---|');
    for (const [k, v] of Object.entries(r.codec)) if (typeof v === 'object') L.push(`| ${k} | ${v.us_per_op} |`);
  }
  if (r.sessions) {
    L.push('', `## Session registration and lookup against sessions held (\`${r.sessions.command}\`; SessionDirectory alone: no HTTP, no store; µs per op, at most ${r.sessions.ops_per_measurement} ops or ${r.sessions.seconds_cap_per_measurement} s each)`, '', sessionsMarkdown(r.sessions).trimEnd());
  }
  L.push('');
  return `${L.join('\n')}\n`;
}

function writeOutputs(r) {
  const dir = join(BENCH_DIR, 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = r.date.replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
  for (const p of Object.values(r.profiles ?? {})) delete p.file; // temp path, gone after the run
  writeFileSync(join(dir, `${stamp}.json`), `${JSON.stringify(r, null, 2)}\n`);
  const md = markdown(r);
  writeFileSync(join(dir, 'latest.md'), md);
  const readme = join(BENCH_DIR, 'README.md');
  if (existsSync(readme)) {
    const text = readFileSync(readme, 'utf8');
    const start = '<!-- latest:start -->';
    const end = '<!-- latest:end -->';
    const i = text.indexOf(start);
    const j = text.indexOf(end);
    if (i >= 0 && j > i) {
      const body = md.replace(/^# .*\n/, '').replace(/^## /gm, '### ');
      writeFileSync(readme, `${text.slice(0, i + start.length)}\n_Run of ${r.date} (bench/results/${stamp}.json)._\n${body}\n${text.slice(j)}`);
    }
  }
  log(`wrote bench/results/${stamp}.json and bench/results/latest.md`);
}

main().catch(async (err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  await stopAll();
  process.exitCode = 1;
});
