/*
 * A cache of CTranslate2's large memory blocks, for CTranslate2's own allocations only.
 *
 * A prompt pass makes CTranslate2 allocate and free hundreds of MB per layer. glibc gives
 * such blocks back to the kernel when they are freed (mmap'd blocks, per-thread arenas that
 * shrink), and the kernel zeroes every page again when the next layer touches it: about a
 * third of a long pass's CPU time. glibc's process-wide settings that stop it (one arena, no
 * mmap, never trim: pyg_edge/cpu/tuning.py) also keep the host app's own freed memory.
 *
 * pyg_block_cache_install() points libctranslate2's own malloc, free, calloc, realloc,
 * posix_memalign, aligned_alloc and memalign entries (got.c) at the functions below. A
 * request of LARGE bytes or more gets a block of its size class, mmap'd, and a freed one
 * is kept on its class's list (up to a cap) for the next request of that class: its pages
 * stay resident, so the kernel zeroes nothing. Smaller requests, and blocks of any size
 * this file did not hand out (CTranslate2 may free memory that glibc allocated, before the
 * install or in another library), go to the process's own malloc and free. The host's
 * malloc is never changed.
 *
 * Which blocks are this file's: a registry of the addresses it handed out, looked up only
 * for page-aligned pointers (every block here starts a page; few of glibc's do).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* got.c: points one loaded library's own entries for these symbols at these functions. */
struct pyg_redirect { const char *name; void *value; };
int pyg_got_redirect(const char *path, const struct pyg_redirect *redirects, int count);

enum { PAGE = 4096, LARGE = 128 * 1024, MIN_SHIFT = 17, CLASSES = 4 * (48 - MIN_SHIFT) };
enum { REGISTRY_BITS = 16, REGISTRY = 1 << REGISTRY_BITS };

struct block { struct block *next; };
struct entry { uintptr_t address; int size_class; };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct block *kept[CLASSES];     /* freed blocks, by size class */
static struct entry registry[REGISTRY]; /* every block handed out, kept or in use */
static size_t registered;
static size_t cap_bytes, kept_bytes, used_bytes;
static long long reused, mapped, mapped_bytes;

/* Size classes: four per power of two from LARGE up (at most 25% over the request). */
static int class_of(size_t size, size_t *class_size) {
    int shift = 63 - __builtin_clzll((unsigned long long)size);
    const size_t step = (size_t)1 << (shift - 2);
    size_t rounded = (size + step - 1) & ~(step - 1);
    if (rounded >> shift >= 8)  /* rounded up to the next power of two */
        shift++;
    const int sub = (int)(rounded >> (shift - 2)) - 4;
    *class_size = rounded;
    return 4 * (shift - MIN_SHIFT) + sub;
}

static size_t size_of_class(int size_class) {
    const int shift = size_class / 4 + MIN_SHIFT;
    return (size_t)(4 + size_class % 4) << (shift - 2);
}

static size_t slot_of(uintptr_t address) {
    return (size_t)(((address >> 12) * 0x9E3779B97F4A7C15ull) >> (64 - REGISTRY_BITS));
}

static struct entry *find(uintptr_t address) {
    for (size_t i = slot_of(address);; i = (i + 1) & (REGISTRY - 1)) {
        if (registry[i].address == address)
            return &registry[i];
        if (registry[i].address == 0)
            return NULL;
    }
}

static int add(uintptr_t address, int size_class) {
    if (registered >= REGISTRY / 2)  /* half full at most: lookups stay short */
        return -1;
    size_t i = slot_of(address);
    while (registry[i].address != 0)
        i = (i + 1) & (REGISTRY - 1);
    registry[i] = (struct entry){address, size_class};
    registered++;
    return 0;
}

/* Linear probing's deletion: the entries after the hole move back where they may. */
static void drop(struct entry *e) {
    size_t hole = (size_t)(e - registry);
    for (size_t i = (hole + 1) & (REGISTRY - 1); registry[i].address != 0;
         i = (i + 1) & (REGISTRY - 1)) {
        const size_t home = slot_of(registry[i].address);
        if (((i - home) & (REGISTRY - 1)) >= ((i - hole) & (REGISTRY - 1))) {
            registry[hole] = registry[i];
            hole = i;
        }
    }
    registry[hole].address = 0;
    registered--;
}

/* Pops a kept block of class c (under the lock), or NULL. */
static struct block *pop(int c) {
    struct block *b = kept[c];
    if (b != NULL) {
        kept[c] = b->next;
        kept_bytes -= size_of_class(c);
    }
    return b;
}

/*
 * A kept block for class c, resident: one of its class or up to FIT_CLASSES above (at most
 * 4x), else the largest smaller one grown to the class with mremap, whose kernel moves the
 * resident pages and zeroes only the pages added. Kept memory thus serves any size, as
 * glibc's coalescing heap does: with one list per class alone, a 1,556-token pass of the
 * 2.7B shape still mapped 12 GB of fresh pages per pass against a 2 GB cap. NULL if none.
 */
