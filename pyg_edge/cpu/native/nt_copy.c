/*
 * Non-temporal copies for CTranslate2's large memcpy/memmove calls, in any process.
 *
 * Each decode step CTranslate2 copies every layer's key/value cache into a new buffer
 * (docs/ctranslate2-bugs/kv_cache_copy.md). glibc's memmove switches to non-temporal stores
 * (no read of the destination lines first) only past a threshold it derives from the cache
 * size, 190 MB on the Intel Xeon measured, so never; the `pyg-edge` command lowers it with
 * GLIBC_TUNABLES when it starts, which an app's process cannot do once running.
 *
 * pyg_nt_copy_install() points libctranslate2's own GOT entries for memcpy and memmove at
 * nt_copy (got.c), which streams copies of `threshold` bytes or more and hands everything else
 * (small copies, overlapping moves) to glibc. Only CTranslate2's calls change: nothing
 * process-wide. The bytes copied are the same; pyg_nt_copy_check() proves it on this
 * machine before the install.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* got.c: points one loaded library's own entries for these symbols at these functions. */
struct pyg_redirect { const char *name; void *value; };
int pyg_got_redirect(const char *path, const struct pyg_redirect *redirects, int count);

static size_t nt_threshold = (size_t)-1;
static long long nt_copies = 0; /* lets a test see that CTranslate2's copies reach this file */

long long pyg_nt_copy_count(void) { return nt_copies; }

/*
 * Streams body bytes (a multiple of 64, out 64-byte aligned) a cache line per store where
 * the CPU can: a full-line non-temporal store leaves the write-combining buffer at once, and
 * was faster than 16-byte ones (2.7B shape at 1,556 tokens, Intel Xeon: glibc's AVX-512
 * non-temporal memmove led an SSE2 loop by 4% of decode).
 */
__attribute__((target("avx512f"))) static void stream_lines_avx512(char *out, const char *in,
                                                                    size_t body) {
    for (size_t i = 0; i < body; i += 64)
        _mm512_stream_si512((__m512i *)(out + i), _mm512_loadu_si512((const void *)(in + i)));
}

/*
 * Four pages at a time, 256 bytes of each in turn, the next 256 of each prefetched: four
 * sequential streams the memory controller keeps open together (glibc's large copy does
 * the same). Then the lines left over.
 */
enum { PAGE = 4096, CHUNK = 256, PAGES = 4 };

__attribute__((target("avx512f"))) static void stream_avx512(char *out, const char *in,
                                                              size_t body) {
    size_t done = 0;
    for (; done + PAGES * PAGE <= body; done += PAGES * PAGE) {
        for (size_t j = 0; j < PAGE; j += CHUNK) {
            for (size_t k = 0; k < PAGES; k++) {
                const char *s = in + done + k * PAGE + j;
                char *d = out + done + k * PAGE + j;
                _mm_prefetch(s + CHUNK, _MM_HINT_T0);
                _mm_prefetch(s + CHUNK + 128, _MM_HINT_T0);
                const __m512i a = _mm512_loadu_si512((const void *)s);
                const __m512i b = _mm512_loadu_si512((const void *)(s + 64));
                const __m512i c = _mm512_loadu_si512((const void *)(s + 128));
                const __m512i e = _mm512_loadu_si512((const void *)(s + 192));
                _mm512_stream_si512((__m512i *)d, a);
                _mm512_stream_si512((__m512i *)(d + 64), b);
                _mm512_stream_si512((__m512i *)(d + 128), c);
                _mm512_stream_si512((__m512i *)(d + 192), e);
            }
        }
    }
    stream_lines_avx512(out + done, in + done, body - done);
}

__attribute__((target("avx"))) static void stream_avx(char *out, const char *in, size_t body) {
    for (size_t i = 0; i < body; i += 64) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(in + i));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(in + i + 32));
        _mm256_stream_si256((__m256i *)(out + i), a);
        _mm256_stream_si256((__m256i *)(out + i + 32), b);
    }
}

