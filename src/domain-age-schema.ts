// Config schema for the `domain_age` section (owned by the domain-age work).
import { z } from 'zod';

export const domainAgeSchema = z
  .object({
    enabled: z.boolean().default(false),
    budget_ms: z.number().int().min(0).max(5000).default(50),
  })
  .strict();