enum { FIT_CLASSES = 8 };

static void *reuse(int c) {
    pthread_mutex_lock(&lock);
    for (int k = c; k < CLASSES && k <= c + FIT_CLASSES; k++) {
        struct block *b = pop(k);
        if (b != NULL) {
            used_bytes += size_of_class(k);
            reused++;
            pthread_mutex_unlock(&lock);
            return b;
        }
    }
    int k = c - 1;
    while (k >= 0 && kept[k] == NULL)
        k--;
    struct block *b = k >= 0 ? pop(k) : NULL;
    pthread_mutex_unlock(&lock);
    if (b == NULL)
        return NULL;
    void *q = mremap(b, size_of_class(k), size_of_class(c), MREMAP_MAYMOVE);
    pthread_mutex_lock(&lock);
    if (q == MAP_FAILED) {  /* kept as it was */
        b->next = kept[k];
        kept[k] = b;
        kept_bytes += size_of_class(k);
        pthread_mutex_unlock(&lock);
        return NULL;
    }
    drop(find((uintptr_t)b));
    add((uintptr_t)q, c);  /* cannot fail: one entry out, one in */
    used_bytes += size_of_class(c);
    reused++;
    mapped_bytes += (long long)(size_of_class(c) - size_of_class(k));
    pthread_mutex_unlock(&lock);
    return q;
}

/* A block of size's class, and whether its bytes are fresh from the kernel (zero). */
static void *take(size_t size, int *fresh) {
    size_t class_size;
    const int size_class = class_of(size, &class_size);
    if (size_class >= CLASSES)
        return NULL;
    void *p = reuse(size_class);
    if (p != NULL) {
        *fresh = 0;
        return p;
    }
    p = mmap(NULL, class_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    pthread_mutex_lock(&lock);
    const int added = add((uintptr_t)p, size_class);
    if (added == 0) {
        used_bytes += class_size;
        mapped++;
        mapped_bytes += (long long)class_size;
    }
    pthread_mutex_unlock(&lock);
    if (added != 0) {
        munmap(p, class_size);
        return NULL;
    }
    *fresh = 1;
    return p;
}

/* Gives p back to the cache (or the kernel past the cap); 0 if p is not this file's. */
static int give(void *p) {
    if (((uintptr_t)p & (PAGE - 1)) != 0)
        return 0;
    pthread_mutex_lock(&lock);
    struct entry *e = find((uintptr_t)p);
    if (e == NULL) {
        pthread_mutex_unlock(&lock);
        return 0;
    }
    const size_t size = size_of_class(e->size_class);
    used_bytes -= size;
    if (kept_bytes + size <= cap_bytes) {
        struct block *b = p;
        b->next = kept[e->size_class];
        kept[e->size_class] = b;
        kept_bytes += size;
        pthread_mutex_unlock(&lock);
        return 1;
    }
    drop(e);
    pthread_mutex_unlock(&lock);
    munmap(p, size);
    return 1;
}

/* The usable size of p if it is this file's block in use, else 0. */
static size_t block_size(void *p) {
    if (((uintptr_t)p & (PAGE - 1)) != 0)
        return 0;
    pthread_mutex_lock(&lock);
    struct entry *e = find((uintptr_t)p);
    const size_t size = e == NULL ? 0 : size_of_class(e->size_class);
    pthread_mutex_unlock(&lock);
    return size;
}

static void *cache_malloc(size_t size) {
    int fresh;
    void *p = size >= LARGE ? take(size, &fresh) : NULL;
    return p != NULL ? p : malloc(size);
}

static void cache_free(void *p) {
    if (p != NULL && !give(p))
        free(p);
}

static void *cache_calloc(size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    int fresh = 0;
    void *p = total >= LARGE ? take(total, &fresh) : NULL;
    if (p == NULL)
        return calloc(count, size);
    if (!fresh)
        memset(p, 0, total);
    return p;
}

static void *cache_realloc(void *p, size_t size) {
    if (p == NULL)
        return cache_malloc(size);
    const size_t old = block_size(p);
    if (old == 0)
        return realloc(p, size);  /* not this file's: glibc's own */
    if (size == 0) {
        cache_free(p);
        return NULL;
    }
    if (size <= old && size >= LARGE)
        return p;
    void *q = cache_malloc(size);
    if (q != NULL) {
        memcpy(q, p, size < old ? size : old);
        cache_free(p);
    }
    return q;
}

static int cache_posix_memalign(void **out, size_t alignment, size_t size) {
    int fresh;
    const int valid = alignment >= sizeof(void *) && (alignment & (alignment - 1)) == 0;
    void *p = size >= LARGE && valid && alignment <= PAGE ? take(size, &fresh) : NULL;
    if (p == NULL)
        return posix_memalign(out, alignment, size);
    *out = p;
    return 0;
}

static void *cache_aligned_alloc(size_t alignment, size_t size) {
    void *p = NULL;
    const int error = cache_posix_memalign(&p, alignment < sizeof(void *) ? sizeof(void *)
                                                                           : alignment, size);
    if (error != 0) {
        errno = error;
        return NULL;
    }
    return p;
}

/*
 * Points the allocation entries of the loaded library at path at this cache, keeping up to
 * cap bytes of freed blocks. Returns how many entries changed, or -1. Once per process.
 */
static void lock_for_fork(void) { pthread_mutex_lock(&lock); }
static void unlock_after_fork(void) { pthread_mutex_unlock(&lock); }

int pyg_block_cache_install(const char *path, size_t cap) {
    cap_bytes = cap;
    /* a child forked while another thread held the lock would wait for it forever */
    pthread_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);
    const struct pyg_redirect calls[] = {
        {"malloc", (void *)cache_malloc},       {"free", (void *)cache_free},
        {"calloc", (void *)cache_calloc},       {"realloc", (void *)cache_realloc},
        {"posix_memalign", (void *)cache_posix_memalign},
        {"aligned_alloc", (void *)cache_aligned_alloc},
        {"memalign", (void *)cache_aligned_alloc},
    };
    return pyg_got_redirect(path, calls, sizeof calls / sizeof *calls);
}

