/**
 * Rows that a decoding step reuses from one step to the next, by role. A step of a small model makes dozens of
 * rows, and every typed array beyond 64 bytes costs V8 an allocation outside its heap and a later sweep on a
 * background thread. A role's row is valid until the next request for it.
 */
export class RowBuffers {
  private readonly rows = new Map<string, Float32Array>();

  /** The role's row of `n` floats (its contents left from the last use: the caller writes all of it). */
  row(role: string, n: number): Float32Array {
    let r = this.rows.get(role);
    if (!r || r.length < n) {
      r = new Float32Array(Math.max(n, 2 * (r?.length ?? 0)));
      this.rows.set(role, r);
    }
    return r.length === n ? r : r.subarray(0, n);
  }
}

/** A row of `n` floats for `role` from `buffers`, or a new one without them. */
export function rowFor(buffers: RowBuffers | undefined, role: string, n: number): Float32Array {
  return buffers ? buffers.row(role, n) : new Float32Array(n);
}
