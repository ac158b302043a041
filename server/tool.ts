/**
 * Tools as data (the Playwright MCP pattern): each tool is a name, a title, a description for the
 * model, zod input and output schemas, annotations and a handler that returns plain data.
 * `registerTools` turns them into MCP tools with one error path and one progress path, so tool
 * files never build MCP objects themselves.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult, ContentBlock, ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { VaiApi } from '../core/api/api.js';
import { toVaiError } from '../core/lib/errors.js';

export interface ToolContext {
  api: VaiApi;
  /** The server's working directory: relative paths in arguments resolve against it. */
  cwd: string;
  /** A human-readable progress message; sent only when the client asked for progress. */
  progress(message: string): void;
  /** Aborted when the client cancels or times out: it ends waits, never the work itself. */
  signal: AbortSignal;
}

export interface ToolDef<In extends z.ZodObject = z.ZodObject, Out extends z.ZodObject = z.ZodObject> {
  name: string;
  title: string;
  description: string;
  input: In;
  output: Out;
  annotations: Omit<ToolAnnotations, 'title'>;
  handle(args: z.infer<In>, ctx: ToolContext): Promise<z.infer<Out>>;
  /** Content blocks to send after the JSON text, e.g. small output images inline. */
  extraContent?(out: z.infer<Out>): Promise<ContentBlock[]>;
}

/** Keeps each tool's argument and result types while collecting them in one array. */
export function defineTool<In extends z.ZodObject, Out extends z.ZodObject>(def: ToolDef<In, Out>): ToolDef {
  return def as unknown as ToolDef;
}

/** A failure as the model should read it: what went wrong, then what to do next, in tool words. */
export function errorResult(err: unknown): CallToolResult {
  const e = toVaiError(err);
  const hint = e.agentHint ?? e.hint;
  const text = hint ? `${e.message}\nNext step: ${hint}` : e.message;
  return { isError: true, content: [{ type: 'text', text }] };
}

/** Every result may carry the money warnings (80% of the budget spent, a money action that failed). */
const WARNINGS = z.array(z.string()).optional().describe('Money warnings to pass on to the user: 80% or more of the budget spent, a stop that failed');

export function registerTools(server: McpServer, tools: ToolDef[], api: VaiApi, cwd: string): void {
  for (const tool of tools) {
    const output = 'warnings' in tool.output.shape ? tool.output : tool.output.extend({ warnings: WARNINGS });
    server.registerTool(
      tool.name,
      {
        title: tool.title,
        description: tool.description,
        inputSchema: tool.input,
        outputSchema: output,
        annotations: { title: tool.title, ...tool.annotations },
      },
      async (args: unknown, extra) => {
        const token = extra._meta?.progressToken;
        let step = 0;
        let finished = false;
        let lastMessage: string | undefined;
        let sending: Promise<unknown> = Promise.resolve();
        const progress = (message: string) => {
          if (token === undefined || finished || message === lastMessage) return;
          lastMessage = message;
          step += 1;
          const params = { progressToken: token, progress: step, message };
          sending = sending.then(() => extra.sendNotification({ method: 'notifications/progress', params }).catch(() => undefined));
        };
        try {
          const out = (await tool.handle(args as never, { api, cwd, progress, signal: extra.signal })) as Record<string, unknown>;
          if (!('warnings' in out)) {
            const warnings = await api.moneyWarnings({}).catch(() => []);
            if (warnings.length) out.warnings = warnings;
          }
          const more = tool.extraContent ? await tool.extraContent(out as never).catch(() => []) : [];
          return { content: [{ type: 'text', text: JSON.stringify(out, null, 2) }, ...more], structuredContent: out };
        } catch (err) {
          return errorResult(err);
        } finally {
          // No progress after the result, and none still in flight when it leaves: a late one
          // would reach the client after the response (typescript-sdk#2580).
          finished = true;
          await sending;
        }
      },
    );
  }
}