/* Gives every kept block back to the kernel (after a model load or close). */
void pyg_block_cache_release(void) {
    pthread_mutex_lock(&lock);
    struct block *blocks[CLASSES];
    memcpy(blocks, kept, sizeof kept);
    memset(kept, 0, sizeof kept);
    kept_bytes = 0;
    for (int c = 0; c < CLASSES; c++)
        for (struct block *b = blocks[c]; b != NULL; b = b->next)
            drop(find((uintptr_t)b));
    pthread_mutex_unlock(&lock);
    for (int c = 0; c < CLASSES; c++) {
        for (struct block *b = blocks[c], *next; b != NULL; b = next) {
            next = b->next;
            munmap(b, size_of_class(c));
        }
    }
}

/*
 * What the cache holds, for tests and benchmarks: bytes kept and in use, blocks reused and
 * mapped, and the bytes mapped (fresh pages the kernel zeroes when they are touched).
 */
void pyg_block_cache_stats(long long out[5]) {
    pthread_mutex_lock(&lock);
    out[0] = (long long)kept_bytes;
    out[1] = (long long)used_bytes;
    out[2] = reused;
    out[3] = mapped;
    out[4] = mapped_bytes;
    pthread_mutex_unlock(&lock);
}

/*
 * The cache's own calls, for a check before the install: every size class round trip,
 * reuse, calloc's zeroes, realloc's copies, foreign pointers handed to glibc. 0 if all hold.
 */
int pyg_block_cache_check(void) {
    const size_t saved = cap_bytes;
    cap_bytes = (size_t)64 << 20;
    int failed = 0;
    for (size_t size = LARGE - 1; size < ((size_t)8 << 20) && !failed; size = size * 5 / 4 + 4099) {
        size_t class_size;
        const int c = size >= LARGE ? class_of(size, &class_size) : -1;
        failed |= c >= 0 && (class_size < size || size_of_class(c) != class_size
                             || class_size > size + size / 4 + PAGE);
        unsigned char *a = cache_malloc(size);
        failed |= a == NULL;
        if (failed)
            break;
        memset(a, 0xA5, size);
        cache_free(a);
        unsigned char *z = cache_calloc(1, size);  /* the same block again, zeroed */
        failed |= z == NULL || (size >= LARGE && z != a);
        for (size_t i = 0; z != NULL && i < size && !failed; i += 1 + i / 7)
            failed |= z[i] != 0;
        unsigned char *r = cache_realloc(z, 2 * size + 1);
        failed |= r == NULL;
        for (size_t i = 0; r != NULL && i < size && !failed; i += 1 + i / 7)
            failed |= r[i] != 0;
        cache_free(r);
    }
    pyg_block_cache_release();
    unsigned char *big = cache_malloc((size_t)1 << 20);
    cache_free(big);
    unsigned char *small = cache_malloc((size_t)600 << 10);  /* served by the kept 1 MB */
    failed |= small != big;
    cache_free(small);
    unsigned char *grown = cache_calloc(1, (size_t)3 << 20);  /* the kept 1 MB, grown */
    for (size_t i = 0; grown != NULL && i < ((size_t)3 << 20) && !failed; i += 4093)
        failed |= grown[i] != 0;
    failed |= grown == NULL || block_size(grown) < ((size_t)3 << 20);
    cache_free(grown);
    void *foreign = malloc(LARGE * 2);  /* glibc's: handed back to glibc */
    failed |= foreign == NULL || block_size(foreign) != 0;
    cache_free(foreign);
    pyg_block_cache_release();
    cap_bytes = saved;
    return failed ? -1 : 0;
}
