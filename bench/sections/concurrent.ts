/** 100 open-tunnel requests at once, from 10 clients: distinct ports, and time until all carry traffic. */
import { SupervisorClient } from '../../core/control/client.js';
import { answers, until } from '../lib/http.js';
import { fmt, type Report } from '../lib/report.js';
import type { Vai } from '../lib/vai.js';

export async function measureConcurrentOpen(report: Report, vai: Vai, instanceIds: string[]): Promise<void> {
  const stop = await vai.sb.cli(['tunnel', '--stop-all']);
  if (stop.code !== 0) throw new Error(`tunnel --stop-all: ${stop.stderr}`);
  const clients = await Promise.all(Array.from({ length: 10 }, () => SupervisorClient.connect({ env: vai.sb.env, start: false })));
  try {
    const t0 = performance.now();
    const opened = await Promise.all(instanceIds.map((id, i) => clients[i % clients.length]!.openTunnel({ instance_id: id })));
    const answered = performance.now() - t0;
    await Promise.all(opened.map((t) => until(`first byte on ${t.local_port}`, () => answers(t.local_port, 2000), 60_000, 10)));
    const allUp = performance.now() - t0;
    const ports = opened.map((t) => t.local_port);
    const distinct = new Set(ports).size;
    report.table({
      title: `${instanceIds.length} concurrent open-tunnel requests (10 clients on the control socket)`,
      columns: ['figure', 'value'],
      rows: [
        ['distinct local ports', `${distinct} of ${ports.length}`],
        ['all requests answered', `${fmt.ms(answered)} ms`],
        ['all tunnels carrying traffic', `${fmt.ms(allUp)} ms`],
      ],
    });
    report.target(`port collisions among ${instanceIds.length} concurrent opens`, String(ports.length - distinct), '0', distinct === ports.length);
    report.figures.concurrent_open = { requests: instanceIds.length, distinct_ports: distinct, answered_ms: answered, all_up_ms: allUp };
  } finally {
    for (const c of clients) c.close();
  }
}
