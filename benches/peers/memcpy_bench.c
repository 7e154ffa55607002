/* The memcpy ceilings of benches/peers.
 *
 *   memcpy_bench PLAN [SLOTS]  PLAN in bytes: COUNT copies of N bytes from
 *                              one buffer of this process into SLOTS
 *                              destination buffers in turn (default 1),
 *                              pinned where rank 0 of the other systems runs.
 *
 * One slot is the plain memcpy ceiling. Two slots copy alternately into two
 * destinations, as malt's writes alternate between the two slots of the
 * receiver's queue: the least any depth-2 queue has to do, and the ceiling
 * malt's write is held to.
 *
 * Prints one JSON line per plan entry, in the fields of the write benchmarks
 * (plus "slots").
 */
#include "common.h"

#define MAX_SLOTS 8

int main(int argc, char **argv) {
    peers_plan plan;
    int slots = 1;
    if (argc == 3) {
        char *end = NULL;
        long s = strtol(argv[2], &end, 10);
        slots = (end != argv[2] && *end == '\0' && s >= 1 && s <= MAX_SLOTS) ? (int)s : 0;
    }
    if (argc < 2 || argc > 3 || slots == 0 || peers_parse_plan(argv[1], &plan) != 0) {
        fprintf(stderr, "usage: memcpy_bench N:COUNT,... [SLOTS 1..%d]\n", MAX_SLOTS);
        return 2;
    }
    peers_pin(0);
    size_t max = peers_plan_max(&plan);
    char *src = malloc(max), *dst[MAX_SLOTS] = {0};
    if (!src) {
        fprintf(stderr, "memcpy_bench: out of memory\n");
        return 2;
    }
    memset(src, 0x5a, max);
    for (int d = 0; d < slots; d++) {
        dst[d] = malloc(max);
        if (!dst[d]) {
            fprintf(stderr, "memcpy_bench: out of memory\n");
            return 2;
        }
        /* Touch every page before the clock starts. */
        memset(dst[d], 0, max);
    }
    for (int e = 0; e < plan.len; e++) {
        size_t size = plan.n[e], iters = plan.count[e];
        /* One warm-up copy into each destination. */
        for (int d = 0; d < slots; d++)
            memcpy(dst[d], src, size);
        double cpu0 = peers_cpu(), t0 = peers_now();
        for (size_t i = 0; i < iters; i++) {
            char *to = dst[i % (size_t)slots];
            memcpy(to, src, size);
            /* Keep every copy: the buffers may be read by anyone. */
            __asm__ __volatile__("" : : "r"(to), "r"(src) : "memory");
        }
        double secs = peers_now() - t0, cpu = peers_cpu() - cpu0;
        printf("{\"size\":%zu,\"iters\":%zu,\"ranks\":1,\"slots\":%d,\"gbps\":%.6f,"
               "\"secs\":%.9f,\"cpu_secs\":%.6f}\n",
               size, iters, slots,
               secs > 0 ? (double)size * (double)iters * 8.0 / secs / 1e9 : 0.0, secs, cpu);
    }
    free(src);
    for (int d = 0; d < slots; d++)
        free(dst[d]);
    return 0;
}
