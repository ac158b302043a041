/**
 * Starts the dashboard for a supervisor: the page's server is loaded on first use, so a
 * supervisor nobody opens the page of carries none of it.
 */
import type { VaiApi } from '../api/api.js';
import type { Boxes } from '../fleet/boxes.js';
import type { Fleet } from '../fleet/fleet.js';
import type { Dashboard } from './dashboard.js';

export async function startDashboard(api: VaiApi, o: { boxes: Boxes; fleet: Fleet; home: string; uiPort: number; basePort: number }): Promise<Dashboard> {
  const { Dashboard } = await import('./dashboard.js');
  const events = o.boxes.events;
  const d = new Dashboard({
    api,
    instances: () => o.fleet.views(),
    envOf: (id) => o.boxes.envOf(id),
    onChange(listener) {
      events.on('change', listener);
      events.on('progress', listener);
      return () => {
        events.off('change', listener);
        events.off('progress', listener);
      };
    },
    home: o.home,
    port: o.uiPort,
    basePort: o.basePort,
    log: o.boxes.log.child('ui'),
  });
  await d.start();
  return d;
}
