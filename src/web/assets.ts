/**
 * The lab's page is built from web/ by Vite (npm run build:web; npm's prepare step runs it after `npm ci`). The build
 * records a hash of the sources it was built from in build-info.json, so `psm lab` can say when the page on disk is
 * older than its sources instead of silently serving a stale one.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const BUILD_INFO = 'build-info.json';

export interface BuildInfo {
  sourceHash: string;
  builtAt: string;
  /** Bytes of each emitted file, and gzip-compressed. */
  files: { file: string; bytes: number; gzip: number }[];
}

/** Hash of every source file of the page (web/ without its build output), by relative path and content. */
export function pageSourceHash(webDir: string): string {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs
      .readdirSync(dir, { withFileTypes: true })
      .sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.name === 'dist' || e.name === 'node_modules' || e.name.startsWith('.')) continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else files.push(p);
    }
  };
  walk(webDir);
  const h = createHash('sha256');
  for (const f of files)
    h.update(path.relative(webDir, f).split(path.sep).join('/'))
      .update('\0')
      .update(fs.readFileSync(f))
      .update('\0');
  return h.digest('hex').slice(0, 16);
}

/** A warning when the built page is missing or older than its sources; null when it is current. */
export function staleAssetsWarning(assetsDir: string): string | null {
  const info = path.join(assetsDir, BUILD_INFO);
  if (!fs.existsSync(info)) return `the lab's page is not built (${assetsDir}): run npm run build:web`;
  const webDir = path.dirname(assetsDir);
  if (!fs.existsSync(path.join(webDir, 'src'))) return null; // an installed copy without sources
  try {
    const built = (JSON.parse(fs.readFileSync(info, 'utf8')) as BuildInfo).sourceHash;
    return built === pageSourceHash(webDir)
      ? null
      : "the lab's page was built from older sources: run npm run build:web to rebuild it";
  } catch (e) {
    return `${info} cannot be read (${(e as Error).message}): run npm run build:web`;
  }
}
