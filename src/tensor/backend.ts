/**
 * Chooses the matmul backend once per process: ONNX Runtime's kernels when the native addon loads, the
 * plain-JS reference otherwise (or when PSM_MATMUL=js asks for it). Results are the same up to float32
 * rounding; the choice only changes speed.
 */
import { JsMatmulBackend, getMatmulBackend, setMatmulBackend, type MatmulBackend } from './matmul.ts';
import { avoidConcurrentMarking } from './gc-tuning.ts';
import { OrtMatmulBackend, ortAvailable } from './ort-matmul.ts';

let configured = false;

export function defaultThreads(): number {
  const fromEnv = Number(process.env.PSM_THREADS);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 2;
}

export function configureBackend(options: { backend?: 'ort' | 'js'; threads?: number } = {}): MatmulBackend {
  const wanted = options.backend ?? (process.env.PSM_MATMUL === 'js' ? 'js' : 'ort');
  const threads = options.threads ?? defaultThreads();
  const backend = wanted === 'ort' && ortAvailable() ? new OrtMatmulBackend(threads) : new JsMatmulBackend();
  setMatmulBackend(backend);
  // A multi-threaded kernel pool stalls whenever the GC's background marker takes one of its cores.
  if (backend instanceof OrtMatmulBackend && threads > 1 && process.env.PSM_CONCURRENT_GC !== '1')
    avoidConcurrentMarking();
  configured = true;
  return backend;
}

/** The configured backend, configuring the default on first use. */
export function ensureBackend(): MatmulBackend {
  if (!configured) return configureBackend();
  return getMatmulBackend();
}
