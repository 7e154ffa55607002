/* The memcpy ceiling of benches/peers.
 *
 *   memcpy_bench PLAN        PLAN in bytes: COUNT copies of N bytes between
 *                            two buffers of this process, pinned where rank 0
 *                            of the other systems runs.
 *
 * Prints one JSON line per plan entry, in the fields of the write benchmarks.
 */
#include "common.h"

int main(int argc, char **argv) {
    peers_plan plan;
    if (argc != 2 || peers_parse_plan(argv[1], &plan) != 0) {
        fprintf(stderr, "usage: memcpy_bench N:COUNT,...\n");
        return 2;
    }
    peers_pin(0);
    size_t max = peers_plan_max(&plan);
    char *src = malloc(max), *dst = malloc(max);
    if (!src || !dst) {
        fprintf(stderr, "memcpy_bench: out of memory\n");
        return 2;
    }
    memset(src, 0x5a, max);
    memset(dst, 0, max);
    for (int e = 0; e < plan.len; e++) {
        size_t size = plan.n[e], iters = plan.count[e];
        memcpy(dst, src, size);
        double cpu0 = peers_cpu(), t0 = peers_now();
        for (size_t i = 0; i < iters; i++) {
            memcpy(dst, src, size);
            /* Keep every copy: the buffers may be read by anyone. */
            __asm__ __volatile__("" : : "r"(dst), "r"(src) : "memory");
        }
        double secs = peers_now() - t0, cpu = peers_cpu() - cpu0;
        printf("{\"size\":%zu,\"iters\":%zu,\"ranks\":1,\"gbps\":%.6f,"
               "\"secs\":%.9f,\"cpu_secs\":%.6f}\n",
               size, iters, (double)size * (double)iters * 8.0 / secs / 1e9, secs, cpu);
    }
    free(src);
    free(dst);
    return 0;
}
