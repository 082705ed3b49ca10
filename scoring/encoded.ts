// scoring/encoded.ts — whether a label looks like encoded data (looksEncoded), and what a name's encoded-looking
// labels add to the session's encoded-label account. Pure string arithmetic: no state of its own, no clock, no I/O;
// the account itself lives in the session state (window.ts), which calls in here.

/**
 * A label that looks like encoded data rather than a name a person or a product picked: at least ENCODED_MIN characters
 * and either letters and digits interleaved (≥ 2 of each, ≥ 3 switches between them: hex, base32/36/58/62/64,
 * counters glued to ids), all digits (decimal encodings), or letters with no pronounceable structure (vowels
 * under a quarter, or a run of 5 consonants: random base32/base62 text without digits). Words, `node21`,
 * `us-east-1`, `yahoovpaidtwoint` do not. Canonical UUIDs are ids every tracker and SaaS mints; they are left to
 * the other budgets (an attacker who encodes in UUID shape gets those, not this one).
 */
export function looksEncoded(label: string): boolean {
  const n = label.length;
  if (n < ENCODED_MIN) return false;
  if (n === 36 && UUID.test(label)) return false;
  let letters = 0;
  let digits = 0;
  let vowels = 0;
  let switches = 0;
  let run = 0;
  let maxRun = 0;
  let prev = 0; // 1 letter, 2 digit
  let underscore = false;
  for (let i = 0; i < n; i++) {
    const c = label.charCodeAt(i) | 0x20;
    let cls: number;
    if (c >= 97 && c <= 122) {
      cls = 1;
      letters++;
      if (c === 97 || c === 101 || c === 105 || c === 111 || c === 117 || c === 121) {
        vowels++;
        run = 0;
      } else if (++run > maxRun) maxRun = run;
    } else if (c >= 48 && c <= 57) {
      cls = 2;
      digits++;
      run = 0;
    } else {
      cls = 0; // '-', '_', '+', '/', '=': neither letter nor digit, no switch
      run = 0;
      if (c === 0x7f /* '_' | 0x20 */ && i > 0) underscore = true;
    }
    if (cls !== 0) {
      if (prev !== 0 && cls !== prev) switches++;
      prev = cls;
    }
  }
  if (underscore) return true; // '_' inside a label is no hostname (SRV/DKIM's `_tcp`, `_domainkey` lead with it): base64url
  if (digits >= 1 && letters >= 2 && switches >= (digits >= 2 ? 3 : 2)) return true;
  if (digits === n) return true;
  return letters >= ENCODED_MIN && (vowels * 4 < letters || maxRun >= 5);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The shortest label looksEncoded judges, and the shortest counted once a domain carries an encoded stream. */
export const ENCODED_MIN = 6;
export const STREAM_MIN = 4;

/** Encoded-looking names to one domain from which all its new long labels count as encoded (DomainWindow.encodedNames). */
export const ENCODED_STREAM = 3;

/** A short all-digit label (`0042`): a sequence counter, which the receiver could predict: it carries next to nothing. */
function counter(label: string): boolean {
  if (label.length >= ENCODED_MIN) return false;
  for (let i = 0; i < label.length; i++) {
    const c = label.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * The literal bytes (`lit` a character) of `sub`'s labels that are new to the session (`known`) and look encoded —
 * or, when `stream` (the domain carries an encoded stream), of every new label of STREAM_MIN+ characters but a
 * sequence counter.
 */
export function encodedLabelBytes(known: Readonly<Record<string, 1>>, sub: string, lit: number, stream: boolean): number {
  let bytes = 0;
  let start = 0;
  for (let i = 0; i <= sub.length; i++) {
    if (i < sub.length && sub.charCodeAt(i) !== 46 /* . */) continue;
    if (i - start >= (stream ? STREAM_MIN : ENCODED_MIN)) {
      const label = sub.slice(start, i);
      if (known[label] !== 1 && (stream ? !counter(label) : looksEncoded(label))) bytes += label.length * lit;
    }
    start = i + 1;
  }
  return bytes;
}
