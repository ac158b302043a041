/** search_offers: what a Vast.ai config would rent, before renting anything. */
import { z } from 'zod';
import { loadConfigFile, parseConfig, resolveConfigPaths } from '../../core/config/config.js';
import { badInput } from '../../core/lib/errors.js';
import { argPath } from '../paths.js';
import { defineTool } from '../tool.js';

const OfferSchema = z.object({
  offer_id: z.number(),
  gpu_name: z.string(),
  num_gpus: z.number(),
  gpu_ram_gb: z.number().nullable(),
  dph_total: z.number().describe('$/hour billed, storage included'),
  inet_down_cost: z.number().nullable(),
  inet_down_mbps: z.number().nullable(),
  inet_up_mbps: z.number().nullable(),
  reliability: z.number().nullable(),
  geolocation: z.string().nullable(),
  disk_space_gb: z.number().nullable(),
  direct_ssh: z.boolean(),
});

export const offerTools = [
  defineTool({
    name: 'search_offers',
    title: 'Search GPU offers',
    description: 'List the Vast.ai offers a config would rent from, under its price cap, cheapest first (price per hour with storage, GPU, bandwidth, reliability, location). Nothing is rented. Use it to show the user prices before create_instance with provider "vast".',
    input: z.strictObject({
      config: z.record(z.string(), z.unknown()).optional().describe('A config object, e.g. {"provider": "vast", "instance_config": {"gpu_name": "RTX 4090", "max_price_per_hour": 0.8}}.'),
      config_path: z.string().optional().describe('Path of a config JSON file (absolute is best).'),
      limit: z.number().int().min(1).max(100).default(10).describe('How many offers to return.'),
    }),
    output: z.object({ offers: z.array(OfferSchema), max_price_per_hour: z.number() }),
    annotations: { readOnlyHint: true, openWorldHint: true },
    async handle(args, ctx) {
      if (!args.config === !args.config_path) throw badInput('Give exactly one of config or config_path.', 'For example: {"config": {"provider": "vast", "instance_config": {"gpu_name": "RTX 4090"}}}.');
      const config = args.config_path ? loadConfigFile(argPath(ctx.cwd, args.config_path, 'config_path')) : resolveConfigPaths(parseConfig(args.config, 'config'), ctx.cwd);
      return ctx.api.searchOffers({ config, limit: args.limit });
    },
  }),
];
