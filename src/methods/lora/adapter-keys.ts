// Keys every PEFT adapter config shares, with the same schema in each method that reads one.
import { z } from 'zod';

export const adapterKeys = {
  adapter_name: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, 'adapter names are letters, digits, _ and - (they become part of param names)')
    .default('default'),
  /** Accepted for PEFT compatibility; not used. */
  task_type: z.string().nullable().optional(),
};
