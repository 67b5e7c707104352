/*
 * Loaded with RTLD_GLOBAL before CTranslate2, this library replaces, for CTranslate2's
 * statically linked oneMKL, the few exported functions that decide its speed on non-Intel
 * x86-64 CPUs (pyg_edge/cpu/gemm_backend.py chooses, tests and enables it):
 *
 * - mkl_serv_cpu_detect / mkl_serv_cpuisclx: oneMKL picks its kernels from these. On AMD
 *   it answers 0 and runs its slow reference code; the answer set here selects the AVX2 or
 *   AVX-512 VNNI kernels instead.
 * - cblas_gemm_s8u8s32: CTranslate2's int8 GEMM when it uses MKL. oneMKL's AVX2 int8
 *   kernels saturate 16-bit sums (vpmaddubsw), so without VNNI their products are wrong
 *   for the full u8 x s8 range CTranslate2 uses. In "exact" mode this library computes
 *   the product itself for the few-row case (decode: one row per reply), widening to
 *   16 bits so nothing saturates, and hands the many-row case (prompts) to oneMKL's
 *   int16 GEMM (vpmaddwd: exact for these ranges) on 16-bit copies of both operands.
 *   (Two int8 products whose inputs cannot saturate, a = 2 * (a >> 1) + (a & 1), were
 *   measured 1.2x slower than that.)
 *   In "exact VNNI" mode (AVX-512 VNNI CPUs, weights left unpacked) the few-row case is
 *   computed here with vpdpbusd, whose four-product 32-bit sums cannot saturate, straight
 *   from CTranslate2's unpacked weights, and the many-row case goes to oneMKL unchanged:
 *   oneMKL's packed copy of the weights (2.7 GB for the 2.7B) is then never made.
 *
 * CTranslate2 calls these through its PLT, so the definitions here win. Nothing is used
 * before pyg_mkl_shim_configure() has found CTranslate2's own cblas_gemm_s8u8s32.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* mkl_cblas.h values */
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
enum { ROW_OFFSET = 171, COL_OFFSET = 172, FIX_OFFSET = 173 };
enum { MODE_PASSTHROUGH = 0, MODE_EXACT = 1, MODE_EXACT_VNNI = 2 };
/* PARALLEL_CHUNK: weight rows per chunk of work (160 KB of the 2.7B's int8 weights). */
enum { FEW_ROWS = 8, WIDE_ROW_BLOCK = 256, PARALLEL_CHUNK = 64 };

/* The wheel's oneMKL is the ILP64 build (CTranslate2 defines MKL_ILP64): 64-bit sizes. */
typedef int64_t mkl_int;
typedef void (*gemm_s8u8s32_fn)(int, int, int, int, mkl_int, mkl_int, mkl_int, float,
                                const void *, mkl_int, int8_t, const void *, mkl_int, int8_t,
                                float, int32_t *, mkl_int, const int32_t *);
typedef void (*gemm_s16s16s32_fn)(int, int, int, int, mkl_int, mkl_int, mkl_int, float,
                                  const int16_t *, mkl_int, int16_t, const int16_t *, mkl_int,
                                  int16_t, float, int32_t *, mkl_int, const int32_t *);
typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);

static int cpu_type = 0;
static int cpu_is_clx = 0;
static int mode = MODE_PASSTHROUGH;
static gemm_s8u8s32_fn mkl_gemm = NULL;
static gemm_s16s16s32_fn mkl_gemm_s16 = NULL;
static gomp_parallel_fn gomp_parallel = NULL;
static long long gemm_calls = 0; /* lets a test see that CTranslate2's calls reach this file */

int mkl_serv_cpu_detect(void) { return cpu_type; }
int mkl_serv_cpuisclx(void) { return cpu_is_clx; }

long long pyg_mkl_shim_gemm_calls(void) { return gemm_calls; }

