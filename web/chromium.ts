/**
 * Debian's chromium driven by playwright-core, as the lab's end-to-end tests and the README's picture use it: no
 * browser download, a new empty profile each time, and the flags that keep a headless run quiet and offline.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

export function launchChromium(opts: {
  viewport: { width: number; height: number };
  /** Lets a test inject scripts (axe-core) past the lab's Content-Security-Policy. */
  bypassCSP?: boolean;
}): Promise<BrowserContext> {
  return chromium.launchPersistentContext(fs.mkdtempSync(path.join(os.tmpdir(), 'psm-lab-chromium-')), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: opts.viewport,
    bypassCSP: opts.bypassCSP ?? false,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
