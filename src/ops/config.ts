// The config file: YAML → validated, defaulted, frozen Config. Every field has a default so
// `dnswarden serve` runs with no file; unknown keys are errors; an error names the field path
// (`upstreams[1].address: expected "host:port"`). Never reads anything but the file it is given.
import { readFileSync } from 'node:fs';
import { isIP, BlockList } from 'node:net';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError, messageOf } from '../errors.js';
import { policySchema, scoringSchema, SESSION_TYPES, zoneFileSchema } from '../policy/schema.js';
import { domainAgeSchema } from '../domain-age/schema.js';
import { alertsSchema } from '../analyst/alerts-schema.js';

/** Splits "host:port" / "[v6]:port" into parts; undefined when it is not one. */
export function splitHostPort(value: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  if (match === null) return undefined;
  const host = (match[1] ?? match[2])!;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  if (match[1] !== undefined && isIP(host) !== 6) return undefined;
  return { host, port };
}

const ipHostPort = z.string().refine((v) => {
  const hp = splitHostPort(v);
  return hp !== undefined && isIP(hp.host) !== 0;
}, { message: 'expected "ip:port" with a literal IP address (IPv6 as "[::1]:53")' });

/** "10.0.0.0/8", "::1", "127.0.0.1" (a bare address means a single host). */
export function parseCidr(value: string): { address: string; prefix: number; family: 4 | 6 } | undefined {
  const [address, prefixText, extra] = value.split('/');
  if (address === undefined || extra !== undefined) return undefined;
  const family = isIP(address);
  if (family === 0) return undefined;
  const max = family === 4 ? 32 : 128;
  if (prefixText === undefined) return { address, prefix: max, family: family as 4 | 6 };
  if (!/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > max) return undefined;
  return { address, prefix, family: family as 4 | 6 };
}

export const cidr = z.string().refine((v) => parseCidr(v) !== undefined, {
  message: 'expected an IP address or CIDR, e.g. "10.0.0.0/8" or "::1"',
});

export const sessionTypeSchema = z.enum(SESSION_TYPES);

const staticSessionSchema = z
  .object({
    id: z.string().min(1).max(128),
    addresses: z.array(cidr).min(1),
    type: sessionTypeSchema.default('interactive'),
    user: z.string().min(1).default('unknown'),
    role: z.string().min(1).default('agent'),
  })
  .strict();