/* Sets what oneMKL is told about the CPU; call before CTranslate2 is loaded. */
void pyg_mkl_shim_set_cpu(int type, int is_clx) {
    cpu_type = type;
    cpu_is_clx = is_clx;
}

/*
 * Finds CTranslate2's own GEMM (and its OpenMP runtime, to share its threads) in the
 * already loaded libraries at these paths, and sets the mode. Returns 0, or -1 when
 * CTranslate2's GEMM cannot be found (the caller must then not enable MKL).
 */
int pyg_mkl_shim_configure(const char *ctranslate2_path, const char *gomp_path, int new_mode) {
    void *ct2 = dlopen(ctranslate2_path, RTLD_LAZY | RTLD_NOLOAD);
    if (ct2 == NULL)
        ct2 = dlopen(ctranslate2_path, RTLD_LAZY | RTLD_LOCAL);
    if (ct2 == NULL)
        return -1;
    mkl_gemm = (gemm_s8u8s32_fn)dlsym(ct2, "cblas_gemm_s8u8s32");
    mkl_gemm_s16 = (gemm_s16s16s32_fn)dlsym(ct2, "cblas_gemm_s16s16s32");
    if (mkl_gemm == NULL || mkl_gemm_s16 == NULL)
        return -1;
    void *gomp = gomp_path && *gomp_path ? dlopen(gomp_path, RTLD_LAZY | RTLD_NOLOAD) : NULL;
    if (gomp != NULL)
        gomp_parallel = (gomp_parallel_fn)dlsym(gomp, "GOMP_parallel");
    mode = new_mode;
    return 0;
}

/*
 * Runs body(job, begin, end) over [0, count) on CTranslate2's OpenMP threads, in chunks
 * the threads take as they come: a thread the OS delays (2 cores shared with the rest of
 * the machine) then holds up one chunk, not a fixed half of the work.
 */
typedef void (*range_fn)(const void *job, int begin, int end);

struct parallel_loop {
    range_fn body;
    const void *job;
    int count, chunk;
    int next; /* the next chunk's start, taken atomically */
};

static void parallel_loop_thread(void *data) {
    struct parallel_loop *loop = data;
    for (;;) {
        const int begin = __atomic_fetch_add(&loop->next, loop->chunk, __ATOMIC_RELAXED);
        if (begin >= loop->count)
            return;
        loop->body(loop->job, begin, begin + loop->chunk < loop->count ? begin + loop->chunk
                                                                        : loop->count);
    }
}

static void parallel_for(range_fn body, const void *job, int count, int chunk) {
    struct parallel_loop loop = {body, job, count, chunk, 0};
    if (gomp_parallel != NULL && count > chunk)
        gomp_parallel(parallel_loop_thread, &loop, 0, 0);
    else
        body(job, 0, count);
}

/* ---- few rows: c[i][j] = sum_p a[i][p] * b[j][p] + co[j], B stored n x k ---- */

struct few_rows_job {
    int m, n, k, lda, ldb, ldc;
    const uint8_t *a;
    const int8_t *b;
    const int16_t *a16; /* a widened to int16, m rows of k_padded */
    int k_padded;
    int32_t *c;
    const int32_t *co; /* n offsets, or NULL */
};

__attribute__((target("avx2"))) static inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Loops over a tile of weight rows x input rows, unrolled so that its accumulators live in
 * registers (the kernels below are written for constant tile sizes). */
#define UNROLLED _Pragma("GCC unroll 8")

/*
 * NB weight rows x M input rows per pass over k, both constants after inlining: weights
 * are read once for all M rows, widened to 16 bits and multiplied with vpmaddwd, whose
 * 32-bit pair sums cannot overflow for u8 x s8; each widened input block serves NB weight
 * rows, and the NB x M sums are independent chains. NB x M accumulators + NB weights + 1
 * input fit the 16 registers for the tiles of AVX2_RANGE below. The next tile's weight rows
 * are prefetched: the weight streams are short (2.5 KB rows), and with the hardware
 * prefetcher alone a 1 x 7680 x 2560 product read 16 GB/s of 29 (Intel Xeon, 2 threads).
 */
