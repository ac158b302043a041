/**
 * Every method of VaiApi, once. The control socket serves exactly these and its client is built
 * from them; the compiler checks the list against VaiApi (a method added there must be added here).
 */
import type { VaiApi } from './api.js';

export type ApiMethod = keyof VaiApi;

const METHODS = {
  hello: true,
  createInstances: true,
  waitForInstances: true,
  listInstances: true,
  openTunnel: true,
  listTunnels: true,
  stopTunnel: true,
  stopAllTunnels: true,
  destroyInstance: true,
  destroyAll: true,
  sshKey: true,
  stopInstance: true,
  startInstance: true,
  instanceLogs: true,
  searchOffers: true,
  runWorkflow: true,
  prepareInstance: true,
  listModels: true,
  getJob: true,
  listJobs: true,
  listQueue: true,
  cancelJobs: true,
  extractOutputs: true,
  oneshot: true,
  getBudget: true,
  setBudget: true,
  moneyWarnings: true,
  openDashboard: true,
  status: true,
  shutdown: true,
} as const satisfies Record<ApiMethod, true>;

export const API_METHODS = Object.keys(METHODS) as ApiMethod[];
