;; The kernels of decoding one sequence, over weights that live in this module's memory, each summing in exactly
;; the order of the ONNX Runtime kernel it replaces, so that the numbers equal the per-op path's to the bit: the
;; one-row matmul y = x W^T (MLAS MlasSgemmKernelM1TransposeBAvx), below; its untransposed form (vecmat); SwiGLU.
;; Compiled by scripts/build-matvec-wasm.ts into src/tensor/matvec-wasm.ts.
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

  ;; y = x B for one row x [k] and B [k, n] (rows of n floats, one after another), summed in the order of ONNX
  ;; Runtime's one-row kernel for an untransposed B (MLAS MlasSgemmKernelM1Avx), which the attention's weighted sum
  ;; of the cached values takes: per column, the products x[j] * B[j, col] (each rounded, then added; no FMA) of
  ;; each block of four j summed in turn from the first, each block's sum added to the column's total; then a
  ;; following pair of j the same way, then a last single product. Columns go four at a time; y must have room for
  ;; n rounded up to 4, and B must be readable 12 bytes past its end (lanes past n read on, and are not used).
  (func (export "vecmat") (param $x i32) (param $b i32) (param $y i32) (param $k i32) (param $n i32)
    (local $col i32) (local $j i32) (local $stride i32) (local $row i32)
    (local $acc v128) (local $block v128) (local $quads i32)
    (local.set $stride (i32.shl (local.get $n) (i32.const 2)))
    (local.set $quads (i32.and (local.get $k) (i32.const -4)))
    (block $colsDone
      (loop $colLoop
        (br_if $colsDone (i32.ge_u (local.get $col) (local.get $n)))
        (local.set $acc (v128.const i32x4 0 0 0 0))
        (local.set $row (i32.add (local.get $b) (i32.shl (local.get $col) (i32.const 2))))
        (local.set $j (i32.const 0))
        (block $quadsDone
          (loop $quadLoop
            (br_if $quadsDone (i32.ge_u (local.get $j) (local.get $quads)))
            (local.set $block (call $product (local.get $x) (local.get $j) (local.get $row)))
            (local.set $row (i32.add (local.get $row) (local.get $stride)))
            (local.set $block (f32x4.add (local.get $block)
              (call $product (local.get $x) (i32.add (local.get $j) (i32.const 1)) (local.get $row))))
            (local.set $row (i32.add (local.get $row) (local.get $stride)))
            (local.set $block (f32x4.add (local.get $block)
              (call $product (local.get $x) (i32.add (local.get $j) (i32.const 2)) (local.get $row))))
            (local.set $row (i32.add (local.get $row) (local.get $stride)))
            (local.set $block (f32x4.add (local.get $block)
              (call $product (local.get $x) (i32.add (local.get $j) (i32.const 3)) (local.get $row))))
            (local.set $row (i32.add (local.get $row) (local.get $stride)))
            (local.set $acc (f32x4.add (local.get $acc) (local.get $block)))
            (local.set $j (i32.add (local.get $j) (i32.const 4)))
            (br $quadLoop)))
        (if (i32.ge_u (i32.sub (local.get $k) (local.get $j)) (i32.const 2))
          (then
            (local.set $block (call $product (local.get $x) (local.get $j) (local.get $row)))
            (local.set $row (i32.add (local.get $row) (local.get $stride)))
            (local.set $block (f32x4.add (local.get $block)
              (call $product (local.get $x) (i32.add (local.get $j) (i32.const 1)) (local.get $row))))
            (local.set $row (i32.add (local.get $row) (local.get $stride)))
            (local.set $acc (f32x4.add (local.get $acc) (local.get $block)))
            (local.set $j (i32.add (local.get $j) (i32.const 2)))))
        (if (i32.lt_u (local.get $j) (local.get $k))
          (then
            (local.set $acc (f32x4.add (local.get $acc)
              (call $product (local.get $x) (local.get $j) (local.get $row))))))
        (v128.store (i32.add (local.get $y) (i32.shl (local.get $col) (i32.const 2))) (local.get $acc))
        (local.set $col (i32.add (local.get $col) (i32.const 4)))
        (br $colLoop))))

  ;; x[j] times the four floats at $at.
  (func $product (param $x i32) (param $j i32) (param $at i32) (result v128)
    (f32x4.mul
      (f32x4.splat (f32.load (i32.add (local.get $x) (i32.shl (local.get $j) (i32.const 2)))))
      (v128.load (local.get $at))))

  ;; y = QuickGelu(g) * u elementwise (SwiGLU with the sigmoid that ONNX Runtime's QuickGelu computes): MLAS's
  ;; logistic, a ratio of odd and even polynomials in x clamped to [-18, 18], each step a fused multiply-add (its
  ;; FMA3 kernel), the ratio plus 1/2 clamped to [0, 1]; then times x, then times u. The FMA is emulated exactly,
  ;; two elements at a time in doubles ($fma2), a last odd element alone.
  (func (export "swiglu") (param $g i32) (param $u i32) (param $y i32) (param $n i32)
    (local $pairsEnd i32) (local $x v128) (local $v v128) (local $v2 v128) (local $p v128) (local $q v128)
    (local $r v128)
    (local.set $pairsEnd (i32.add (local.get $g) (i32.shl (i32.and (local.get $n) (i32.const -2)) (i32.const 2))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $g) (local.get $pairsEnd)))
        ;; Lanes 0 and 1 carry the two elements; lanes 2 and 3 are zero and unused.
        (local.set $x (v128.load64_zero (local.get $g)))
        (local.set $v (f32x4.min (v128.const f32x4 18 18 18 18)
          (f32x4.max (v128.const f32x4 -18 -18 -18 -18) (local.get $x))))
        (local.set $v2 (f64x2.promote_low_f32x4 (f32x4.mul (local.get $v) (local.get $v))))
        (local.set $p (call $fma2 (local.get $v2)
          (v128.const f64x2 0x1.806aa2p-35 0x1.806aa2p-35) (v128.const f64x2 0x1.f09d96p-24 0x1.f09d96p-24)))
        (local.set $p (call $fma2 (local.get $p) (local.get $v2) (v128.const f64x2 0x1.fe8276p-15 0x1.fe8276p-15)))
        (local.set $p (call $fma2 (local.get $p) (local.get $v2) (v128.const f64x2 0x1.16fabp-7 0x1.16fabp-7)))
        (local.set $p (call $fma2 (local.get $p) (local.get $v2) (v128.const f64x2 0x1.fc7e64p-3 0x1.fc7e64p-3)))
        (local.set $p (f32x4.mul (f32x4.demote_f64x2_zero (local.get $p)) (local.get $v)))
        (local.set $q (call $fma2 (local.get $v2)
          (v128.const f64x2 0x1.5789eap-41 0x1.5789eap-41) (v128.const f64x2 0x1.8be4f6p-28 0x1.8be4f6p-28)))
        (local.set $q (call $fma2 (local.get $q) (local.get $v2) (v128.const f64x2 0x1.a62fbap-18 0x1.a62fbap-18)))
        (local.set $q (call $fma2 (local.get $q) (local.get $v2) (v128.const f64x2 0x1.be2a7ep-10 0x1.be2a7ep-10)))
        (local.set $q (call $fma2 (local.get $q) (local.get $v2) (v128.const f64x2 0x1.de7c3p-4 0x1.de7c3p-4)))
        (local.set $q (call $fma2 (local.get $q) (local.get $v2) (v128.const f64x2 0x1.fc7e68p-1 0x1.fc7e68p-1)))
        ;; Lanes 2 and 3 divide 0 by 0; their NaNs are not stored.
        (local.set $r (f32x4.add
          (f32x4.div (local.get $p) (f32x4.demote_f64x2_zero (local.get $q))) (v128.const f32x4 0.5 0.5 0.5 0.5)))
        (local.set $r (f32x4.min (v128.const f32x4 1 1 1 1) (f32x4.max (v128.const f32x4 0 0 0 0) (local.get $r))))
        (v128.store64_lane 0 (local.get $y)
          (f32x4.mul (f32x4.mul (local.get $x) (local.get $r)) (v128.load64_zero (local.get $u))))
        (local.set $g (i32.add (local.get $g) (i32.const 8)))
        (local.set $u (i32.add (local.get $u) (i32.const 8)))
        (local.set $y (i32.add (local.get $y) (i32.const 8)))
        (br $each)))
    (if (i32.and (local.get $n) (i32.const 1))
      (then (f32.store (local.get $y)
        (call $swigluOne (f32.load (local.get $g)) (f32.load (local.get $u)))))))

  ;; One element of swiglu, with the scalar FMA.
  (func $swigluOne (param $x f32) (param $u f32) (result f32)
    (local $v f32) (local $v2 f32) (local $p f32) (local $q f32) (local $r f32)
    (local.set $v (f32.min (f32.const 18) (f32.max (f32.const -18) (local.get $x))))
    (local.set $v2 (f32.mul (local.get $v) (local.get $v)))
    (local.set $p (call $fma (local.get $v2) (f32.const 0x1.806aa2p-35) (f32.const 0x1.f09d96p-24)))
    (local.set $p (call $fma (local.get $p) (local.get $v2) (f32.const 0x1.fe8276p-15)))
    (local.set $p (call $fma (local.get $p) (local.get $v2) (f32.const 0x1.16fabp-7)))
    (local.set $p (call $fma (local.get $p) (local.get $v2) (f32.const 0x1.fc7e64p-3)))
    (local.set $p (f32.mul (local.get $p) (local.get $v)))
    (local.set $q (call $fma (local.get $v2) (f32.const 0x1.5789eap-41) (f32.const 0x1.8be4f6p-28)))
    (local.set $q (call $fma (local.get $q) (local.get $v2) (f32.const 0x1.a62fbap-18)))
    (local.set $q (call $fma (local.get $q) (local.get $v2) (f32.const 0x1.be2a7ep-10)))
    (local.set $q (call $fma (local.get $q) (local.get $v2) (f32.const 0x1.de7c3p-4)))
    (local.set $q (call $fma (local.get $q) (local.get $v2) (f32.const 0x1.fc7e68p-1)))
    (local.set $r (f32.add (f32.div (local.get $p) (local.get $q)) (f32.const 0.5)))
    (local.set $r (f32.min (f32.const 1) (f32.max (f32.const 0) (local.get $r))))
    (f32.mul (f32.mul (local.get $x) (local.get $r)) (local.get $u)))

  ;; $fma on two lanes of doubles that hold floats; the result rounded to float, held as a double. Where either
  ;; lane's double sum lands on a midpoint between two floats, both take the scalar $fma.
  (func $fma2 (param $a v128) (param $b v128) (param $c v128) (result v128)
    (local $s v128)
    (local.set $s (f64x2.add (f64x2.mul (local.get $a) (local.get $b)) (local.get $c)))
    (if (v128.any_true (i64x2.eq
          (v128.and (local.get $s) (v128.const i64x2 0x1fffffff 0x1fffffff))
          (v128.const i64x2 0x10000000 0x10000000)))
      (then
        (return (f64x2.replace_lane 1
          (f64x2.splat (f64.promote_f32 (call $fma
            (f32.demote_f64 (f64x2.extract_lane 0 (local.get $a)))
            (f32.demote_f64 (f64x2.extract_lane 0 (local.get $b)))
            (f32.demote_f64 (f64x2.extract_lane 0 (local.get $c))))))
          (f64.promote_f32 (call $fma
            (f32.demote_f64 (f64x2.extract_lane 1 (local.get $a)))
            (f32.demote_f64 (f64x2.extract_lane 1 (local.get $b)))
            (f32.demote_f64 (f64x2.extract_lane 1 (local.get $c)))))))))
    (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (local.get $s))))

  ;; a * b + c rounded once to float. The product of two floats is exact in a double, so the double sum differs from
  ;; the exact one by less than half a double's ulp and rounds to the same float, unless it lands exactly on a midpoint
  ;; between two floats (its low 29 bits 1 followed by zeros); then the sum's rounding error (TwoSum) tells which side
  ;; the exact value lies, and the double one ulp toward it rounds the right way.
  (func $fma (param $a f32) (param $b f32) (param $c f32) (result f32)
    (local $p f64) (local $s f64) (local $bv f64) (local $err f64) (local $bits i64)
    (local.set $p (f64.mul (f64.promote_f32 (local.get $a)) (f64.promote_f32 (local.get $b))))
    (local.set $s (f64.add (local.get $p) (f64.promote_f32 (local.get $c))))
    (local.set $bits (i64.reinterpret_f64 (local.get $s)))
    (if (i64.ne (i64.and (local.get $bits) (i64.const 0x1fffffff)) (i64.const 0x10000000))
      (then (return (f32.demote_f64 (local.get $s)))))
    (local.set $bv (f64.sub (local.get $s) (local.get $p)))
    (local.set $err
      (f64.add
        (f64.sub (local.get $p) (f64.sub (local.get $s) (local.get $bv)))
        (f64.sub (f64.promote_f32 (local.get $c)) (local.get $bv))))
    (if (f64.eq (local.get $err) (f64.const 0))
      (then (return (f32.demote_f64 (local.get $s)))))
    ;; Away from zero when the error has the sum's sign, toward zero otherwise.
    (if (i32.eq (f64.gt (local.get $err) (f64.const 0)) (f64.gt (local.get $s) (f64.const 0)))
      (then (local.set $bits (i64.add (local.get $bits) (i64.const 1))))
      (else (local.set $bits (i64.sub (local.get $bits) (i64.const 1)))))
    (f32.demote_f64 (f64.reinterpret_i64 (local.get $bits))))

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
