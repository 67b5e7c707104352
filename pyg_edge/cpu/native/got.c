/*
 * Redirecting one loaded library's own calls to a few functions (its GOT/PLT entries), so
 * that nothing process-wide changes: nt_copy.c (memcpy/memmove) and block_cache.c (malloc
 * and its kin) point CTranslate2's entries at pyg-edge's versions. (No header: a source
 * distribution ships the extension's sources, not its headers; each caller declares.)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct relro { uintptr_t base, start, end; };

static int find_relro(struct dl_phdr_info *info, size_t size, void *data) {
    struct relro *r = data;
    (void)size;
    if (info->dlpi_addr != r->base)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type == PT_GNU_RELRO) {
            r->start = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            r->end = r->start + info->dlpi_phdr[i].p_memsz;
        }
    }
    return 1;
}

/*
 * Writes value into a slot. The pages the loader sealed after relocation (RELRO: whole
 * pages of it, as glibc protects them) are opened for the write and sealed again.
 */
static int write_slot(void **slot, void *value, const struct relro *r) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t start = (uintptr_t)slot & ~(page - 1);
    const int sealed = start >= (r->start & ~(page - 1)) && start < (r->end & ~(page - 1));
    if (sealed && mprotect((void *)start, page, PROT_READ | PROT_WRITE) != 0)
        return -1;
    __atomic_store_n(slot, value, __ATOMIC_SEQ_CST);
    if (sealed && mprotect((void *)start, page, PROT_READ) != 0)
        return -1;
    return 0;
}

struct pyg_redirect {
    const char *name;  /* the symbol the library imports, e.g. "free" */
    void *value;       /* what its entries should hold instead */
};

static void *redirect_of(const char *name, const struct pyg_redirect *redirects, int count) {
    for (int i = 0; i < count; i++)
        if (strcmp(name, redirects[i].name) == 0)
            return redirects[i].value;
    return NULL;
}

/*
 * Points every entry of the already loaded library at path that holds one of the
 * redirects' symbols (PLT slots, GOT slots, and absolute data words with no addend, such as
 * oneMKL's table of allocation functions) at that redirect's value. Returns how many
 * entries changed, or -1.
 */
int pyg_got_redirect(const char *path, const struct pyg_redirect *redirects, int count) {
    void *handle = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
    struct link_map *map = NULL;
    if (handle == NULL || dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || map == NULL)
        return -1;
    const ElfW(Rela) *tables[2] = {NULL, NULL};
    size_t sizes[2] = {0, 0};
    const ElfW(Sym) *symbols = NULL;
    const char *strings = NULL;
    for (const ElfW(Dyn) *d = map->l_ld; d->d_tag != DT_NULL; d++) {
        if (d->d_tag == DT_JMPREL) tables[0] = (const ElfW(Rela) *)d->d_un.d_ptr;
        if (d->d_tag == DT_PLTRELSZ) sizes[0] = d->d_un.d_val;
        if (d->d_tag == DT_RELA) tables[1] = (const ElfW(Rela) *)d->d_un.d_ptr;
        if (d->d_tag == DT_RELASZ) sizes[1] = d->d_un.d_val;
        if (d->d_tag == DT_SYMTAB) symbols = (const ElfW(Sym) *)d->d_un.d_ptr;
        if (d->d_tag == DT_STRTAB) strings = (const char *)d->d_un.d_ptr;
    }
    if (symbols == NULL || strings == NULL)
        return -1;
    struct relro relro = {map->l_addr, 0, 0};
    dl_iterate_phdr(find_relro, &relro);
    int changed = 0;
    for (int t = 0; t < 2; t++) {
        for (size_t i = 0; tables[t] != NULL && i < sizes[t] / sizeof(ElfW(Rela)); i++) {
            const ElfW(Rela) *r = &tables[t][i];
            const unsigned type = ELF64_R_TYPE(r->r_info);
            const int word = type == R_X86_64_64 && r->r_addend == 0;
            if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT && !word)
                continue;
            void *value = redirect_of(strings + symbols[ELF64_R_SYM(r->r_info)].st_name,
                                      redirects, count);
            if (value == NULL)
                continue;
            if (write_slot((void **)(map->l_addr + r->r_offset), value, &relro) != 0)
                return -1;
            changed++;
        }
    }
    return changed;
}
