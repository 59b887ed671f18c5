;; One-row matmul y = x W^T over weights that live in this module's memory, summed in exactly the order of
;; ONNX Runtime's one-row kernel for a transposed B (MLAS MlasSgemmKernelM1TransposeBAvx), so that the numbers
;; equal the per-op path's to the bit. Compiled by scripts/build-matvec-wasm.ts into src/tensor/matvec-wasm.ts.
;;
;; That kernel's order, per output row n of W [rows, k]:
;;   - eight lane accumulators, lane l summing x[j] * w[n, j] for j = l, l + 8, l + 16, ... in turn, each
;;     product rounded before it is added (AVX mul then add, no FMA); a last partial block of k adds only its
;;     lanes;
;;   - the lanes reduced by one of three trees, by where the row falls: rows in the blocks of four,
;;     (((a0 + a1) + a2) + a3) + (((a4 + a5) + a6) + a7); a following pair of rows,
;;     ((a0 + a2) + (a4 + a6)) + ((a1 + a3) + (a5 + a7)); a last single row,
;;     ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
;;   - then + 0 (its beta-zero output).
;; The lanes of a row depend on nothing else, so this kernel is free to walk the rows one at a time: one
;; sequential stream through W, which reads it from memory about twice as fast as four rows at once.
(module
  (memory (import "env" "memory") 1)

  ;; y[n] = sum_j x[j] * w[n * k + j] for n < rows. Byte addresses; x holds k floats followed by zeros up to a
  ;; multiple of 8, and up to 28 bytes after the last row of w must be readable (the arena pads every tensor).
  (func (export "matvec") (param $x i32) (param $w i32) (param $y i32) (param $k i32) (param $rows i32)
    (local $row i32) (local $quads i32) (local $pairEnd i32)
    (local $kb i32) (local $kb8 i32) (local $kb32 i32) (local $j i32)
    (local $p v128) (local $q v128) (local $x0 v128) (local $x1 v128)
    (local $maskLo v128) (local $maskHi v128) (local $s f32)
    (local.set $kb (i32.shl (local.get $k) (i32.const 2)))
    ;; Whole blocks of 8 and of 32 floats, in bytes.
    (local.set $kb8 (i32.and (local.get $kb) (i32.const -32)))
    (local.set $kb32 (i32.and (local.get $kb) (i32.const -128)))
    ;; Lanes of the last partial block of 8 that are inside k.
    (local.set $maskLo
      (i32x4.lt_s (v128.const i32x4 0 1 2 3) (i32x4.splat (i32.and (local.get $k) (i32.const 7)))))
    (local.set $maskHi
      (i32x4.lt_s (v128.const i32x4 4 5 6 7) (i32x4.splat (i32.and (local.get $k) (i32.const 7)))))
    (local.set $quads (i32.and (local.get $rows) (i32.const -4)))
    (local.set $pairEnd (i32.add (local.get $quads) (i32.and (local.get $rows) (i32.const 2))))
    (block $rowsDone
      (loop $rowLoop
        (br_if $rowsDone (i32.ge_u (local.get $row) (local.get $rows)))
        (local.set $p (v128.const i32x4 0 0 0 0))
        (local.set $q (v128.const i32x4 0 0 0 0))
        (local.set $j (i32.const 0))
        ;; Four blocks of 8 per turn.
        (block $d32
          (loop $l32
            (br_if $d32 (i32.ge_u (local.get $j) (local.get $kb32)))
            (local.set $p (f32x4.add (local.get $p)
              (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $j)))
                         (v128.load (i32.add (local.get $w) (local.get $j))))))
            (local.set $q (f32x4.add (local.get $q)
              (f32x4.mul (v128.load offset=16 (i32.add (local.get $x) (local.get $j)))
                         (v128.load offset=16 (i32.add (local.get $w) (local.get $j))))))
            (local.set $p (f32x4.add (local.get $p)
              (f32x4.mul (v128.load offset=32 (i32.add (local.get $x) (local.get $j)))
                         (v128.load offset=32 (i32.add (local.get $w) (local.get $j))))))
            (local.set $q (f32x4.add (local.get $q)
              (f32x4.mul (v128.load offset=48 (i32.add (local.get $x) (local.get $j)))
                         (v128.load offset=48 (i32.add (local.get $w) (local.get $j))))))
            (local.set $p (f32x4.add (local.get $p)
              (f32x4.mul (v128.load offset=64 (i32.add (local.get $x) (local.get $j)))
                         (v128.load offset=64 (i32.add (local.get $w) (local.get $j))))))
            (local.set $q (f32x4.add (local.get $q)
              (f32x4.mul (v128.load offset=80 (i32.add (local.get $x) (local.get $j)))
                         (v128.load offset=80 (i32.add (local.get $w) (local.get $j))))))
            (local.set $p (f32x4.add (local.get $p)
              (f32x4.mul (v128.load offset=96 (i32.add (local.get $x) (local.get $j)))
                         (v128.load offset=96 (i32.add (local.get $w) (local.get $j))))))
            (local.set $q (f32x4.add (local.get $q)
              (f32x4.mul (v128.load offset=112 (i32.add (local.get $x) (local.get $j)))
                         (v128.load offset=112 (i32.add (local.get $w) (local.get $j))))))
            (local.set $j (i32.add (local.get $j) (i32.const 128)))
            (br $l32)))
        ;; The remaining whole blocks of 8.
        (block $d8
          (loop $l8
            (br_if $d8 (i32.ge_u (local.get $j) (local.get $kb8)))
            (local.set $p (f32x4.add (local.get $p)
              (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $j)))
                         (v128.load (i32.add (local.get $w) (local.get $j))))))
            (local.set $q (f32x4.add (local.get $q)
              (f32x4.mul (v128.load offset=16 (i32.add (local.get $x) (local.get $j)))
                         (v128.load offset=16 (i32.add (local.get $w) (local.get $j))))))
            (local.set $j (i32.add (local.get $j) (i32.const 32)))
            (br $l8)))
        ;; The partial block: lanes past k read the next row (or padding), masked to zero; x is zero there.
        (if (i32.lt_u (local.get $j) (local.get $kb))
          (then
            (local.set $p (f32x4.add (local.get $p)
              (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $j)))
                         (v128.and (v128.load (i32.add (local.get $w) (local.get $j))) (local.get $maskLo)))))
            (local.set $q (f32x4.add (local.get $q)
              (f32x4.mul (v128.load offset=16 (i32.add (local.get $x) (local.get $j)))
                         (v128.and (v128.load offset=16 (i32.add (local.get $w) (local.get $j)))
                                   (local.get $maskHi)))))))
        (if (i32.lt_u (local.get $row) (local.get $quads))
          (then (local.set $s (call $reduceQuad (local.get $p) (local.get $q))))
          (else
            (if (i32.lt_u (local.get $row) (local.get $pairEnd))
              (then (local.set $s (call $reducePair (local.get $p) (local.get $q))))
              (else (local.set $s (call $reduceSingle (local.get $p) (local.get $q)))))))
        (f32.store (local.get $y) (f32.add (local.get $s) (f32.const 0)))
        (local.set $y (i32.add (local.get $y) (i32.const 4)))
        (local.set $w (i32.add (local.get $w) (local.get $kb)))
        (local.set $row (i32.add (local.get $row) (i32.const 1)))
        (br $rowLoop))))

  ;; Lanes a0..a3 are $p, a4..a7 are $q.
  (func $reduceQuad (param $p v128) (param $q v128) (result f32)
    (f32.add
      (f32.add
        (f32.add
          (f32.add (f32x4.extract_lane 0 (local.get $p)) (f32x4.extract_lane 1 (local.get $p)))
          (f32x4.extract_lane 2 (local.get $p)))
        (f32x4.extract_lane 3 (local.get $p)))
      (f32.add
        (f32.add
          (f32.add (f32x4.extract_lane 0 (local.get $q)) (f32x4.extract_lane 1 (local.get $q)))
          (f32x4.extract_lane 2 (local.get $q)))
        (f32x4.extract_lane 3 (local.get $q)))))

  (func $reducePair (param $p v128) (param $q v128) (result f32)
    (f32.add
      (f32.add
        (f32.add (f32x4.extract_lane 0 (local.get $p)) (f32x4.extract_lane 2 (local.get $p)))
        (f32.add (f32x4.extract_lane 0 (local.get $q)) (f32x4.extract_lane 2 (local.get $q))))
      (f32.add
        (f32.add (f32x4.extract_lane 1 (local.get $p)) (f32x4.extract_lane 3 (local.get $p)))
        (f32.add (f32x4.extract_lane 1 (local.get $q)) (f32x4.extract_lane 3 (local.get $q))))))

  (func $reduceSingle (param $p v128) (param $q v128) (result f32)
    (f32.add
      (f32.add
        (f32.add (f32x4.extract_lane 0 (local.get $p)) (f32x4.extract_lane 1 (local.get $p)))
        (f32.add (f32x4.extract_lane 2 (local.get $p)) (f32x4.extract_lane 3 (local.get $p))))
      (f32.add
        (f32.add (f32x4.extract_lane 0 (local.get $q)) (f32x4.extract_lane 1 (local.get $q)))
        (f32.add (f32x4.extract_lane 2 (local.get $q)) (f32x4.extract_lane 3 (local.get $q)))))))
