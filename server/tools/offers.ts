/** search_offers: what a Vast.ai config would rent, before renting anything. */
import { z } from 'zod';
import { loadConfigFile, parseConfig, resolveConfigPaths } from '../../core/config/config.js';
import { badInput } from '../../core/lib/errors.js';
import { OfferViewSchema } from '../../core/api/views.js';
import { argPath } from '../paths.js';
import { defineTool } from '../tool.js';


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
    output: z.object({ offers: z.array(OfferViewSchema), max_price_per_hour: z.number() }),
    annotations: { readOnlyHint: true, openWorldHint: true },
    async handle(args, ctx) {
      if (!args.config === !args.config_path) throw badInput('Give exactly one of config or config_path.', 'For example: {"config": {"provider": "vast", "instance_config": {"gpu_name": "RTX 4090"}}}.');
      const config = args.config_path ? loadConfigFile(argPath(ctx.cwd, args.config_path, 'config_path')) : resolveConfigPaths(parseConfig(args.config, 'config'), ctx.cwd);
      return ctx.api.searchOffers({ config, limit: args.limit });
    },
  }),
];
