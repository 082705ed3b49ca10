// The DNS query type names: the one table of number ↔ mnemonic that the codec, the metrics, the log lines, replay
// and the analyst CLI all read. Unknown types are written as RFC 3597's `TYPE<n>` and read back the same way.
// Here, in ops, because every layer that names a type (ops' metrics and the zones' parser included) may import it.
// Never encodes or decodes packets (src/dns/wire.ts does).

export const QTYPE = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, NULL: 10, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, NAPTR: 35, DNAME: 39, OPT: 41,
  DS: 43, DNSKEY: 48, SVCB: 64, HTTPS: 65, SPF: 99, ANY: 255, CAA: 257,
} as const;
export type QtypeMnemonic = keyof typeof QTYPE;

const NAME_OF: ReadonlyMap<number, QtypeMnemonic> = new Map(Object.entries(QTYPE).map(([k, v]) => [v, k as QtypeMnemonic]));

/** The mnemonic of a known type, else undefined. */
export function qtypeMnemonic(type: number): QtypeMnemonic | undefined {
  return NAME_OF.get(type);
}

/** For log lines and people: the mnemonic, else `TYPE<n>` (RFC 3597), so `qtypeOf` reads it back. */
export function qtypeText(type: number): string {
  return NAME_OF.get(type) ?? `TYPE${type}`;
}

/** A type from its mnemonic (any case) or `TYPE<n>`, 0–65535; undefined when it is neither. */
export function qtypeOf(text: string): number | undefined {
  const upper = text.toUpperCase();
  const known = (QTYPE as Readonly<Record<string, number>>)[upper];
  if (known !== undefined) return known;
  const m = /^TYPE([0-9]{1,5})$/.exec(upper);
  return m !== null && Number(m[1]) <= 65535 ? Number(m[1]) : undefined;
}
