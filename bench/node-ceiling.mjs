// The Node ceiling the issue refers to: a bare node:dgram server answering every A query from a Map of
// pre-encoded replies (only the ID patched) — no sessions, no cache, no scoring, no metrics. Run beside
// dnswarden in the same rounds, it shows how much of the gap to Unbound is Node's per-packet cost.
// Usage: node bench/node-ceiling.mjs PORT
import { createSocket } from 'node:dgram';

const port = Number(process.argv[2]);
const replies = new Map();
const socket = createSocket('udp4');

function questionEnd(packet) {
  let p = 12;
  while (p < packet.length && packet[p] !== 0) p += packet[p] + 1;
  return p + 5;
}

function buildReply(packet, end) {
  const question = packet.subarray(12, end);
  const out = Buffer.alloc(12 + question.length + 16);
  out.writeUInt16BE(0x8180, 2); // QR RD RA, NOERROR
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(1, 6);
  question.copy(out, 12);
  const a = 12 + question.length;
  out.writeUInt16BE(0xc00c, a);
  out.writeUInt16BE(1, a + 2);
  out.writeUInt16BE(1, a + 4);
  out.writeUInt32BE(3600, a + 6);
  out.writeUInt16BE(4, a + 10);
  out.set([198, 51, 100, 7], a + 12);
  return out;
}

socket.on('message', (packet, rinfo) => {
  if (packet.length < 17) return;
  const end = questionEnd(packet);
  const key = packet.toString('latin1', 12, end);
  let reply = replies.get(key);
  if (reply === undefined) {
    reply = buildReply(packet, end);
    replies.set(key, reply);
  }
  const out = Buffer.from(reply);
  out[0] = packet[0];
  out[1] = packet[1];
  socket.send(out, rinfo.port, rinfo.address);
});
socket.bind(port, '127.0.0.1', () => process.stdout.write(`ready ${port}\n`));
