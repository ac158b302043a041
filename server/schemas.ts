/** Output shapes of the tools: core's views (the same objects as the CLI's `--json`), and the summary lines for a model. */
import { z } from 'zod';
import { InstanceViewSchema } from '../core/api/views.js';

export const InstancesOutput = z.object({
  instances: z.array(InstanceViewSchema),
  summary: z.string().describe('What happened, and what to do next'),
});
