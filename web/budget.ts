/**
 * The page's size budget, checked by every build: the first load (the entry script and stylesheet) must stay small so
 * the runs page appears at once; the charting chunk (Vega) loads on the first chart and has its own ceiling; and the
 * whole build has one. A build over budget fails and names the file. The sizes go to build-info.json with the hash of
 * the sources, so `psm lab` can tell a stale build.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Plugin } from 'vite';
import { BUILD_INFO, pageSourceHash, type BuildInfo } from '../src/web/assets.ts';

/** gzip bytes. */
export const BUDGET = {
  /** The entry chunk plus the stylesheet: what the runs page needs. */
  firstLoad: 36 * 1024,
  /** Any one lazily loaded chunk (the Vega runtime is the large one). */
  chunk: 340 * 1024,
  /** Everything emitted. */
  total: 380 * 1024,
};

export function sizeBudget(webDir: string): Plugin {
  return {
    name: 'psm-lab-size-budget',
    apply: 'build',
    writeBundle(options, bundle) {
      const files: BuildInfo['files'] = [];
      let firstLoad = 0;
      let total = 0;
      const over: string[] = [];
      for (const [file, item] of Object.entries(bundle)) {
        const source = item.type === 'chunk' ? item.code : item.source;
        const bytes = typeof source === 'string' ? Buffer.byteLength(source) : source.length;
        const gzip = gzipSync(source).length;
        files.push({ file, bytes, gzip });
        total += gzip;
        const entry = item.type === 'chunk' && item.isEntry;
        if (entry || file.endsWith('.css')) firstLoad += gzip;
        else if (item.type === 'chunk' && gzip > BUDGET.chunk)
          over.push(`${file}: ${(gzip / 1024).toFixed(1)} KiB gzip > ${BUDGET.chunk / 1024} KiB per chunk`);
      }
      if (firstLoad > BUDGET.firstLoad)
        over.push(
          `first load (entry + CSS): ${(firstLoad / 1024).toFixed(1)} KiB gzip > ${BUDGET.firstLoad / 1024} KiB`,
        );
      if (total > BUDGET.total)
        over.push(`total: ${(total / 1024).toFixed(1)} KiB gzip > ${BUDGET.total / 1024} KiB`);
      if (over.length)
        this.error(`the lab's page is over its size budget (web/budget.ts):\n  ${over.join('\n  ')}`);
      const info: BuildInfo = {
        sourceHash: pageSourceHash(webDir),
        builtAt: new Date().toISOString(),
        files: files.sort((a, b) => a.file.localeCompare(b.file)),
      };
      fs.writeFileSync(path.join(options.dir!, BUILD_INFO), JSON.stringify(info, null, 2) + '\n');
      const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
      this.info(
        `size budget: first load ${kib(firstLoad)} of ${kib(BUDGET.firstLoad)}, total ${kib(total)} of ${kib(BUDGET.total)} (gzip)`,
      );
    },
  };
}
