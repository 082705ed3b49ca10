import { describe, expect, it } from 'vitest';
import { encodedLabelBytes, looksEncoded } from '../../scoring/encoded.js';
import { readCorpus, base32, base64url, hex, prng } from '../../fixtures/corpora/generate.mjs';

describe('looksEncoded', () => {
  it('flags random hex / base32 / base64url labels of 8–29 chars (lower-cased, as judged) at a high rate', () => {
    const r = prng(9);
    const rate = (enc: (b: Uint8Array) => string, len: number) => {
      let k = 0;
      for (let i = 0; i < 1000; i++) if (looksEncoded(enc(r.bytes(40)).slice(0, len).toLowerCase())) k++;
      return k / 1000;
    };
    for (const enc of [hex, base32, base64url]) {
      expect(rate(enc, 12)).toBeGreaterThan(0.8);
      expect(rate(enc, 29)).toBeGreaterThan(0.99);
      expect(rate(enc, 8)).toBeGreaterThan(0.45);
    }
  });

  it('leaves words, region names, short ids and canonical UUIDs alone', () => {
    for (const l of ['download', 'kubernetes', 'us-east-1', 'eu-west-2', 'node21', 'assets-prod', 'www', 'api', 'login', 'marketing', 'yahoovpaidtwoint', '507b28fb-2ef1-4c34-8bda-ba32030bb199']) {
      expect(looksEncoded(l), l).toBe(false);
    }
    for (const l of ['3k9xq7mz2v', 'a79qh1bf', '0123456789', 'ktv4qqgmizkk', 'qwrtzpsdfg', 'ab_cdefgh']) expect(looksEncoded(l), l).toBe(true);
  });

  it('flags under a third of the long labels of the 200,000 popular names', () => {
    let total = 0;
    let flagged = 0;
    for (const name of readCorpus('benign-fqdn.txt')) {
      for (const l of name.split('.').slice(0, -2)) {
        if (l.length < 8) continue;
        total++;
        if (looksEncoded(l)) flagged++;
      }
    }
    expect(total).toBeGreaterThan(50_000);
    expect(flagged / total).toBeLessThan(0.33);
  }, 30_000);
});

describe('encodedLabelBytes', () => {
  it('counts new encoded-looking labels at the literal rate; known labels and plain ones cost nothing; a stream counts every label of 4+', () => {
    expect(encodedLabelBytes({}, 'www.3k9xq7mz2v', 0.5, false)).toBe(5);
    expect(encodedLabelBytes({ '3k9xq7mz2v': 1 }, 'www.3k9xq7mz2v', 0.5, false)).toBe(0);
    expect(encodedLabelBytes({}, 'download.docs', 0.5, false)).toBe(0);
    expect(encodedLabelBytes({}, 'abcd.www.download', 0.5, true)).toBe(6);
    // a sequence counter in front of a stream's label carries next to nothing: not counted
    expect(encodedLabelBytes({}, '0042.3k9xq7mz2v', 0.5, true)).toBe(5);
  });
});
