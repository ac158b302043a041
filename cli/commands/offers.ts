/** `search`: the offers a config would rent, cheapest first, with price and specs. */
import path from 'node:path';
import type { CAC } from 'cac';
import { loadConfigFile } from '../../core/config/config.js';
import { supervisor } from '../client.js';
import { money, printJson, printLine, table } from '../format.js';

export function registerOfferCommands(cli: CAC): void {
  cli
    .command('search <config>', 'List the Vast.ai offers a config would rent from, under its price cap, cheapest first')
    .option('--limit <n>', 'How many offers to show', { default: 20 })
    .option('--json', 'Print {offers, max_price_per_hour} as JSON')
    .example('vai-mcp-cli search examples/vast-comfy.json')
    .action(async (file: string, opts: { limit: unknown; json?: boolean }) => {
      const config = loadConfigFile(path.resolve(file));
      const limit = Math.max(1, Math.min(100, Number(opts.limit) || 20));
      const r = await (await supervisor()).searchOffers({ config, limit });
      if (opts.json) return printJson(r);
      const rows = r.offers.map((o, i) => [
        String(i),
        String(o.offer_id),
        `${o.num_gpus}x ${o.gpu_name}${o.gpu_ram_gb ? ` ${o.gpu_ram_gb} GB` : ''}`,
        money(o.dph_total),
        o.inet_down_cost === null ? '-' : `$${o.inet_down_cost.toFixed(4)}/GB`,
        o.inet_down_mbps === null ? '-' : `${Math.round(o.inet_down_mbps)} Mb/s`,
        o.reliability === null ? '-' : o.reliability.toFixed(3),
        o.geolocation ?? '-',
        o.direct_ssh ? 'yes' : 'no',
      ]);
      printLine(table(['GPU_INDEX', 'OFFER', 'GPU', 'PRICE', 'DOWNLOAD', 'DOWN SPEED', 'RELIABILITY', 'LOCATION', 'DIRECT SSH'], rows));
      printLine(`Total: ${r.offers.length} offer(s) at or under ${money(r.max_price_per_hour)}; instance_config.gpu_index picks one (0 = the first).`);
    });
}
