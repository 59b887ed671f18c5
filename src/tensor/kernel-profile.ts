/**
 * Where a computation's time goes, kernel by kernel: a matmul backend that forwards every call to the real one
 * and adds up its wall time per kernel and shape. Kernels run synchronously on the calling thread (the pool's
 * threads inside them), so wall time per call is the cost the caller waits for; what lies between the calls
 * (autograd bookkeeping, copies, allocation, garbage collection) is the step's time minus their sum.
 */
import {
  getMatmulBackend,
  setMatmulBackend,
  type FusedKernels,
  type MatmulBackend,
  type MatmulSpec,
} from './matmul.ts';

export interface KernelTime {
  /** Kernel name, a matmul with its shape: `matmul [16x64]·[64x256]`, `matmul ×8 [128x16]·[16x128]ᵀ`, `rmsNormForward`. */
  kernel: string;
  calls: number;
  ms: number;
}

function matmulKey(s: MatmulSpec): string {
  // The product's shape as math writes it; ᵀ marks an operand stored transposed.
  const a = s.transA ? `[${s.k}x${s.m}]ᵀ` : `[${s.m}x${s.k}]`;
  const b = s.transB ? `[${s.n}x${s.k}]ᵀ` : `[${s.k}x${s.n}]`;
  return `matmul ${s.batch > 1 ? `×${s.batch} ` : ''}${a}·${b}`;
}

/** Times every call of `backend`; `install()` makes it the process's backend until `uninstall()`. */
export class KernelProfiler {
  private readonly times = new Map<string, { calls: number; ms: number }>();
  private previous: MatmulBackend | null = null;

  private add(kernel: string, ms: number): void {
    const e = this.times.get(kernel);
    if (e) {
      e.calls++;
      e.ms += ms;
    } else this.times.set(kernel, { calls: 1, ms });
  }

  private timed<T>(kernel: string, fn: () => T): T {
    const t0 = performance.now();
    const out = fn();
    this.add(kernel, performance.now() - t0);
    return out;
  }

  /** A backend computing exactly as `inner` does, timing each call. */
  wrap(inner: MatmulBackend): MatmulBackend {
    let fused: FusedKernels | undefined;
    if (inner.fused) {
      const real = inner.fused as unknown as Record<string, (...args: unknown[]) => unknown>;
      // Forwarded by name, so a kernel added to the interface later is timed without an edit here.
      fused = Object.fromEntries(
        methodNames(real).map((name) => [
          name,
          (...args: unknown[]) => this.timed(name, () => real[name](...args)),
        ]),
      ) as unknown as FusedKernels;
    }
    return {
      name: `${inner.name} (profiled)`,
      threads: inner.threads,
      matmul: (a, b, spec) => this.timed(matmulKey(spec), () => inner.matmul(a, b, spec)),
      fused,
    };
  }

  install(): void {
    if (this.previous) throw new Error('KernelProfiler: already installed');
    this.previous = getMatmulBackend();
    setMatmulBackend(this.wrap(this.previous));
  }

  uninstall(): void {
    if (!this.previous) return;
    setMatmulBackend(this.previous);
    this.previous = null;
  }

  reset(): void {
    this.times.clear();
  }

  /** Kernels by total time, largest first. */
  report(): KernelTime[] {
    return [...this.times]
      .map(([kernel, e]) => ({ kernel, calls: e.calls, ms: e.ms }))
      .sort((x, y) => y.ms - x.ms);
  }
}

/** The function-valued properties of `obj`, its own and its classes' (the fused kernels are a class instance). */
function methodNames(obj: object): string[] {
  const names = new Set<string>();
  for (
    let p: object | null = obj;
    p && p !== Object.prototype;
    p = Object.getPrototypeOf(p) as object | null
  ) {
    for (const name of Object.getOwnPropertyNames(p)) {
      if (name !== 'constructor' && typeof (obj as Record<string, unknown>)[name] === 'function')
        names.add(name);
    }
  }
  return [...names];
}