__attribute__((target("avx2"), always_inline)) static inline void
avx2_block(const struct few_rows_job *job, int j, const int NB, const int M) {
    const int k = job->k, k16 = k & ~15;
    const size_t ahead = (size_t)NB * job->ldb;
    const int8_t *b[4];
    __m256i acc[4][FEW_ROWS], w[4];
    UNROLLED
    for (int q = 0; q < NB; q++)
        b[q] = job->b + (size_t)(j + q) * job->ldb;
    UNROLLED
    for (int q = 0; q < NB; q++)
        UNROLLED
        for (int i = 0; i < M; i++)
            acc[q][i] = _mm256_setzero_si256();
    for (int p = 0; p < k16; p += 16) {
        UNROLLED
        for (int q = 0; q < NB; q++) {
            w[q] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b[q] + p)));
            if ((p & 63) == 0) /* a cache line */
                _mm_prefetch((const char *)(b[q] + ahead + p), _MM_HINT_T0);
        }
        UNROLLED
        for (int i = 0; i < M; i++) {
            const __m256i x =
                _mm256_load_si256((const __m256i *)(job->a16 + (size_t)i * job->k_padded + p));
            UNROLLED
            for (int q = 0; q < NB; q++)
                acc[q][i] = _mm256_add_epi32(acc[q][i], _mm256_madd_epi16(w[q], x));
        }
    }
    UNROLLED
    for (int q = 0; q < NB; q++)
        UNROLLED
        for (int i = 0; i < M; i++) {
            int32_t sum = hsum_epi32(acc[q][i]);
            const uint8_t *ai = job->a + (size_t)i * job->lda;
            for (int p = k16; p < k; p++)
                sum += (int32_t)ai[p] * (int32_t)b[q][p];
            job->c[(size_t)i * job->ldc + j + q] = sum + (job->co ? job->co[j + q] : 0);
        }
}

/* Weight rows [begin, end) for M input rows: tiles of NB, then one at a time. */
#define AVX2_RANGE(M, NB)                                                                     \
    __attribute__((target("avx2"))) static void few_rows_range_##M(                          \
        const struct few_rows_job *job, int begin, int end) {                                 \
        int j = begin;                                                                        \
        for (; j + NB <= end; j += NB)                                                        \
            avx2_block(job, j, NB, M);                                                        \
        for (; j < end; j++)                                                                  \
            avx2_block(job, j, 1, M);                                                         \
    }
AVX2_RANGE(1, 4)
AVX2_RANGE(2, 4)
AVX2_RANGE(3, 3)
AVX2_RANGE(4, 2)
AVX2_RANGE(5, 2)
AVX2_RANGE(6, 2)
AVX2_RANGE(7, 1)
AVX2_RANGE(8, 1)

static void few_rows_range(const void *data, int begin, int end) {
    const struct few_rows_job *job = data;
    switch (job->m) {
    case 1: few_rows_range_1(job, begin, end); break;
    case 2: few_rows_range_2(job, begin, end); break;
    case 3: few_rows_range_3(job, begin, end); break;
    case 4: few_rows_range_4(job, begin, end); break;
    case 5: few_rows_range_5(job, begin, end); break;
    case 6: few_rows_range_6(job, begin, end); break;
    case 7: few_rows_range_7(job, begin, end); break;
    default: few_rows_range_8(job, begin, end); break;
    }
}

