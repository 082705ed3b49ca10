// Codec micro-benchmark (issue 2 asks to re-measure the codec decision): µs per operation for
//   dns-packet 5.6.1  decode / encode of a typical reply,
//   dns2 3.1.1        Packet.parse / toBuffer of the same reply,
//   our wire.ts       decodeQuery (client query), decodeUpstreamReply + encodeForwardedReply (the raw-bytes path).
// Run alone (`node bench/codec.mjs`) it prints a JSON object; bench/run.mjs runs it as a child process.
// Each measurement: warm up, then RUNS timed batches of ITER operations; the median batch is reported.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dnsPacket = require('dns-packet');
const dns2 = require('dns2');
const { Packet } = dns2;
const wire = await import(join(root, 'dist/src/dns/wire.js'));

const RUNS = Number(process.env.CODEC_RUNS ?? 7);
const ITER = Number(process.env.CODEC_ITER ?? 20_000);

// A typical reply an agent gets: A query for a CDN-ish name, a CNAME plus two A records, EDNS0 OPT.
const QNAME = 'api.github-cdn.example.com';
const replyObject = {
  type: 'response',
  id: 0x1234,
  flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
  questions: [{ type: 'A', class: 'IN', name: QNAME }],
  answers: [
    { type: 'CNAME', class: 'IN', name: QNAME, ttl: 300, data: 'edge-7.cdn.example.net' },
    { type: 'A', class: 'IN', name: 'edge-7.cdn.example.net', ttl: 60, data: '198.51.100.7' },
    { type: 'A', class: 'IN', name: 'edge-7.cdn.example.net', ttl: 60, data: '198.51.100.8' },
  ],
  additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] }],
};
const replyBuf = dnsPacket.encode(replyObject);
const queryBuf = dnsPacket.encode({
  type: 'query', id: 0x1234, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', class: 'IN', name: QNAME }],
  additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] }],
});
const peer = { address: '127.0.0.1', port: 40000, transport: 'udp' };

let sink = 0; // keeps results alive so nothing is optimised away
function measure(fn) {
  for (let i = 0; i < ITER; i++) fn(); // warm-up / JIT
  const perOp = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < ITER; i++) fn();
    const ns = Number(process.hrtime.bigint() - t0);
    perOp.push(ns / ITER / 1000);
  }
  perOp.sort((a, b) => a - b);
  const median = perOp[Math.floor(perOp.length / 2)];
  return { us_per_op: round(median), min: round(perOp[0]), max: round(perOp[perOp.length - 1]), runs: RUNS, iterations: ITER };
}
const round = (x) => Math.round(x * 1000) / 1000;

// Sanity: every codec reads the same reply.
const dp = dnsPacket.decode(replyBuf);
const d2 = Packet.parse(replyBuf);
if (dp.answers.length !== 3 || d2.answers.length !== 3) throw new Error('codec sanity: reply not understood');
const decoded = wire.decodeQuery(queryBuf, peer, Date.now(), 1232);
if (!decoded.ok) throw new Error(`decodeQuery sanity: ${decoded.reason}`);
const q = decoded.query;
const upstream = Buffer.from(replyBuf);
const parsed = wire.decodeUpstreamReply(upstream, q, 0x1234, 86_400);
if (parsed instanceof Error) throw parsed;
if (parsed.addresses.length !== 2) throw new Error('decodeUpstreamReply sanity: addresses');
const forwarded = wire.encodeForwardedReply(q, parsed, 5, 1232);
if (dnsPacket.decode(forwarded).answers[1].ttl !== 55) throw new Error('encodeForwardedReply sanity: TTL not patched');

const results = {
  reply_bytes: replyBuf.length,
  query_bytes: queryBuf.length,
  node: process.version,
  'dns-packet decode reply': measure(() => { sink += dnsPacket.decode(replyBuf).answers.length; }),
  'dns-packet encode reply': measure(() => { sink += dnsPacket.encode(replyObject).length; }),
  'dns2 Packet.parse reply': measure(() => { sink += Packet.parse(replyBuf).answers.length; }),
  'dns2 toBuffer reply': measure(() => { sink += d2.toBuffer().length; }),
  'wire decodeQuery': measure(() => { const d = wire.decodeQuery(queryBuf, peer, 0, 1232); sink += d.ok ? 1 : 0; }),
  'wire decodeUpstreamReply': measure(() => { sink += wire.decodeUpstreamReply(upstream, q, 0x1234, 86_400).body.length; }),
  'wire encodeForwardedReply': measure(() => { sink += wire.encodeForwardedReply(q, parsed, 5, 1232).length; }),
};
if (sink === 42) console.error('');
process.stdout.write(`${JSON.stringify(results)}\n`);
