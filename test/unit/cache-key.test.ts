// The answer-cache key: name alone for the common A/IN/DO-clear question, separators that no name
// text can hold for every other question, so two different questions never share an entry.
import { describe, expect, it } from 'vitest';
import { cacheKey } from '../../src/dns/cache.js';
import { decodeQuery, type Query } from '../../src/dns/wire.js';

/** A query packet for one name given as raw labels (any bytes), with an optional OPT record. */
function packet(labels: Buffer[], type: number, cls = 1, dnssecOk?: boolean): Buffer {
  const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, dnssecOk === undefined ? 0 : 1]);
  const name = Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), l]), Buffer.from([0])]);
  const question = Buffer.from([type >> 8, type & 0xff, cls >> 8, cls & 0xff]);
  const opt = dnssecOk === undefined ? Buffer.alloc(0) : Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, dnssecOk ? 0x80 : 0, 0, 0, 0]);
  return Buffer.concat([header, name, question, opt]);
}

function query(labels: Buffer[], type: number, cls = 1, dnssecOk?: boolean): Query {
  const d = decodeQuery(packet(labels, type, cls, dnssecOk), { address: '127.0.0.1', port: 1, transport: 'udp' }, 0, 1232);
  if (!d.ok) throw new Error(`not decoded: ${d.reason}`);
  return d.query;
}

describe('cacheKey', () => {
  const www = [Buffer.from('www'), Buffer.from('example'), Buffer.from('com')];

  it('is the name alone for A, IN, DO clear; type, class and DO make other keys', () => {
    const keys = [
      cacheKey(query(www, 1)),
      cacheKey(query(www, 28)),
      cacheKey(query(www, 1, 1, true)),
      cacheKey(query(www, 1, 3)),
    ];
    expect(keys[0]).toBe('www.example.com');
    expect(new Set(keys).size).toBe(4);
    expect(cacheKey(query(www, 1, 1, false))).toBe(keys[0]); // EDNS without DO is the same question
  });

  it('a name made of separator-like bytes cannot take another question\'s key', () => {
    // The AAAA key of www.example.com, tried as the raw bytes of an A query's last label.
    const aaaaKey = cacheKey(query(www, 28));
    const tail = aaaaKey.slice('www.example.'.length);
    const forged = query([Buffer.from('www'), Buffer.from('example'), Buffer.from(tail, 'latin1')], 1);
    expect(forged.name).toContain('\\001');
    expect(cacheKey(forged)).not.toBe(aaaaKey);
    const forgedPipe = query([Buffer.from('www'), Buffer.from('example'), Buffer.from('com|28|1|0')], 1);
    expect(cacheKey(forgedPipe)).not.toBe(aaaaKey);
  });
});
