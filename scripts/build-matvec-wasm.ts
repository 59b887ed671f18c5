/**
 * Compiles src/tensor/matvec.wat (the WebAssembly one-row matmul) into src/tensor/matvec-wasm.ts, the module's
 * bytes as base64, so that the product loads it without a WebAssembly toolchain.
 *
 *   npx tsx scripts/build-matvec-wasm.ts           rewrite src/tensor/matvec-wasm.ts
 *   npx tsx scripts/build-matvec-wasm.ts --check   exit 1 when the committed bytes are not the source's
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { atomicWriteFileSync } from '../src/io/atomic-write.ts';
import { compileMatvecWat, matvecModuleSource } from './matvec-wat.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const target = path.join(root, 'src/tensor/matvec-wasm.ts');
const source = matvecModuleSource(await compileMatvecWat(path.join(root, 'src/tensor/matvec.wat')));
if (process.argv.includes('--check')) {
  const same = fs.existsSync(target) && fs.readFileSync(target, 'utf8') === source;
  console.log(
    same ? 'src/tensor/matvec-wasm.ts matches matvec.wat' : 'src/tensor/matvec-wasm.ts is stale: rebuild it',
  );
  process.exit(same ? 0 : 1);
}
// Written whole or not at all: a half-written module would fail to load, or the --check test, confusingly.
atomicWriteFileSync(target, source);
console.log(`wrote ${path.relative(root, target)}`);
