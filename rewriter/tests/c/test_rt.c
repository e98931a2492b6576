/* Minimal stand-in for liballocsite_rt.so used by the rewriter tests while the real
 * runtime is not available: exports the hook ABI (runtime/README.md) and writes
 * ALLOCSITE_TRACE lines in the documented format. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct allocsite_fn {
    uint32_t magic;
    uint8_t kind;
    int8_t size_arg, count_arg, ptr_arg, out_arg;
    uint8_t nargs;
    uint16_t flags;
    int64_t entry_rel, name_rel;
    uint64_t calls;
};

__thread void *__outermost_allocsite;
static __thread struct { const void *fn; void *site; void *sp; } stack[64];
static __thread int depth;
static int trace_fd = -2;

static void open_trace(void) {
    const char *t = getenv("ALLOCSITE_TRACE");
    if (!t || !*t) { trace_fd = -1; return; }
    char path[4096]; size_t o = 0;
    for (const char *p = t; *p && o < sizeof path - 32; p++) {
        if (p[0] == '%' && p[1] == 'p') { o += snprintf(path + o, sizeof path - o, "%d", (int)getpid()); p++; }
        else path[o++] = *p;
    }
    path[o] = 0;
    trace_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static int where(void *a, char *buf, size_t n) {
    Dl_info di;
    if (dladdr(a, &di) && di.dli_fname) {
        const char *b = strrchr(di.dli_fname, '/');
        b = b ? b + 1 : di.dli_fname;
        if (!*b) b = "main";
        return snprintf(buf, n, "%s+0x%lx", b, (unsigned long)((char *)a - (char *)di.dli_fbase));
    }
    return snprintf(buf, n, "0x%lx", (unsigned long)a);
}

static const char *fn_name(const struct allocsite_fn *f) { return (const char *)f + f->name_rel; }

void __allocsite_enter(const struct allocsite_fn *fn, void *site, const uint64_t args[6], void *entry_sp) {
    if (fn->magic != 0x31465341) abort();
    while (depth > 0 && (char *)stack[depth - 1].sp <= (char *)entry_sp) depth--;
    if (depth < 64) { stack[depth].fn = fn; stack[depth].site = site; stack[depth].sp = entry_sp; }
    depth++;
    if (depth == 1) __outermost_allocsite = site;
    ((struct allocsite_fn *)fn)->calls++;
    if (trace_fd == -2) open_trace();
    if (trace_fd < 0) return;
    char line[512]; int o = 0;
    o += snprintf(line + o, sizeof line - o, "enter tid=%ld fn=%s site=", (long)syscall(SYS_gettid), fn_name(fn));
    o += where(site, line + o, sizeof line - o);
    o += snprintf(line + o, sizeof line - o, " depth=%d", depth);
    if (fn->size_arg >= 0 && fn->size_arg < 6) o += snprintf(line + o, sizeof line - o, " size=%lu", (unsigned long)args[fn->size_arg]);
    if (fn->count_arg >= 0 && fn->count_arg < 6) o += snprintf(line + o, sizeof line - o, " count=%lu", (unsigned long)args[fn->count_arg]);
    if (fn->ptr_arg >= 0 && fn->ptr_arg < 6) o += snprintf(line + o, sizeof line - o, " ptr=%lx", (unsigned long)args[fn->ptr_arg]);
    if (fn->out_arg >= 0 && fn->out_arg < 6) o += snprintf(line + o, sizeof line - o, " out=%lx", (unsigned long)args[fn->out_arg]);
    line[o++] = '\n';
    write(trace_fd, line, o);
}

void __allocsite_exit(const struct allocsite_fn *fn, uint64_t ret, void *entry_sp) {
    while (depth > 0 && (char *)stack[depth - 1].sp < (char *)entry_sp) depth--;
    int d = depth;
    void *site = d > 0 && d <= 64 ? stack[d - 1].site : 0;
    if (depth > 0) depth--;
    if (depth == 0) __outermost_allocsite = 0;
    if (trace_fd < 0) return;
    char line[512]; int o = 0;
    o += snprintf(line + o, sizeof line - o, "exit  tid=%ld fn=%s site=", (long)syscall(SYS_gettid), fn_name(fn));
    o += where(site, line + o, sizeof line - o);
    o += snprintf(line + o, sizeof line - o, " depth=%d ret=%lx\n", d, (unsigned long)ret);
    write(trace_fd, line, o);
}
