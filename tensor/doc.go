// Package tensor holds ggml's quantized block formats and the hot numeric
// kernels (dequantization, quantized dot products, threaded mat-vec/mat-mat,
// vector ops).
//
// # Numerics
//
// Before a matrix product the activations are converted to the weight type's
// ggml "vec_dot_type", as llama.cpp's CPU backend does: F16 weights get
// activations rounded to F16, BF16 to BF16; Q4_0, Q5_0 and Q8_0 weights get
// Q8_0 activations (blocks of 32, round-half-even of x*127/amax, fp16 scale);
// Q4_1 and Q5_1 get Q8_1 (Q8_0 plus fp16(d*sum)); Q2_K..Q6_K get Q8_K (blocks
// of 256, float32 scale, 16 block sums). Block products are exact integer
// sums; F32 weights use float32 dots. Dequantization follows ggml's
// dequantize_row_* formulas.
//
// # Kernels and bit-exactness
//
// Every kernel has a pure-Go implementation (dot.go, vec.go, act.go) that is
// always compiled. Builds with GOEXPERIMENT=simd on amd64 add simd/archsimd
// kernels (simd_amd64.go: AVX2; simd512_amd64.go: AVX-512), registered at init
// for the CPU's features; other builds and CPUs use the pure-Go code. The SIMD
// and pure-Go kernels give bit-identical results (BF16 on AVX512_BF16 CPUs
// excepted, see below): integer block sums are exact, and the float steps
// use the same operations in the same order — the pure-Go code reproduces
// the SIMD lane layout (documented beside each generic kernel) and never lets
// the compiler fuse a multiply and an add (explicit float32 conversions). The
// tests check every SIMD variant the CPU can run against the pure-Go kernel,
// bit for bit.
//
// # The pure-Go path
//
// A build without GOEXPERIMENT=simd (and a SIMD build on a CPU without
// AVX2, or on another architecture) runs only the pure-Go kernels: one row
// and one activation vector per call, in the SIMD kernels' float order.
// KernelPath, KernelName and KernelNotice say which path a binary takes;
// `stepflash run`, `bench` and `serve` print it at start and /metrics
// carries it (stepflash_build_info), with a warning when a pure-Go build
// runs on a CPU that has AVX2. The pure-Go kernels are written for Go's
// compiler, which neither vectorizes nor unrolls: each block is reached
// through array pointers ((*[34]byte)(w[b*34:])), so that the loops over
// its elements, with constant trip counts, carry no bounds checks; integer
// sums are split over a few accumulators and take each loaded weight byte
// for both of its nibbles; a lane's integer sum goes straight into its
// float step. They are still several times slower than the SIMD kernels
// (scalar multiplies, a float accumulator per lane kept in memory); the
// plain statement of each is kept in generic_spec_test.go and
// TestGenericMatchesSpec holds the two to the same bits.
//
// Kernel shapes: rowsFunc (many rows by one activation vector: decode),
// rows4Func (many rows by four vectors) and rowsNFunc (tiles of rows by all
// vectors of a batch: prefill). MatMul picks the widest one available.
// Integer sums are exact in any order, so kernels may reduce them however
// suits the vector unit; only the float steps keep the generic order. The
// AVX-512 Q4_K/Q6_K decode kernels work on four rows at once (float steps in
// row lanes); their prefill kernels repack groups of 16 rows so that each
// row owns lanes of the accumulators (simd512mm_amd64.go), blocked for the
// caches. In hot loops the compiler orders ready values by source position
// and spills vectors freely: the loops are written out in the order they
// should run, with few values live. Other codegen facts the kernels rely
// on: an And/Or of three vectors fuses into one VPTERNLOGD only on signed
// (Int) vector types, hence Int8x64 views of unsigned data; ranging over a
// small array of pointers copies it with wide loads right after its
// stores (a store-forwarding stall), so per-row calls are written out; and
// where the CPU has GFNI, GF2P8AFFINEQB moves bit fields within bytes in
// one instruction (the Q6_K high bits), with a shift-and-mask variant for
// AVX-512 CPUs without it.
//
// Where Go's simd/archsimd lacks an instruction, Go assembly sits behind
// the same function boundary, with a CPU check at init and the same
// bit-exactness tests: F16C's VCVTPH2PS (f16cvt_amd64.s) and AVX-512 VNNI's
// VPDPBUSD (vnni_amd64.s), which computes the batched Q8_0/Q4_0/Q5_0
// products (vnni_amd64.go: activations biased to unsigned bytes, each
// lane starting at -128·Σx, so the integer sums are exact and the float
// steps stay the generic ones), VPDPWSSD with GFNI in the K-quant decode
// kernels' block loops (kvnni_amd64.s: same block totals, shared float
// steps), and the float batches' register tiles
// (f32tile_amd64.s: two rows by four vectors, 32 lanes a cell in two zmm
// registers, finished in dotF32Ptr's order), which a Go-compiled tile could
// not match: archsimd code with that many live vectors ran no faster than
// one dot at a time.
//
// The exception: BF16 weights on CPUs with AVX512_BF16 (bf16dp_amd64.go)
// are multiplied with VDPBF16PS, bfloat16 weights by the activations'
// bfloat16 bits, which adds pairs of exact products into 16 float32 lanes
// and flushes denormals, at twice the float32 tile's multiply-adds per
// instruction (bench-dense BF16 prefill doubled; BENCHMARKS.md). Issue 15
// allows this where mirroring the SIMD order in pure Go is not worth it: the
// rounding differs from the generic kernel's 32-lane order by at most a
// float32 summation bound (approxBound in the tests, which hold every such
// kernel to it). Decode, batches and leftovers all sum a row's products the
// same way, so on such a CPU a result does not depend on the batch it is in
// (speculative decoding stays greedy-exact); pure-Go builds and CPUs without
// the instruction keep the bit-exact float path, so a BF16 model's outputs
// there and on an AVX512_BF16 CPU can differ in the last bits.
//
// DotRows and AxpyRows do many attention dots / weighted value rows per
// call, bit-identical to loops of Dot and Axpy.
//
// # AVX upper state and legacy SSE
//
// Go compiles scalar float32 code (and more) to legacy, non-VEX SSE
// instructions: MOVSS/ADDSS/MULSS/CVTSI2SS, XORPS, MOVUPS X15 to zero
// memory, MOVUPS for spills and moves of 128-bit vectors in X0-X15, MOVQ of
// a logical ShiftAllRight's constant count (Go 1.26 has an immediate form
// only for left and arithmetic shifts), and it never emits VZEROUPPER. On
// Intel CPUs each switch between legacy SSE and VEX code while the upper
// halves of the vector registers are dirty (after any 256/512-bit
// instruction) is a state transition: about 130 ns on the Xeon VM of
// BENCHMARKS.md (issue 15), which made the SIMD build slower than pure Go.
// So the kernels follow one rule: vector work, then
// archsimd.ClearAVXUpperBits (VZEROUPPER, ~1 cycle), then scalar work, and
// every kernel returns with the upper state clean. storeHsum8 and hmax16
// clear before their scalar result, so tails and finishing steps come after
// them (the compiler does not keep register-only work after the clear where
// it is written: storeHsum8 hands its sum over in an integer register); loops do no scalar float arithmetic between vector instructions
// (scales are products of broadcast vectors, mulBc8; lanes go out through
// integer registers, store4, f16Store); right shifts by a constant that a
// byte mask follows are arithmetic; Float32x4 sums live in 256-bit values.
// VZEROUPPER clobbers every vector register (the compiler spills live
// vectors around it), so it is placed inside a loop that carries vectors
// only where that loop's body is long (the AVX2 K-quant decode kernels: once
// per kBuf blocks, reloading their constants from the stack). A zero Float32x4 (var v archsimd.Float32x4) is a MOVUPS from
// X15 and runtime.memmove copies with MOVUPS too, so values that outlive
// vector work are 256-bit and partial stores go through integer
// registers; a Go variable shift count goes through MOVQ, so shifts by a
// loop variable use a vector of counts (shrBytes). To check a build:
// objdump -d a GOEXPERIMENT=simd binary and look for non-V instructions on
// %xmm in functions that use %ymm/%zmm, and in the row-group walkers that
// only call vector helpers (dotQ4_KAVX512 and the like) as well.
//
// # Threads
//
// Pool keeps threads-1 worker goroutines that spin briefly between jobs, so a
// decode step's hundreds of short parallel loops each start in well under a
// microsecond; idle workers park after spinTime.
package tensor
