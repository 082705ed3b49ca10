// Config schema for the `policy` and `scoring` sections: every field defaulted, unknown keys rejected,
// snake_case keys (the same strings as the README and the error paths). Nested objects use .prefault({}) so
// their inner defaults apply (zod 4).
import { z } from 'zod';
import { DEFAULT_WEIGHTS } from '../../scoring/index.js';

/**
 * The session types: the one list (config, registration claims, replay input and the metric labels are validated
 * against it, through `sessionTypeSchema` in src/ops/config.ts or z.enum of this list).
 */
export const SESSION_TYPES = ['interactive', 'batch', 'scheduled'] as const;
export type SessionType = (typeof SESSION_TYPES)[number];

/** A zone or host name as written in config: lower-cased, one trailing dot dropped. */
const zoneName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9_*.-]+\.?$/, 'expected a DNS name such as "corp.example.com"')
  .transform((s) => {
    const lower = s.toLowerCase();
    return lower.endsWith('.') ? lower.slice(0, -1) : lower;
  });

/** A zone file named in config: `zones[]` (local zones) and `policy.rpz[]` (response policy zones). */
export const zoneFileSchema = z
  .object({
    name: zoneName.refine((n) => !n.includes('*'), { message: 'a zone name has no wildcard' }),
    file: z.string().min(1),
  })
  .strict();

interface TypeDefaults {
  readonly block_at: number;
  readonly quarantine_after_blocks: number;
  readonly volume_budget_bytes: number;
  readonly young_volume_budget_bytes: number;
  readonly session_volume_budget_bytes: number;
  readonly bandwidth_bytes_per_min: number;
  readonly encoded_volume_budget_bytes: number;
  readonly total_volume_budget_bytes: number;
  readonly repeat_volume_budget_bytes: number;
}

// Interactive research is looser; batch and scheduled jobs have no human watching and get tighter budgets.
// Budgets are in *estimated* compressed bytes (scoring/window.ts), which runs 7–30% above deflate on the
// exfiltration corpus; interactive 960 leaves a margin below 1 KB of deflated information.
// Measured on fixtures/corpora (see fixtures/corpora/README.md).
export const SESSION_TYPE_DEFAULTS: Readonly<Record<SessionType, TypeDefaults>> = {
  interactive: { block_at: 0.75, quarantine_after_blocks: 3, volume_budget_bytes: 960, young_volume_budget_bytes: 1920, session_volume_budget_bytes: 1024, bandwidth_bytes_per_min: 768, encoded_volume_budget_bytes: 448, total_volume_budget_bytes: 2048, repeat_volume_budget_bytes: 448 },
  batch: { block_at: 0.7, quarantine_after_blocks: 2, volume_budget_bytes: 768, young_volume_budget_bytes: 1536, session_volume_budget_bytes: 896, bandwidth_bytes_per_min: 640, encoded_volume_budget_bytes: 432, total_volume_budget_bytes: 1280, repeat_volume_budget_bytes: 432 },
  scheduled: { block_at: 0.7, quarantine_after_blocks: 2, volume_budget_bytes: 768, young_volume_budget_bytes: 1536, session_volume_budget_bytes: 896, bandwidth_bytes_per_min: 640, encoded_volume_budget_bytes: 432, total_volume_budget_bytes: 1280, repeat_volume_budget_bytes: 432 },
};

const sessionTypePolicy = (d: TypeDefaults) =>
  z
    .object({
      mode: z.enum(['inherit', 'enforce', 'observe']).default('inherit'),
      block_at: z.number().min(0).default(d.block_at),
      quarantine_after_blocks: z.number().int().min(1).max(16).default(d.quarantine_after_blocks),
      block_window_ms: z.number().int().positive().default(600_000),
      volume_budget_bytes: z.number().positive().default(d.volume_budget_bytes),
      young_volume_budget_bytes: z.number().positive().default(d.young_volume_budget_bytes),
      // Per-session token bucket (src/sessions/rate-limit.ts); qps 0: no limit (the default).
      rate_limit: z
        .object({
          qps: z.number().min(0).max(1_000_000).default(0),
          burst: z.number().int().min(0).max(1_000_000).default(0), // 0: ceil(qps), at least 1
        })
        .strict()
        .prefault({}),
      session_volume_budget_bytes: z.number().positive().default(d.session_volume_budget_bytes),
      bandwidth_bytes_per_min: z.number().positive().default(d.bandwidth_bytes_per_min),
      encoded_volume_budget_bytes: z.number().positive().default(d.encoded_volume_budget_bytes),
      total_volume_budget_bytes: z.number().positive().default(d.total_volume_budget_bytes),
      repeat_volume_budget_bytes: z.number().positive().default(d.repeat_volume_budget_bytes),
    })
    .strict();