static int few_rows_gemm(int m, int n, int k, const uint8_t *a, int lda, const int8_t *b,
                         int ldb, int32_t *c, int ldc, const int32_t *co) {
    const int k_padded = (k + 15) & ~15;
    int16_t *a16 = aligned_alloc(32, (size_t)m * k_padded * sizeof(int16_t));
    if (a16 == NULL)
        return -1;
    for (int i = 0; i < m; i++) {
        for (int p = 0; p < k; p++)
            a16[(size_t)i * k_padded + p] = a[(size_t)i * lda + p];
        for (int p = k; p < k_padded; p++)
            a16[(size_t)i * k_padded + p] = 0;
    }
    struct few_rows_job job = {m, n, k, lda, ldb, ldc, a, b, a16, k_padded, c, co};
    parallel_for(few_rows_range, &job, n, PARALLEL_CHUNK);
    free(a16);
    return 0;
}

/* ---- few rows with AVX-512 VNNI: vpdpbusd on the unpacked u8 rows and s8 weights ---- */

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/* Lanes p..p+63 of a row of k bytes, zeros past its end. */
VNNI_TARGET static inline __m512i load_block(const void *row, int p, int k) {
    const int left = k - p;
    if (left >= 64)
        return _mm512_loadu_si512((const char *)row + p);
    return _mm512_maskz_loadu_epi8(((__mmask64)1 << left) - 1, (const char *)row + p);
}

/*
 * NB weight rows x M input rows per pass over k, both compile-time constants after
 * inlining: each 64-byte weight block is read once for all M rows, each input block once
 * for all NB weight rows, and the NB x M sums are independent vpdpbusd chains, enough to
 * hide its latency (one row against one weight row at a time left two chains at M = 2:
 * 1.9x the time of one row). NB x M accumulators + NB weights + 1 input fit the 32
 * registers for NB = 4, M <= 6 and NB = 3, M <= 8. The next tile's weight rows are
 * prefetched, as in avx2_block: with more work per weight byte than one row, the hardware
 * prefetcher alone left 4-row products at 65% of the read bandwidth.
 */
VNNI_TARGET __attribute__((always_inline)) static inline void
vnni_block(const struct few_rows_job *job, int j, const int NB, const int M) {
    const int k = job->k, k64 = k & ~63;
    const int8_t *b[4];
    const uint8_t *a[FEW_ROWS];
    __m512i acc[4][FEW_ROWS], w[4];
    UNROLLED
    for (int q = 0; q < NB; q++)
        b[q] = job->b + (size_t)(j + q) * job->ldb;
    UNROLLED
    for (int i = 0; i < M; i++)
        a[i] = job->a + (size_t)i * job->lda;
    UNROLLED
    for (int q = 0; q < NB; q++)
        UNROLLED
        for (int i = 0; i < M; i++)
            acc[q][i] = _mm512_setzero_si512();
    const size_t ahead = (size_t)NB * job->ldb; /* the next tile's weight rows */
    for (int p = 0; p < k64; p += 64) {
        UNROLLED
        for (int q = 0; q < NB; q++) {
            w[q] = _mm512_loadu_si512(b[q] + p);
            _mm_prefetch((const char *)(b[q] + ahead + p), _MM_HINT_T0);
        }
        UNROLLED
        for (int i = 0; i < M; i++) {
            const __m512i x = _mm512_loadu_si512(a[i] + p);
            UNROLLED
            for (int q = 0; q < NB; q++)
                acc[q][i] = _mm512_dpbusd_epi32(acc[q][i], x, w[q]);
        }
    }
    if (k64 < k) { /* the last, partial block: zeros past the end */
        UNROLLED
        for (int q = 0; q < NB; q++)
            w[q] = load_block(b[q], k64, k);
        UNROLLED
        for (int i = 0; i < M; i++) {
            const __m512i x = load_block(a[i], k64, k);
            UNROLLED
            for (int q = 0; q < NB; q++)
                acc[q][i] = _mm512_dpbusd_epi32(acc[q][i], x, w[q]);
        }
    }
    UNROLLED
    for (int q = 0; q < NB; q++)
        UNROLLED
        for (int i = 0; i < M; i++)
            job->c[(size_t)i * job->ldc + j + q] =
                _mm512_reduce_add_epi32(acc[q][i]) + (job->co ? job->co[j + q] : 0);
}

