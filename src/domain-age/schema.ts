// Config schema for the `domain_age` section: where registration dates come from (RDAP, WHOIS,
// an offline feed, first sighting), how long a query may wait for one, and how results are cached.
// Defaults are safe offline: the section is off until `enabled: true`. Never performs I/O.
import { z } from 'zod';

const DAY_SEC = 86_400;

/** "whois.example" or "host:port" / "[v6]:port"; the port defaults to 43. */
const whoisServer = z
  .string()
  .regex(/^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/, { message: 'expected "host" or "host:port" (IPv6 as "[::1]:43")' });

/** TLD (or longer suffix) keys: lower-case labels without the leading dot. */
const suffixKey = z.string().regex(/^[a-z0-9-]+(?:\.[a-z0-9-]+)*$/, { message: 'expected a lower-case TLD without a dot, e.g. "com"' });

const httpUrl = z.string().regex(/^https?:\/\/\S+$/, { message: 'expected an http:// or https:// URL' });

export const domainAgeSchema = z
  .object({
    enabled: z.boolean().default(false),
    budget_ms: z.number().int().min(0).max(5000).default(50),
    max_concurrent: z.number().int().min(1).max(256).default(8),
    max_queued: z.number().int().min(0).max(100_000).default(1000),
    cache_size: z.number().int().min(1).max(10_000_000).default(100_000),
    positive_ttl_sec: z.number().int().min(1).default(7 * DAY_SEC),
    negative_ttl_sec: z.number().int().min(1).default(3600),
    rdap: z
      .object({
        enabled: z.boolean().default(true),
        timeout_ms: z.number().int().min(1).max(60_000).default(2000),
        max_response_bytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(256 * 1024),
        servers: z.record(suffixKey, httpUrl).default({}),
        bootstrap_file: z.string().default(''),
        bootstrap_url: z.string().default(''),
        bootstrap_refresh_sec: z.number().int().min(60).default(DAY_SEC),
      })
      .strict()
      .prefault({}),
    whois: z
      .object({
        enabled: z.boolean().default(true),
        timeout_ms: z.number().int().min(1).max(60_000).default(3000),
        servers: z.record(suffixKey, whoisServer).default({}),
      })
      .strict()
      .prefault({}),
    feed: z
      .object({
        path: z.string().default(''),
      })
      .strict()
      .prefault({}),
    first_seen: z
      .object({
        enabled: z.boolean().default(true),
        min_history_days: z.number().int().min(0).max(3650).default(30),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type DomainAgeConfig = z.infer<typeof domainAgeSchema>;