static void stream_sse2(char *out, const char *in, size_t body) {
    for (size_t i = 0; i < body; i += 64) {
        const __m128i a = _mm_loadu_si128((const __m128i *)(in + i));
        const __m128i b = _mm_loadu_si128((const __m128i *)(in + i + 16));
        const __m128i c = _mm_loadu_si128((const __m128i *)(in + i + 32));
        const __m128i e = _mm_loadu_si128((const __m128i *)(in + i + 48));
        _mm_stream_si128((__m128i *)(out + i), a);
        _mm_stream_si128((__m128i *)(out + i + 16), b);
        _mm_stream_si128((__m128i *)(out + i + 32), c);
        _mm_stream_si128((__m128i *)(out + i + 48), e);
    }
}

static void (*stream_body)(char *, const char *, size_t) = stream_sse2;

static void choose_stream(void) {
    __builtin_cpu_init();
    stream_body = __builtin_cpu_supports("avx512f") ? stream_avx512
                  : __builtin_cpu_supports("avx") ? stream_avx : stream_sse2;
}

const char *pyg_nt_copy_kind(void) {
    return stream_body == stream_avx512 ? "avx512" : stream_body == stream_avx ? "avx" : "sse2";
}

static void *nt_copy(void *dst, const void *src, size_t n) {
    const uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    if (n < nt_threshold || (d < s + n && s < d + n))
        return memmove(dst, src, n);
    __atomic_add_fetch(&nt_copies, 1, __ATOMIC_RELAXED);
    const size_t head = (64 - (d & 63)) & 63;
    memcpy(dst, src, head);
    char *out = (char *)dst + head;
    const char *in = (const char *)src + head;
    const size_t body = (n - head) & ~(size_t)63;
    stream_body(out, in, body);
    _mm_sfence(); /* the streamed lines are visible before the copy returns */
    memcpy(out + body, in + body, n - head - body);
    return dst;
}

/*
 * Copies of every size class and alignment, and overlapping moves, against memmove, with
 * guard bytes around the destination. Returns 0 when every byte is as memmove leaves it.
 */
int pyg_nt_copy_check(size_t threshold) {
    choose_stream();
    const size_t sizes[] = {0, 1, 63, 64, 65, threshold - 1, threshold, threshold + 1,
                            3 * threshold + 17};
    const size_t total = 4 * threshold + 256;
    unsigned char *src = malloc(total), *got = malloc(total), *want = malloc(total);
    int failed = src == NULL || got == NULL || want == NULL;
    const size_t saved = nt_threshold;
    nt_threshold = threshold;
    for (size_t i = 0; i < total && !failed; i++)
        src[i] = (unsigned char)(i * 131 + 7);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes && !failed; k++) {
        for (size_t offset = 0; offset < 4 && !failed; offset++) {
            memset(got, 0xA5, total);
            memset(want, 0xA5, total);
            nt_copy(got + 64 + offset, src + 3 - offset % 3, sizes[k]);
            memmove(want + 64 + offset, src + 3 - offset % 3, sizes[k]);
            failed = memcmp(got, want, total) != 0;
        }
    }
    for (size_t shift = 1; shift < 130 && !failed; shift += 64) { /* overlapping moves */
        memcpy(got, src, total);
        memcpy(want, src, total);
        nt_copy(got + shift, got, 2 * threshold);
        memmove(want + shift, want, 2 * threshold);
        nt_copy(got, got + shift, 2 * threshold);
        memmove(want, want + shift, 2 * threshold);
        failed = memcmp(got, want, total) != 0;
    }
    nt_threshold = saved;
    free(src);
    free(got);
    free(want);
    return failed ? -1 : 0;
}

/*
 * Points the memcpy/memmove slots of the already loaded library at path to nt_copy, for
 * copies of threshold bytes or more. Returns how many slots changed, or -1.
 */
int pyg_nt_copy_install(const char *path, size_t threshold) {
    choose_stream();
    nt_threshold = threshold;
    const struct pyg_redirect copies[] = {{"memcpy", (void *)nt_copy},
                                          {"memmove", (void *)nt_copy}};
    return pyg_got_redirect(path, copies, 2);
}