/* Weight rows [begin, end) for M input rows: blocks of NB, then one at a time. */
#define VNNI_RANGE(M, NB)                                                                     \
    VNNI_TARGET static void vnni_range_##M(const struct few_rows_job *job, int begin,         \
                                           int end) {                                         \
        int j = begin;                                                                        \
        for (; j + NB <= end; j += NB)                                                        \
            vnni_block(job, j, NB, M);                                                        \
        for (; j < end; j++)                                                                  \
            vnni_block(job, j, 1, M);                                                         \
    }
VNNI_RANGE(1, 4)
VNNI_RANGE(2, 4)
VNNI_RANGE(3, 4)
VNNI_RANGE(4, 4)
VNNI_RANGE(5, 4)
VNNI_RANGE(6, 4)
VNNI_RANGE(7, 3)
VNNI_RANGE(8, 3)

static void vnni_range(const void *data, int begin, int end) {
    const struct few_rows_job *job = data;
    switch (job->m) {
    case 1: vnni_range_1(job, begin, end); break;
    case 2: vnni_range_2(job, begin, end); break;
    case 3: vnni_range_3(job, begin, end); break;
    case 4: vnni_range_4(job, begin, end); break;
    case 5: vnni_range_5(job, begin, end); break;
    case 6: vnni_range_6(job, begin, end); break;
    case 7: vnni_range_7(job, begin, end); break;
    default: vnni_range_8(job, begin, end); break;
    }
}

static void vnni_few_rows_gemm(int m, int n, int k, const uint8_t *a, int lda, const int8_t *b,
                               int ldb, int32_t *c, int ldc, const int32_t *co) {
    struct few_rows_job job = {m, n, k, lda, ldb, ldc, a, b, NULL, 0, c, co};
    parallel_for(vnni_range, &job, n, PARALLEL_CHUNK);
}

/* ---- many rows: oneMKL's int16 GEMM on 16-bit copies (exact for u8 x s8) ---- */

struct widen_job {
    const int8_t *b;
    int16_t *b16;
    int rows, k, ldb;
};

__attribute__((target("avx2"))) static void widen_rows(const void *data, int begin, int end) {
    const struct widen_job *job = data;
    const int k16 = job->k & ~15;
    for (int j = begin; j < end; j++) {
        const int8_t *src = job->b + (size_t)j * job->ldb;
        int16_t *dst = job->b16 + (size_t)j * job->k;
        int p = 0;
        for (; p < k16; p += 16)
            _mm256_storeu_si256((__m256i *)(dst + p),
                                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(src + p))));
        for (; p < job->k; p++)
            dst[p] = src[p];
    }
}

/* One buffer per calling thread, kept between calls: a prompt pass calls this for every
 * linear layer, and a fresh 50 MB allocation each time would page-fault it all again. */
static __thread int16_t *wide_buffer = NULL;
static __thread size_t wide_buffer_size = 0;

static int16_t *thread_buffer(size_t count) {
    if (count > wide_buffer_size) {
        free(wide_buffer);
        wide_buffer = malloc(count * sizeof(int16_t));
        wide_buffer_size = wide_buffer ? count : 0;
    }
    return wide_buffer;
}

