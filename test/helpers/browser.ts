/**
 * A real headless Chromium for page tests: Debian's `chromium` (`.ci/run` installs it; no browser
 * download exists here), driven by playwright-core. Its own empty profile in a temporary folder,
 * no background networking (this machine's network is closed), and its process tree registered
 * with the watchdog so a dead test process leaves no browser behind.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ROOT } from './cli.js';
import { tellWatchdog } from './watchdog.js';

export const CHROMIUM = process.env.VAI_TEST_CHROMIUM ?? '/usr/bin/chromium';
/** Screenshots of page tests, kept after the run. */
export const SCREENSHOTS = path.join(ROOT, 'test-artifacts', 'screenshots');

export interface BrowserHandle {
  context: BrowserContext;
  page(): Promise<Page>;
  /** Saves a screenshot of `page` as `<name>.png` under test-artifacts/screenshots. */
  screenshot(page: Page, name: string): Promise<string>;
  close(): Promise<void>;
}

function pidsWithArg(arg: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(arg)) out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export async function launchBrowser(): Promise<BrowserHandle> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not at ${CHROMIUM}: install Debian's chromium package (apt-get install -y chromium; .ci/run does), or set VAI_TEST_CHROMIUM to its path.`);
  }
  const profile = mkdtempSync(path.join(os.tmpdir(), 'vai-chromium-'));
  tellWatchdog('dir+', profile);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
  for (const pid of pidsWithArg(profile)) tellWatchdog('pid+', String(pid), profile);
  context.setDefaultTimeout(15_000);
  return {
    context,
    page: () => context.newPage(),
    async screenshot(page, name) {
      mkdirSync(SCREENSHOTS, { recursive: true });
      const file = path.join(SCREENSHOTS, `${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      return file;
    },
    async close() {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
      tellWatchdog('dir-', profile);
    },
  };
}
