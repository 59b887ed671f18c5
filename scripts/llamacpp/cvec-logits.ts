/**
 * llama.cpp with control vectors, for the tests and scripts/llamacpp/steered-reply.ts. node-llama-cpp exposes no control-vector API (its LlamaContext
 * takes LoRA adapters only), but it ships llama.cpp's own shared libraries (libllama, libllama-common) and the
 * llama.cpp source it was built from (a git bundle). This builds scripts/llamacpp/cvec-logits.cpp against them
 * (g++, headers from the bundle, once per machine into the temp folder) and runs it: llama.cpp's
 * common_control_vector_load and llama_set_adapter_cvec, as `llama-cli --control-vector-scaled` uses them.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.join(import.meta.dirname, '..', '..');
const SOURCE = path.join(import.meta.dirname, 'cvec-logits.cpp');

/** The folder of node-llama-cpp's prebuilt libraries for this platform (its @node-llama-cpp/<platform> package), or null. */
function libraryDir(): string | null {
  const name = `${process.platform}-${process.arch}`;
  const dir = path.join(ROOT, 'node_modules', '@node-llama-cpp', name, 'bins', name);
  return fs.existsSync(path.join(dir, 'libllama-common.so')) ? dir : null;
}

const run = (cmd: string, args: string[], cwd?: string) =>
  execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 }).toString();

/** Builds the helper (cached by the sources' hash); returns its path, or the reason it cannot be built here. */
export function buildCvecLogits(): { bin: string; libs: string } | { skip: string } {
  const libs = libraryDir();
  if (!libs)
    return { skip: "node-llama-cpp's prebuilt llama.cpp libraries are not installed for this platform" };
  const bundle = path.join(ROOT, 'node_modules', 'node-llama-cpp', 'llama', 'gitRelease.bundle');
  if (!fs.existsSync(bundle))
    return { skip: `${bundle} not found (the llama.cpp source node-llama-cpp ships)` };
  for (const tool of ['g++', 'git']) {
    try {
      run(tool, ['--version']);
    } catch {
      return { skip: `${tool} is not installed` };
    }
  }
  const libFiles = fs.readdirSync(libs).filter((f) => /^lib(llama|ggml).*\.so$/.test(f));
  const key = createHash('sha256')
    .update(fs.readFileSync(SOURCE))
    .update(String(fs.statSync(bundle).size))
    .update(libs)
    .digest('hex')
    .slice(0, 16);
  const dir = path.join(os.tmpdir(), `psm-cvec-logits-${key}`);
  const bin = path.join(dir, 'cvec-logits');
  if (fs.existsSync(bin)) return { bin, libs };
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-cvec-build-'));
  try {
    const src = path.join(work, 'llama.cpp');
    run('git', ['clone', '--quiet', '--no-checkout', bundle, src]);
    run(
      'git',
      [
        '-c',
        'advice.detachedHead=false',
        'checkout',
        '--quiet',
        'HEAD',
        '--',
        'include',
        'ggml/include',
        'common',
      ],
      src,
    );
    const out = path.join(work, 'cvec-logits');
    run('g++', [
      '-std=c++17',
      '-O1',
      `-I${path.join(src, 'include')}`,
      `-I${path.join(src, 'ggml', 'include')}`,
      `-I${path.join(src, 'common')}`,
      SOURCE,
      '-o',
      out,
      // libllama-common first: it needs libllama and libggml after it.
      ...[
        'libllama-common.so',
        ...libFiles.filter((f) => f !== 'libllama-common.so' && !f.startsWith('libggml-cpu')),
      ].map((f) => path.join(libs, f)),
      `-Wl,-rpath,${libs}`,
    ]);
    fs.mkdirSync(dir, { recursive: true });
    fs.renameSync(out, bin);
    return { bin, libs };
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    return {
      skip: `cannot build the llama.cpp helper: ${err.stderr?.toString().slice(-2000) ?? err.message}`,
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** llama.cpp's logits after every position of `tokens`, with the control vectors [file, scale] applied. */
export function llamaCppLogits(
  helper: { bin: string; libs: string },
  model: string,
  tokens: readonly number[],
  controlVectors: readonly [string, number][] = [],
): Float32Array[] {
  const out = run(helper.bin, [
    helper.libs,
    model,
    tokens.join(','),
    ...controlVectors.flatMap(([f, s]) => [f, String(s)]),
  ]);
  return out
    .trim()
    .split('\n')
    .map((line) => Float32Array.from(JSON.parse(line) as number[]));
}
