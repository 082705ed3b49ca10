// scoring/names.ts — splits a query name into the registrable domain (the owner whose nameservers see the
// query) and the part below it (what the owner can read). Pure: tldts only; never does I/O.
//
// Private suffixes (cloudfront.net, s3.amazonaws.com, herokuapp.com, github.io, …) are honoured only under the
// shipped/configured *platform* apexes: there the platform runs the nameservers and tenants cannot delegate, so
// `d123.cloudfront.net` is its own registrable domain (tenants do not pile up fan-out on cloudfront.net). For
// every other private suffix we split at the ICANN boundary, because anyone can get a private suffix listed in
// the PSL: otherwise `<data>.attacker-suffix.example` would have an empty subdomain and escape scoring.
import { parse } from 'tldts';

export interface SplitName {
  /** The whole name, lower-case, no trailing dot. */
  readonly name: string;
  /** Registrable domain (see header); the name itself when it has none (single label, IP, wildcard suffix). */
  readonly registrable: string;
  /** Everything below `registrable`, '' when nothing. */
  readonly subdomain: string;
  /** Labels in the whole name. */
  readonly labelCount: number;
  /** Labels in `subdomain`. */
  readonly subLabelCount: number;
  /** Length of the longest label of `subdomain`. */
  readonly longestLabel: number;
  /** True when the ICANN registrable domain is a listed platform apex (lexical signals are waived). */
  readonly platform: boolean;
}

/**
 * Multi-tenant platform apexes whose nameservers are run by the platform (tenants cannot delegate a zone),
 * so a long or random-looking name below them cannot carry data to an attacker's nameserver. Measured: these
 * hold almost all long/hash-like names of the popularity corpus (fixtures/corpora/README.md).
 */
export const DEFAULT_PLATFORMS: readonly string[] = [
  'amazonaws.com', 'cloudfront.net', 'a2z.com', 'aws.dev', 'awsglobalaccelerator.com',
  'azure.com', 'azure.net', 'azureedge.net', 'azurefd.net', 'azurewebsites.net', 'windows.net', 'trafficmanager.net',
  'office.net', 'office.com', 'office365.com', 'microsoft.com', 'msedge.net', 'live.com', 'skype.com', 'teams.microsoft.com',
  'googleapis.com', 'googlevideo.com', 'gvt1.com', 'gvt2.com', '1e100.net', 'googleusercontent.com', 'appspot.com', 'cloudfunctions.net', 'run.app',
  'akamaiedge.net', 'akamai.net', 'akamaized.net', 'akamaihd.net', 'edgekey.net', 'edgesuite.net', 'akadns.net',
  'fastly.net', 'fastlylb.net', 'cloudflare.net', 'workers.dev', 'pages.dev',
  'webex.com', 'herokuapp.com', 'github.io', 'githubusercontent.com', 'netlify.app', 'vercel.app',
  // hosted services whose tenant names carry project ids or hashes, answered by the service's own DNS (issue 14:
  // they were most of the benign agent sessions' session-wide information volume)
  'github.dev', 'ngrok-free.app', 'ngrok.app', 'ngrok.io', 'supabase.co', 'firebaseio.com', 'firebaseapp.com', 'web.app', 'auth0.com',
  'snowflakecomputing.com', 'azuredatabricks.net', 'mongodb.net', 'pinecone.io', 'sentry.io',
  // IPFS gateways: the first label is a content id (base32 CIDv1, 59 chars), answered by the gateway's own DNS
  'ipfs.io', 'dweb.link', 'nftstorage.link', 'w3s.link', 'cf-ipfs.com',
];

/** A set built once per config: the platform apexes, lower-case. */
export function platformSet(extra: readonly string[] = [], withDefaults = true): ReadonlySet<string> {
  const out = new Set<string>();
  if (withDefaults) for (const d of DEFAULT_PLATFORMS) out.add(d);
  for (const d of extra) out.add(trimName(d));
  return out;
}

/** Lower-case and drop one trailing dot (config input; query names arrive normalised). */
export function trimName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

const PRIVATE = { allowPrivateDomains: true, extractHostname: false, validateHostname: false } as const;
const ICANN = { allowPrivateDomains: false, extractHostname: false, validateHostname: false } as const;

/** Split `name` (lower-case, no trailing dot) once per query. */
export function splitName(name: string, platforms: ReadonlySet<string>): SplitName {
  const p = parse(name, PRIVATE);
  let registrable = p.domain;
  let platform = false;
  if (p.isPrivate === true) {
    // The private rule only counts when the ICANN owner is a known platform (see header).
    const icann = parse(name, ICANN).domain;
    platform = icann !== null && platforms.has(icann);
    if (!platform) registrable = icann;
    else if (registrable === null) registrable = name; // whole name is a wildcard suffix (ec2-…compute-1.amazonaws.com)
  } else if (registrable !== null) {
    platform = platforms.has(registrable);
  }
  if (registrable === null || registrable.length >= name.length) {
    return { name, registrable: name, subdomain: '', labelCount: countLabels(name), subLabelCount: 0, longestLabel: 0, platform };
  }
  const subdomain = name.slice(0, name.length - registrable.length - 1);
  let longest = 0;
  let run = 0;
  let labels = 1;
  for (let i = 0; i < subdomain.length; i++) {
    if (subdomain.charCodeAt(i) === 46 /* . */) {
      labels++;
      run = 0;
    } else if (++run > longest) longest = run;
  }
  return { name, registrable, subdomain, labelCount: labels + countLabels(registrable), subLabelCount: labels, longestLabel: longest, platform };
}

function countLabels(name: string): number {
  if (name.length === 0) return 0;
  let n = 1;
  for (let i = 0; i < name.length; i++) if (name.charCodeAt(i) === 46) n++;
  return n;
}