/* B stored n x k (CTranslate2's weights); C = A.B^T + row offsets, A rows in blocks. */
static int wide_gemm(int m, int n, int k, const uint8_t *a, int lda, const int8_t *b, int ldb,
                     int32_t *c, int ldc, const int32_t *co) {
    const int rows = m < WIDE_ROW_BLOCK ? m : WIDE_ROW_BLOCK;
    int16_t *buffer = thread_buffer((size_t)n * k + (size_t)rows * k);
    if (buffer == NULL)
        return -1;
    int16_t *b16 = buffer, *a16 = buffer + (size_t)n * k;
    struct widen_job widen = {b, b16, n, k, ldb};
    parallel_for(widen_rows, &widen, n, PARALLEL_CHUNK);
    const int32_t zero = 0;
    for (int i0 = 0; i0 < m; i0 += rows) {
        const int mb = m - i0 < rows ? m - i0 : rows;
        for (int i = 0; i < mb; i++)
            for (int p = 0; p < k; p++)
                a16[(size_t)i * k + p] = a[(size_t)(i0 + i) * lda + p];
        mkl_gemm_s16(ROW_MAJOR, NO_TRANS, TRANS, co ? ROW_OFFSET : FIX_OFFSET, mb, n, k, 1.0f,
                     a16, k, 0, b16, k, 0, 0.0f, c + (size_t)i0 * ldc, ldc, co ? co : &zero);
    }
    return 0;
}

/* Exact but slow: any argument combination CTranslate2 does not use. Column major is row
 * major with both operands transposed and C read by columns. */
static void reference_gemm(int layout, int transa, int transb, int offsetc, int m, int n, int k,
                           float alpha, const uint8_t *a, int lda, int8_t ao, const int8_t *b,
                           int ldb, int8_t bo, float beta, int32_t *c, int ldc,
                           const int32_t *co) {
    const int row_major = layout == ROW_MAJOR;
    const int ta = (transa != NO_TRANS) == row_major;
    const int tb = (transb != NO_TRANS) == row_major;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            int64_t sum = 0;
            for (int p = 0; p < k; p++) {
                const int64_t x = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                const int64_t w = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                sum += (x + ao) * (w + bo);
            }
            int32_t offset = 0;
            if (co != NULL)
                offset = offsetc == ROW_OFFSET ? co[j] : offsetc == COL_OFFSET ? co[i] : co[0];
            int32_t *cij = row_major ? c + (size_t)i * ldc + j : c + (size_t)j * ldc + i;
            const double old = beta != 0.0f ? (double)beta * *cij : 0.0;
            *cij = (int32_t)__builtin_lrint((double)alpha * (double)sum + old) + offset;
        }
}

void cblas_gemm_s8u8s32(int layout, int transa, int transb, int offsetc, mkl_int m, mkl_int n,
                        mkl_int k, float alpha, const void *a, mkl_int lda, int8_t ao,
                        const void *b, mkl_int ldb, int8_t bo, float beta, int32_t *c,
                        mkl_int ldc, const int32_t *co) {
    __atomic_add_fetch(&gemm_calls, 1, __ATOMIC_RELAXED);
    const int simple = layout == ROW_MAJOR && transa == NO_TRANS && alpha == 1.0f &&
                       beta == 0.0f && ao == 0 && bo == 0;
    const int32_t *row_co = offsetc == ROW_OFFSET ? co : NULL;
    /* CTranslate2's linear layers: weights n x k, one offset per output column */
    const int linear = simple && transb == TRANS && (offsetc == ROW_OFFSET || co == NULL);
    if (mode == MODE_EXACT_VNNI && linear && m <= FEW_ROWS) {
        vnni_few_rows_gemm(m, n, k, a, lda, b, ldb, c, ldc, row_co);
        return;
    }
    if (mode != MODE_EXACT) {
        mkl_gemm(layout, transa, transb, offsetc, m, n, k, alpha, a, lda, ao, b, ldb, bo, beta,
                 c, ldc, co);
        return;
    }
    if (linear) {
        if (m <= FEW_ROWS && few_rows_gemm(m, n, k, a, lda, b, ldb, c, ldc, row_co) == 0)
            return;
        if (m > FEW_ROWS && wide_gemm(m, n, k, a, lda, b, ldb, c, ldc, row_co) == 0)
            return;
    }
    reference_gemm(layout, transa, transb, offsetc, m, n, k, alpha, a, lda, ao, b, ldb, bo, beta,
                   c, ldc, co);
}
