/* Drives notalloc.c: functions that must not be classified as allocators. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "notalloc.h"

int main(void)
{
    char out[64];
    int st = cache_init(32);
    cache_put(3, 'x');
    printf("negatives: cache_init %d, cache[3] = %c\n", st, cache_get(3));
    cache_swap(48);
    cache_put(40, 'y');
    printf("negatives: cache_swap, cache[40] = %c\n", cache_get(40));
    cache_drop();

    char *s = static_buf(16);
    strcpy(s, "static");
    char *a = scratch_take(100), *b = scratch_take(200);
    printf("negatives: static_buf \"%s\", scratch offsets %td\n", s, b - a);

    const char *w = "allocation";
    printf("negatives: strnlen %zu %zu, checksum %zu\n", my_strnlen(w, 64), my_strnlen(w, 5),
           checksum(w, strlen(w)));
    printf("negatives: scratch_sum(10) = %d\n", scratch_sum(10));

    memset(out, 0, sizeof out);
    fill_via_temp(out, 30);
    printf("negatives: fill_via_temp \"%s\"\n", out);

    void *arr[3] = { NULL, out, s };
    printf("negatives: first_of is out: %d\n", first_of(arr, 3) == out);
    char copy[8];
    copy_into(copy, "copied", 7);
    printf("negatives: copy_into \"%s\"\n", copy);

    struct handle h;
    if (handle_open(&h, 40) == 0) {
        memset(h.buf, 'h', h.len);
        printf("negatives: handle %zu bytes, checksum %zu\n", h.len, checksum(h.buf, h.len));
        handle_close(&h);
    }

    struct vec v = { NULL, 0, 0 };
    for (int i = 0; i < 10; i++) {
        char *e = malloc(4);
        memcpy(e, "vec", 4);
        if (vec_take(&v, e) != 0)
            return 1;
    }
    for (int i = 0; i < 3; i++) {
        char **slot = vec_slot(&v);
        if (slot == NULL)
            return 1;
        *slot = malloc(4);
        memcpy(*slot, "sl", 3);
    }
    size_t vsum = 0;
    for (size_t i = 0; i < v.nr; i++) {
        vsum += checksum(v.items[i], 4);
        free(v.items[i]);
    }
    printf("negatives: vec %zu items in %zu slots, checksum %zu\n", v.nr, v.alloc, vsum);
    free(v.items);

    struct plist *pl = malloc(sizeof *pl + 2 * sizeof pl->items[0]);
    pl->n = 0;
    pl->cap = 2;
    for (int i = 0; i < 9 && pl != NULL; i++)
        pl = plist_push(pl, &v);
    printf("negatives: plist %d of %d\n", pl ? pl->n : -1, pl ? pl->cap : -1);
    free(pl);

    struct shared *sh = calloc(1, sizeof *sh);
    sh->busy = 1;
    shared_update(sh, 7);
    sh->busy--;
    shared_update(sh, 8);   /* the last holder: frees it */

    struct tickets tk = { "tickets", 100 };
    long t1 = ticket_take(&tk), t2 = ticket_take(&tk);
    printf("negatives: %s %ld %ld\n", tk.name, t1, t2);

    for (int i = 0; i < 5; i++)
        memset(registry_add(8 * (size_t)(i + 1)), i, 8 * (size_t)(i + 1));
    printf("negatives: registry %zu entries\n", registry_count());
    registry_clear();
    printf("negatives: registry %zu entries after clear\n", registry_count());
    struct holder hd = { NULL, 8 };
    char *long_text = strdup("far too long for h");
    int r1 = holder_set(&hd, long_text, strlen(long_text));   /* released */
    int r2 = holder_set(&hd, "short", 5);                       /* copied */
    int r3 = holder_set(&hd, NULL, 0);
    printf("negatives: holder_set %d %d %d, text %s\n", r1, r2, r3, hd.text);
    free(hd.text);

    struct parse ps = { 0, NULL };
    struct cols *cl = malloc(sizeof *cl);
    cl->n = 2;
    trig_begin(&ps, "", cl);                 /* refused: cols deleted */
    cl = malloc(sizeof *cl);
    cl->n = 3;
    trig_begin(&ps, "tr", cl);               /* cols moves into the trigger */
    printf("negatives: trigger %s with %d cols\n", ps.trig->name, ps.trig->cols->n);
    free(ps.trig->cols);
    free(ps.trig);

    static char page0[16] = "page0", page3[16] = "page3";
    struct pages pg = { 0, NULL };
    char *pp = NULL;
    int pr = pages_get(&pg, 3, &pp);
    pg.pages[0] = page0;
    pg.pages[3] = page3;
    pages_get(&pg, 0, &pp);
    printf("negatives: pages_get %d, %d pages, page %s\n", pr, pg.n, pp);
    free(pg.pages);

    long tres = 0;
    struct task *job = malloc(sizeof *job);
    job->n = 10;
    job->result = &tres;
    scratch_task(job);
    printf("negatives: scratch_task %ld\n", tres);

    struct plist *pr2 = malloc(sizeof *pr2 + sizeof pr2->items[0]);
    pr2->n = 1;
    pr2->cap = 1;
    pr2 = plist_reserve(pr2, 3);
    printf("negatives: plist_reserve cap %d\n", pr2 ? pr2->cap : -1);
    free(pr2);
    struct win wn = { NULL, 0 };
    struct part *pa = malloc(sizeof *pa);
    pa->v = 4;
    part_attach(&wn, pa);
    part_attach(NULL, malloc(sizeof *pa));
    printf("negatives: part_attach %d %d\n", wn.nattach, wn.part->v);
    free(wn.part);
    struct shared *sw = calloc(1, sizeof *sw);
    sw->busy = 1;
    int rw = shared_work(sw, 3, 2);
    sw->busy--;
    int rw2 = shared_work(sw, 200, 0);   /* the last holder: frees it */
    printf("negatives: shared_work %d %d\n", rw, rw2);
    return 0;
}
