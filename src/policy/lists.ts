// The lists a name is checked against before it is scored: the public resolvers and callback services
// denied by default, and the zone walk every list uses. Data and one pure function; never decides a verdict
// (the judge does) and never reads files.

/**
 * Public DNS-over-HTTPS/TLS resolvers: a library that reaches one bypasses dnswarden entirely (DoH rides on 443),
 * so their names are denied by default (`policy.deny_public_resolvers`).
 */
export const PUBLIC_RESOLVERS: readonly string[] = [
  'dns.google', 'dns.google.com', '8888.google', 'dns64.dns.google',
  'cloudflare-dns.com', 'one.one.one.one', '1dot1dot1dot1.cloudflare-dns.com', 'cloudflare-gateway.com',
  'dns.quad9.net', 'dns9.quad9.net', 'dns10.quad9.net', 'dns11.quad9.net', 'dns12.quad9.net',
  'doh.opendns.com', 'dns.opendns.com', 'doh.familyshield.opendns.com', 'dns.umbrella.com',
  'dns.adguard.com', 'dns.adguard-dns.com', 'dns-unfiltered.adguard.com', 'dns-family.adguard.com',
  'dns.nextdns.io', 'doh.cleanbrowsing.org', 'doh.dns.sb', 'dns.sb', 'dns.alidns.com', 'doh.pub', 'dns.pub', 'doh.360.cn',
  'dns.controld.com', 'freedns.controld.com', 'doh.mullvad.net', 'dns.mullvad.net',
  'dns0.eu', 'dns.digitale-gesellschaft.ch', 'dns.switch.ch', 'odvr.nic.cz', 'doh.libredns.gr', 'doh.ffmuc.net',
  'ordns.he.net', 'public.dns.iij.jp', 'dns.twnic.tw', 'doh.applied-privacy.net', 'dns.njal.la', 'dns.rubyfish.cn',
  // Firefox's canary domain: NXDOMAIN here tells it the network filters DNS, and it keeps DoH off (RFC-less, Mozilla's documented signal).
  'use-application-dns.net',
];

/**
 * Out-of-band callback services (`policy.deny_callback_services`): the receivers of blind-injection and
 * exfiltration tests log every DNS query below a per-user subdomain and show it to whoever holds it, so one
 * lookup below them delivers its labels with no nameserver of the attacker's own. Also the dynamic-DNS
 * domains whose free subdomains may be delegated (NS) to any server: a tenant's nameserver reads its labels.
 * Extended with `policy.callback_services`, all of it lifted by `deny_callback_services: false`.
 */
export const CALLBACK_SERVICES: readonly string[] = [
  // ProjectDiscovery interactsh (public servers and the project's own)
  'oast.pro', 'oast.live', 'oast.site', 'oast.online', 'oast.fun', 'oast.me', 'interact.sh', 'interactsh.com',
  // Burp Collaborator (PortSwigger's public server)
  'burpcollaborator.net', 'oastify.com',
  // dnslog-style receivers, request bins with a DNS log, canary tokens
  'dnslog.cn', 'dnslog.link', 'dnslog.pw', 'ceye.io', 'requestbin.net', 'requestrepo.com', 'dig.pm', 'eyes.sh', 'bxss.me',
  'canarytokens.com', 'canarytokens.org',
  // FreeDNS (afraid.org) shared domains: any user may add NS records for a free subdomain
  'mooo.com', 'chickenkiller.com', 'crabdance.com', 'ignorelist.com', 'jumpingcrab.com', 'strangled.net', 'twilightparadox.com', 'us.to',
];

/** True when `name` is a listed zone or below one (a Set walk, no regex). */
export function inZones(name: string, zones: ReadonlySet<string>): boolean {
  if (zones.size === 0) return false;
  let suffix = name;
  for (;;) {
    if (zones.has(suffix)) return true;
    const dot = suffix.indexOf('.');
    if (dot === -1) return false;
    suffix = suffix.slice(dot + 1);
  }
}
