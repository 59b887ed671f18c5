/**
 * Whether two float arrays hold the same bits: the test every self-check runs before a JS or WebAssembly replica of
 * an ONNX Runtime op may stand in for it (a value comparison would let -0 pass for 0).
 */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