export const policySchema = z
  .object({
    // false: no judging at all (lists, scoring, rebinding), only sessions, quarantine gate and cache —
    // the benchmark's baseline for what scoring costs; never for production.
    enabled: z.boolean().default(true),
    mode: z.enum(['enforce', 'observe']).default('enforce'),
    session_types: z
      .object({
        interactive: sessionTypePolicy(SESSION_TYPE_DEFAULTS.interactive).prefault({}),
        batch: sessionTypePolicy(SESSION_TYPE_DEFAULTS.batch).prefault({}),
        scheduled: sessionTypePolicy(SESSION_TYPE_DEFAULTS.scheduled).prefault({}),
      })
      .strict()
      .prefault({}),
    allow: z.array(zoneName).default([]),
    deny: z.array(zoneName).default([]),
    deny_public_resolvers: z.boolean().default(true),
    // Response policy zones, applied in this order (first match wins); `name` labels metrics and EDE text.
    rpz: z.array(zoneFileSchema).default([]).refine((zs) => new Set(zs.map((z) => z.name)).size === zs.length, { message: 'each policy zone name may appear only once' }),
    deny_callback_services: z.boolean().default(true),
    callback_services: z.array(zoneName).default([]),
    rebinding: z
      .object({
        enabled: z.boolean().default(true),
        allow: z.array(zoneName).default([]),
        block_cgnat: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const weight = (d: number) => z.number().min(0).max(10).default(d);

export const scoringSchema = z
  .object({
    weights: z
      .object({
        label_entropy: weight(DEFAULT_WEIGHTS.label_entropy),
        char_class: weight(DEFAULT_WEIGHTS.char_class),
        name_length: weight(DEFAULT_WEIGHTS.name_length),
        domain_age: weight(DEFAULT_WEIGHTS.domain_age),
        qtype: weight(DEFAULT_WEIGHTS.qtype),
        fanout: weight(DEFAULT_WEIGHTS.fanout),
        info_volume: weight(DEFAULT_WEIGHTS.info_volume),
        nx_ratio: weight(DEFAULT_WEIGHTS.nx_ratio),
      })
      .strict()
      .prefault({}),
    unknown_age_value: z.number().min(0).max(1).default(0.3),
    young_domain_days: z.number().positive().default(30),
    fanout_window_ms: z.number().int().positive().default(600_000),
    fanout_high: z.number().positive().default(60),
    volume_idle_ms: z.number().int().positive().default(86_400_000),
    volume_high_bytes: z.number().positive().default(1024),
    platforms: z.array(zoneName).default([]),
    platform_defaults: z.boolean().default(true),
    max_domains_per_session: z.number().int().min(1).max(100_000).default(256),
    max_names_per_session: z.number().int().min(1).max(1_000_000).default(4096),
    max_grams_per_session: z.number().int().min(1).max(1_000_000).default(16_384),
    // A known name (or bare domain) that leaves again sooner than this had no answer cached that long (TTL 0, or under
    // the floor): the choice of its domain and of A/AAAA/HTTPS are charged to the repeat budget too (scoring/window.ts).
    repeat_floor_ms: z.number().int().min(0).max(3_600_000).default(120_000),
    // Suffixes only the operator's own DNS answers (no public registry delegates them, RFC 6762, 8375; ICANN's
    // .internal): their repeats are not charged — service discovery (Consul answers with TTL 0) polls them.
    internal_suffixes: z.array(zoneName).default(['internal', 'local', 'home.arpa', 'lan', 'corp', 'consul']),
  })
  .strict();

export type PolicyConfig = z.infer<typeof policySchema>;
export type ScoringConfig = z.infer<typeof scoringSchema>;
export type SessionTypePolicy = PolicyConfig['session_types']['interactive'];
