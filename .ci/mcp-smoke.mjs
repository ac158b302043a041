// CI check of an installed `vai-mcp` bin: initialize, list the tools, call list_tunnels, over
// raw stdio JSON-RPC (no SDK, so it checks what any MCP host would see). Every stdout line must
// be a JSON-RPC message. Usage: node .ci/mcp-smoke.mjs <path to vai-mcp bin>
import { spawn } from 'node:child_process';

const bin = process.argv[2];
const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
const pending = new Map();
let buf = '';
child.stdout.setEncoding('utf8');
child.stdout.on('data', (chunk) => {
  buf += chunk;
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    const msg = JSON.parse(line); // throws (and fails CI) on anything but JSON
    if (msg.jsonrpc !== '2.0') throw new Error(`not JSON-RPC: ${line}`);
    pending.get(msg.id)?.(msg);
  }
});
let id = 0;
const request = (method, params) =>
  new Promise((resolve, reject) => {
    const n = ++id;
    const timer = setTimeout(() => reject(new Error(`${method}: no answer in 30 s`)), 30_000);
    pending.set(n, (msg) => {
      clearTimeout(timer);
      msg.error ? reject(new Error(JSON.stringify(msg.error))) : resolve(msg.result);
    });
    child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id: n, method, params }) + '\n');
  });

await request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'ci', version: '0' } });
child.stdin.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) + '\n');
const { tools } = await request('tools/list', {});
const names = tools.map((t) => t.name).sort().join(',');
if (names !== 'cancel_job,close_tunnel,create_instance,destroy_instance,get_budget,get_job,list_instances,list_tunnels,open_tunnel,prepare_instance,run_workflow,search_offers') throw new Error(`unexpected tools: ${names}`);
const result = await request('tools/call', { name: 'list_tunnels', arguments: {} });
if (result.isError || !Array.isArray(result.structuredContent?.tunnels)) throw new Error(`list_tunnels failed: ${JSON.stringify(result)}`);
const budget = await request('tools/call', { name: 'get_budget', arguments: {} });
if (budget.isError || typeof budget.structuredContent?.spent_usd !== 'number') throw new Error(`get_budget failed: ${JSON.stringify(budget)}`);
child.stdin.end();
await new Promise((r) => child.once('exit', r));
console.log(`vai-mcp: ${tools.length} tools, list_tunnels and get_budget answered`);
