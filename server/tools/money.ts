/** get_budget: what the paid boxes have spent against the budget, as `vai-mcp-cli budget --json` prints it. */
import { z } from 'zod';
import { BudgetViewSchema } from '../../core/api/views.js';
import { defineTool } from '../tool.js';

export const moneyTools = [
  defineTool({
    name: 'get_budget',
    title: 'Spending budget',
    description: 'What the paid boxes of this machine have spent since the budget was counted from, the budget (limit_usd) and what remains, the burn rate of the live boxes and when the budget runs out at that rate, and the Vast.ai account credit. Check it before renting. Only the user changes the budget (`vai-mcp-cli budget --set USD`).',
    input: z.strictObject({}),
    output: BudgetViewSchema,
    annotations: { readOnlyHint: true, openWorldHint: true },
    handle: (_args, ctx) => ctx.api.getBudget({}),
  }),
];
