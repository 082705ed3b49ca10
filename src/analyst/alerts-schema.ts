// Config schema for the `alerts` section: where quarantine events are delivered.
import { z } from 'zod';

const webhookSchema = z
  .object({
    url: z.url({ protocol: /^https?$/ }),
    format: z.enum(['json', 'alertmanager']).default('json'),
    timeout_ms: z.number().int().min(100).max(60_000).default(5000),
    headers: z.record(z.string(), z.string()).default({}),
  })
  .strict();

export const alertsSchema = z
  .object({
    webhooks: z.array(webhookSchema).default([]),
    retry_initial_ms: z.number().int().min(10).default(500),
    retry_max_ms: z.number().int().min(100).default(60_000),
  })
  .strict();

export type AlertsConfig = z.infer<typeof alertsSchema>;
