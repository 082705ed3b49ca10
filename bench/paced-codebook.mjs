// bench/paced-codebook.mjs — the repeat channel's open end (issue 14), simulated through the built policy (dist/): K bare
// attacker domains × {A, AAAA, HTTPS}, answered with TTL 0 (every query leaves), each (type, domain) asked again no
// sooner than the repeat floor after its last departure, so the choice of domain and type is never charged. A query
// every DT ms picks uniformly among the symbols free then and carries log2(free) bits; four rates are tried. Prints,
// per rate, the bytes carried, per minute, what the repeat budget was charged, and whether a verdict stopped it.
// Pure: no sockets, no files; simulated time, bounded by HOURS.
//   npm run build && node bench/paced-codebook.mjs          (FLOOR=30000 K=64 HOURS=2 to vary)
import { policySchema, scoringSchema } from '../dist/src/policy/schema.js';
import { Policy } from '../dist/src/policy/judge.js';

const K = Number(process.env.K ?? 16);
const hours = Number(process.env.HOURS ?? 6);
const scoring = scoringSchema.parse(process.env.FLOOR === undefined ? {} : { repeat_floor_ms: Number(process.env.FLOOR) });
const floor = scoring.repeat_floor_ms;
const session = { id: 'paced', user: 'lab', role: 'lab', type: 'interactive' };
let seed = 7;
const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);

for (const spread of [1, 2, 4, 8]) {
  const policy = new Policy(policySchema.parse({}), scoring);
  const state = policy.newSessionState();
  const symbols = [];
  for (let i = 0; i < K; i++) for (const qtype of [1, 28, 65]) symbols.push({ name: `k${i}zq${i * 7}mail.com`, qtype, lastMs: -Infinity });
  const dt = Math.max(50, Math.round((floor / symbols.length) * spread));
  let bits = 0;
  let queries = 0;
  let at = 0;
  let stop = 'never stopped';
  for (; at < hours * 3_600_000; at += dt) {
    const free = symbols.filter((s) => at - s.lastMs >= floor);
    if (free.length === 0) continue;
    const s = free[Math.floor(random() * free.length)];
    const v = policy.judge({ name: s.name, qtype: s.qtype, session, state, ageDays: undefined, atMs: at });
    if (v.action !== 'answer') { stop = `${v.action} (${v.rule}): ${v.reason}`; break; }
    policy.account(state, { kind: 'query', name: s.name, qtype: s.qtype, atMs: at, ageDays: undefined, verdict: v, sent: true });
    policy.account(state, { kind: 'answer', atMs: at, rcode: 0 });
    if (s.lastMs !== -Infinity) bits += Math.log2(free.length);
    s.lastMs = at;
    queries++;
  }
  const minutes = at / 60_000;
  console.log(`floor ${floor / 1000} s, ${K} domains x 3 types, a query every ${dt} ms: ${queries} queries in ${Math.round(minutes)} min, ` +
    `${Math.round(bits / 8)} B carried (${(bits / 8 / minutes).toFixed(1)} B/min), repeat budget charged ${Math.round(state.repeatBytes)} B, ${stop}`);
}
