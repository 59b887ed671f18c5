/** Builds the lab's page (web/) into web/dist, which `psm lab` serves; see budget.ts for the size budget. */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import { sizeBudget } from './budget.ts';

const webDir = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: webDir,
  base: '/',
  publicDir: 'public',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // The Vega runtime is one large lazy chunk by design; the budget plugin holds the real limits.
    chunkSizeWarningLimit: 2500,
    reportCompressedSize: false,
  },
  plugins: [sizeBudget(webDir)],
  server: { proxy: { '/api': 'http://127.0.0.1:8100', '/runs': 'http://127.0.0.1:8100' } },
});
