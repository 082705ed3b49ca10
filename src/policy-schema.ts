// Config schema for the `policy` and `scoring` sections (owned by the policy/scoring work).
import { z } from 'zod';

export const policySchema = z
  .object({
    mode: z.enum(['enforce', 'observe']).default('enforce'),
  })
  .strict();

export const scoringSchema = z.object({}).strict();
