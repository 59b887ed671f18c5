/** The built page's freshness check: psm lab says when web/dist is missing or older than web/'s sources. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BUILD_INFO, pageSourceHash, staleAssetsWarning } from '../../src/web/assets.ts';

function webFolder(): string {
  const web = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-lab-web-'));
  fs.mkdirSync(path.join(web, 'src'));
  fs.writeFileSync(path.join(web, 'src', 'main.tsx'), 'render(<App />);\n');
  fs.writeFileSync(path.join(web, 'index.html'), '<!doctype html>\n');
  return web;
}

describe('the built page and its sources', () => {
  it('hashes the sources, not the build output', () => {
    const web = webFolder();
    const before = pageSourceHash(web);
    fs.mkdirSync(path.join(web, 'dist'));
    fs.writeFileSync(path.join(web, 'dist', 'index.html'), 'built');
    expect(pageSourceHash(web)).toBe(before);
    fs.writeFileSync(path.join(web, 'src', 'main.tsx'), 'render(<Other />);\n');
    expect(pageSourceHash(web)).not.toBe(before);
  });

  it('warns when the page is missing or stale, and not when it is current', () => {
    const web = webFolder();
    const dist = path.join(web, 'dist');
    expect(staleAssetsWarning(dist)).toMatch(/not built.*npm run build:web/);
    fs.mkdirSync(dist);
    const write = () =>
      fs.writeFileSync(
        path.join(dist, BUILD_INFO),
        JSON.stringify({ sourceHash: pageSourceHash(web), builtAt: '', files: [] }),
      );
    write();
    expect(staleAssetsWarning(dist)).toBeNull();
    fs.writeFileSync(path.join(web, 'src', 'page.tsx'), 'export const x = 1;\n');
    expect(staleAssetsWarning(dist)).toMatch(/older sources.*npm run build:web/);
    write();
    expect(staleAssetsWarning(dist)).toBeNull();
  });
});
