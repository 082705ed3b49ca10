// Exfiltration-shaped names for tests: a 63-character base32 label (RFC 4648 alphabet, lower case), the
// shape iodine/dnscat-style tools put in one label, deterministic per seed.
import { createHash } from 'node:crypto';

export function base32Label(seed: string): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const bytes = createHash('sha512').update(seed).digest();
  let out = '';
  for (let i = 0; out.length < 63; i++) out += alphabet[bytes[i % bytes.length]! & 31];
  return out;
}
