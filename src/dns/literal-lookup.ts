// The one dgram option both our listening and our upstream sockets need.

/**
 * dgram's lookup for an address that is already an IP literal (upstreams are validated as such, and a
 * reply goes to the address a packet came from): answers at once, where dns.lookup would validate and
 * defer every bind, connect and send to the next tick.
 */
export function literalLookup(address: string, _family: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  callback(null, address, address.includes(':') ? 6 : 4);
}