const signingKeySchema = z
  .object({
    kid: z.string().min(1),
    alg: z.enum(['HS256', 'EdDSA']),
    secret: z.string().min(32, 'HS256 secrets must be at least 32 characters').optional(),
    secret_file: z.string().min(1).optional(),
    public_key: z.string().min(1).optional(),
    public_key_file: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((key, ctx) => {
    const hasSecret = key.secret !== undefined || key.secret_file !== undefined;
    const hasPublic = key.public_key !== undefined || key.public_key_file !== undefined;
    if (key.alg === 'HS256' && !hasSecret) ctx.addIssue({ code: 'custom', path: ['secret'], message: 'HS256 keys need secret or secret_file' });
    if (key.alg === 'EdDSA' && !hasPublic) ctx.addIssue({ code: 'custom', path: ['public_key'], message: 'EdDSA keys need public_key or public_key_file (PEM, SPKI)' });
  });

// Named API tokens: the name is what the audit log records as the actor.
const apiTokenSchema = z
  .object({
    name: z.string().min(1).max(64),
    token: z.string().min(16, 'API tokens must be at least 16 characters').optional(),
    token_file: z.string().min(1).optional(),
    kind: z.enum(['admin', 'analyst', 'viewer', 'runtime']),
  })
  .strict()
  .refine((t) => (t.token === undefined) !== (t.token_file === undefined), { message: 'give exactly one of token or token_file', path: ['token'] });

const upstreamSchema = z
  .object({
    address: ipHostPort,
    timeout_ms: z.number().int().min(10).max(30_000).default(1000),
  })
  .strict();

/** Two static sessions with one id, or with overlapping addresses: a query could not say whose it is. */
function staticSessionsConflicts(statics: readonly StaticSession[], ctx: z.core.$RefinementCtx): void {
  const seen = new Map<string, number>();
  const lists: BlockList[] = [];
  for (const [i, s] of statics.entries()) {
    const first = seen.get(s.id);
    if (first !== undefined) ctx.addIssue({ code: 'custom', path: ['static', i, 'id'], message: `duplicate static session id "${s.id}" (also static[${first}])` });
    seen.set(s.id, first ?? i);
    const list = new BlockList();
    const addresses = s.addresses.filter((c) => parseCidr(c) !== undefined); // a bad one has its own issue
    for (const c of addresses) {
      const p = parseCidr(c)!;
      list.addSubnet(p.address, p.prefix, p.family === 4 ? 'ipv4' : 'ipv6');
    }
    // Two ranges overlap exactly when one contains the other.
    for (const [j, other] of lists.entries()) {
      const clash = addresses.find((c) => containsNetwork(other, c)) ?? statics[j]!.addresses.find((c) => parseCidr(c) !== undefined && containsNetwork(list, c));
      if (clash !== undefined) ctx.addIssue({ code: 'custom', path: ['static', i, 'addresses'], message: `overlaps the addresses of static[${j}] ("${statics[j]!.id}") at ${clash}` });
    }
    lists.push(list);
  }
}

/** `range` (any address in it stands for it) lies in `list`: CIDRs either nest or are disjoint. */
function containsNetwork(list: BlockList, range: string): boolean {
  const p = parseCidr(range)!;
  return list.check(p.address, p.family === 4 ? 'ipv4' : 'ipv6');
}

/** A zone name as written in config: lower-cased, one trailing dot dropped. */
const dnsName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/, 'expected a DNS name such as "ad.example.com"')
  .transform((s) => {
    const lower = s.toLowerCase();
    return lower.endsWith('.') ? lower.slice(0, -1) : lower;
  });

// Conditional forwarding: names at or below `name` go to these upstreams instead (src/dns/forward.ts).
const forwardZoneSchema = z
  .object({
    name: dnsName,
    upstreams: z.array(upstreamSchema).min(1),
  })
  .strict();

const configSchema = z
  .object({
    listen: z
      .object({
        dns: z.array(ipHostPort).min(1).default(['127.0.0.1:5353']),
        admin: ipHostPort.default('127.0.0.1:9153'),
      })
      .strict()
      .prefault({}),
    admin: z
      .object({
        token: z.string().min(16, 'admin tokens must be at least 16 characters').optional(),
        tokens: z.array(apiTokenSchema).default([]),
      })
      .strict()
      .prefault({}),
    storage: z
      .object({
        dir: z.string().min(1).default('data'),
        history_max_sessions: z.number().int().min(1).default(1000),
        quarantine_retention_days: z.number().int().min(1).default(365),
      })
      .strict()
      .prefault({}),
    // The searchable on-disk log of every session's queries (src/analyst/query-log.ts).
    query_log: z
      .object({
        enabled: z.boolean().default(true),
        max_rows: z.number().int().min(1000).max(100_000_000).default(1_000_000),
        max_age_days: z.number().int().min(1).max(3650).default(30),
      })
      .strict()
      .prefault({}),
    upstreams: z.array(upstreamSchema).min(1).optional(),
    forward_zones: z.array(forwardZoneSchema).superRefine((zones, ctx) => {
      const seen = new Set<string>();
      zones.forEach((zone, i) => {
        if (seen.has(zone.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `"${zone.name}" is listed twice` });
        seen.add(zone.name);
      });
    }).default([]),
    // Local zones answered authoritatively (src/zones/); `file` relative to the config file's directory.
    zones: z.array(zoneFileSchema).default([]).refine((zs) => new Set(zs.map((z) => z.name)).size === zs.length, { message: 'each zone name may appear only once' }),
    resolver: z
      .object({
        total_timeout_ms: z.number().int().min(50).max(60_000).default(2500),
        queries_per_socket: z.number().int().min(1).max(1000).default(32),
      })
      .strict()
      .prefault({}),
    cache: z
      .object({
        max_entries: z.number().int().min(0).default(30_000),
        max_ttl_s: z.number().int().min(0).default(86_400),
        negative_max_ttl_s: z.number().int().min(0).default(3600),
        servfail_ttl_s: z.number().int().min(0).max(30).default(3),
        // RFC 8767: expired answers served (with EDE 3) when every upstream fails (src/dns/cache.ts).
        serve_stale: z
          .object({
            enabled: z.boolean().default(false),
            max_stale_s: z.number().int().min(1).max(7 * 86_400).default(86_400),
            answer_ttl_s: z.number().int().min(1).max(3600).default(30),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    server: z
      .object({
        udp_payload_size: z.number().int().min(512).max(4096).default(1232),
        tcp_idle_timeout_ms: z.number().int().min(100).max(600_000).default(10_000),
        tcp_frame_timeout_ms: z.number().int().min(100).max(600_000).default(5000),
        tcp_max_connections: z.number().int().min(1).max(65_535).default(512),
        tcp_max_connections_per_source: z.number().int().min(1).max(65_535).default(64),
        tcp_max_inflight_per_connection: z.number().int().min(1).max(1024).default(64),
        // RRL for refusals over UDP (src/dns/refusal-limit.ts): per_second 0 turns it off.
        refused_rate_limit: z
          .object({
            per_second: z.number().int().min(0).max(1_000_000).default(20),
            slip: z.number().int().min(0).max(100).default(2),
            ipv4_prefix: z.number().int().min(8).max(32).default(24),
            ipv6_prefix: z.number().int().min(16).max(128).default(56),
            max_prefixes: z.number().int().min(16).max(1_000_000).default(16_384),
          })
          .strict()
          .prefault({}),
        // >1: one process per worker, each client address steered to one of them by the kernel (src/fleet/shard.ts).
        workers: z.number().int().min(1).max(64).default(1),
      })
      .strict()
      .prefault({}),
    sessions: z
      .object({
        static: z.array(staticSessionSchema).default([{ id: 'local', addresses: ['127.0.0.1/32', '::1'], type: 'interactive', user: 'local', role: 'developer' }]),
        signing_keys: z.array(signingKeySchema).default([]),
        max_ttl_s: z.number().int().min(60).default(86_400),
        // A registration claims at most this many addresses in all (256: one IPv4 /24 or IPv6 /120).
        max_addresses_per_session: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).default(256),
        history_per_session: z.number().int().min(0).max(10_000).default(200),
      })
      .strict()
      .superRefine((sessions, ctx) => staticSessionsConflicts(sessions.static, ctx))
      .prefault({}),
    policy: policySchema.prefault({}),
    scoring: scoringSchema.prefault({}),
    domain_age: domainAgeSchema.prefault({}),
    alerts: alertsSchema.prefault({}),
    // Replicas sharing sessions, quarantines and decisions through Redis (src/fleet/redis-fleet.ts); absent: one node.
    fleet: z
      .object({
        name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, "_", "." and "-" only (1–64): it prefixes every Redis key').default('dnswarden'),
        redis: z
          .object({
            url: z.string().refine((u) => { try { const p = new URL(u); return (p.protocol === 'redis:' || p.protocol === 'rediss:') && p.hostname !== ''; } catch { return false; } }, 'must be redis://[user:password@]host:port/db or rediss://…'),
            password_file: z.string().min(1).optional(),
          })
          .strict()
          .optional(),
        // Redis away, a registration's token cannot be checked against the fleet's record of ended sessions. open:
        // accepted, counted, checked when Redis is back (agents register through an outage); closed: refused (503).
        token_check: z.enum(['open', 'closed']).default('open'),
      })
      .strict()
      .refine((f) => f.token_check === 'open' || f.redis !== undefined, { message: 'closed needs fleet.redis (a single node has no fleet record to ask)', path: ['token_check'] })
      .prefault({}),
    logging: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
        refused_interval_s: z.number().positive().max(86_400).default(60),
        // Blocks of one kind from one session within this long: one full line, then one line with a count (0: every block).
        repeat_window_ms: z.number().int().min(0).max(3_600_000).default(10_000),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type StaticSession = z.infer<typeof staticSessionSchema>;
export type SigningKeyConfig = z.infer<typeof signingKeySchema>;
export type UpstreamConfig = z.infer<typeof upstreamSchema>;
export type ForwardZoneConfig = z.infer<typeof forwardZoneSchema>;
export type ApiTokenConfig = z.infer<typeof apiTokenSchema>;

/** `upstreams[1].address` from zod's path array. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

function describeIssue(issue: z.core.$ZodIssue): { path: string; message: string } {
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys;
    const parent = formatPath(issue.path);
    const first = keys[0] ?? '';
    return { path: parent === '' ? first : `${parent}.${first}`, message: `unknown key${keys.length > 1 ? `s ${keys.join(', ')}` : ''}` };
  }
  return { path: formatPath(issue.path), message: issue.message };
}

/**
 * Validates a parsed YAML document (or {}/null for "no file"); throws ConfigError naming the field.
 * Zone and RPZ file names are made absolute against `baseDir` (the config file's directory; the working
 * directory when there is no file), so a reload from another directory reads the same files.
 */
export function parseConfig(raw: unknown, baseDir: string = process.cwd()): Config {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const { path, message } = describeIssue(issue);
    throw new ConfigError(path, message);
  }
  const data = result.data;
  for (const zone of [...data.zones, ...data.policy.rpz]) zone.file = resolve(baseDir, zone.file);
  return deepFreeze(data);
}

/**
 * A config file's text. An empty one (or only whitespace/comments) is refused: it is far more likely a
 * truncated write than a wish for the embedded defaults, which would drop every token, key and static
 * session on SIGHUP. The defaults apply only when no file is given (parseConfig({})).
 */
export function parseConfigText(text: string, source = 'the config file', baseDir?: string): Config {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError('', `not valid YAML: ${messageOf(err)}`);
  }
  if (raw === null || raw === undefined) {
    throw new ConfigError('', `${source}: the file is empty (or only comments): refusing it (a truncated write?); run without a config file for the embedded defaults`);
  }
  return parseConfig(raw, baseDir);
}

export function loadConfigFile(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('', `cannot read config file ${path}: ${messageOf(err)}`);
  }
  return parseConfigText(text, path, dirname(resolve(path)));
}

/** The configured upstreams, else the embedded default: resolv.conf's nameservers (a clear error when there are none). */
export function upstreamsFor(config: Config, resolvConfPath: string): Config['upstreams'] & object {
  if (config.upstreams !== undefined) return config.upstreams;
  let text = '';
  try {
    text = readFileSync(resolvConfPath, 'utf8');
  } catch (err) {
    throw new ConfigError('upstreams', `none configured and ${resolvConfPath} cannot be read: ${messageOf(err)}`);
  }
  const found = resolvConfUpstreams(text);
  if (found.length === 0) throw new ConfigError('upstreams', `none configured and ${resolvConfPath} lists no nameserver`);
  return found.map((address) => ({ address, timeout_ms: 1000 }));
}

/** `nameserver` lines of resolv.conf, as "ip:53" upstream entries; the embedded default for upstreams. */
export function resolvConfUpstreams(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const match = /^\s*nameserver\s+(\S+)/.exec(line);
    if (match === null) continue;
    const address = match[1]!.split('%')[0]!; // drop an IPv6 zone index
    const family = isIP(address);
    if (family === 4) out.push(`${address}:53`);
    else if (family === 6) out.push(`[${address}]:53`);
  }
  return out;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as object)) deepFreeze(child);
  }
  return value;
}
