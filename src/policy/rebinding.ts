// The DNS-rebinding check's address ranges: which answer addresses a public name must not point at. Pure
// (no I/O, no clock); never decides a verdict — the judge's judgeAnswer does, with what this says.
import { BlockList, isIPv6 } from 'node:net';

// Addresses a public name must not point at (RFC 1918, RFC 6598 CGNAT, loopback, link-local incl. the cloud
// metadata address 169.254.169.254, unspecified, unique-local fc00::/7, v6 link-local fe80::/10).
// IPv4 (nearly every answer) is compared as a number: BlockList builds a SocketAddress per check,
// which was a measurable share of a cache miss.
export interface RebindingRanges {
  readonly v4: readonly (readonly [network: number, mask: number])[];
  readonly v6: BlockList;
}

export function rebindingRanges(blockCgnat: boolean): RebindingRanges {
  const v4Nets: [string, number][] = [['0.0.0.0', 8], ['10.0.0.0', 8], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.168.0.0', 16]];
  if (blockCgnat) v4Nets.push(['100.64.0.0', 10]);
  const v4 = v4Nets.map(([net, bits]) => {
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    return [(ipv4Number(net)! & mask) >>> 0, mask] as const;
  });
  const v6 = new BlockList();
  v6.addAddress('::', 'ipv6');
  v6.addAddress('::1', 'ipv6');
  v6.addSubnet('fc00::', 7, 'ipv6');
  v6.addSubnet('fe80::', 10, 'ipv6');
  return { v4, v6 };
}

/** A dotted quad as an unsigned 32-bit number, or undefined for anything else. */
export function ipv4Number(address: string): number | undefined {
  let value = 0;
  let octet = -1;
  let dots = 0;
  for (let i = 0; i < address.length; i++) {
    const c = address.charCodeAt(i);
    if (c === 46) { // '.'
      if (octet < 0 || ++dots > 3) return undefined;
      value = value * 256 + octet;
      octet = -1;
    } else if (c >= 48 && c <= 57) {
      if (octet === 0) return undefined; // no leading zeros (they mean octal to some parsers)
      octet = octet < 0 ? c - 48 : octet * 10 + c - 48;
      if (octet > 255) return undefined;
    } else {
      return undefined;
    }
  }
  if (dots !== 3 || octet < 0) return undefined;
  return value * 256 + octet;
}

/** The first address inside private/loopback/link-local space, or null (IPv4 by number: cheap enough per query). */
export function firstInsideAddress(ranges: RebindingRanges, addresses: readonly string[]): string | null {
  for (const address of addresses) if (isBlockedAddress(ranges, address)) return address;
  return null;
}

export function isBlockedAddress(ranges: RebindingRanges, address: string): boolean {
  const v4 = ipv4Number(address);
  if (v4 !== undefined) return insideV4(ranges, v4);
  if (!isIPv6(address)) return false;
  const lower = address.toLowerCase();
  // IPv4-mapped (::ffff:a.b.c.d) reaches the v4 host: judge the embedded address.
  if (lower.startsWith('::ffff:')) {
    const mapped = ipv4Number(lower.slice(7));
    if (mapped !== undefined) return insideV4(ranges, mapped);
  }
  return ranges.v6.check(lower, 'ipv6');
}

function insideV4(ranges: RebindingRanges, address: number): boolean {
  for (const [network, mask] of ranges.v4) if (((address & mask) >>> 0) === network) return true;
  return false;
}
