/* Open MPI side of benches/peers.
 *
 *   mpi_bench put PLAN [create]   PLAN in bytes: rank 0 puts COUNT messages
 *                                 into rank 1's window, each followed by
 *                                 MPI_Win_flush (passive target, inside one
 *                                 MPI_Win_lock_all epoch), then tells rank 1
 *                                 and waits for its answer. The window comes
 *                                 from MPI_Win_allocate, or MPI_Win_create
 *                                 over malloc'ed memory with "create".
 *   mpi_bench allreduce PLAN      PLAN in floats: COUNT rounds of
 *                                 MPI_Allreduce(MPI_IN_PLACE, sum) followed
 *                                 by a division by the number of ranks.
 *
 * Rank 0 prints one JSON line per plan entry; CPU seconds are summed over
 * all ranks (getrusage around the timed part). Each rank pins itself to
 * CPU (rank mod k) of the CPUs it may use, as every system in run.sh does.
 */
#include "common.h"

#include <mpi.h>
#include <stdint.h>

static int rank, world;

static void die(const char *what) {
    fprintf(stderr, "mpi_bench: rank %d: %s\n", rank, what);
    MPI_Abort(MPI_COMM_WORLD, 2);
}

static void bench_put(const peers_plan *plan, int create) {
    if (world < 2)
        die("put needs two ranks");
    size_t max = peers_plan_max(plan);
    char *src = malloc(max);
    char *mem = NULL, *base = NULL;
    if (!src)
        die("out of memory");
    memset(src, 0x5a, max);
    MPI_Win win;
    if (create) {
        mem = malloc(max);
        if (!mem)
            die("out of memory");
        memset(mem, 0, max);
        MPI_Win_create(mem, (MPI_Aint)max, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &win);
        base = mem;
    } else {
        MPI_Win_allocate((MPI_Aint)max, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &base, &win);
        memset(base, 0, max);
    }
    MPI_Win_lock_all(0, win);
    for (int e = 0; e < plan->len; e++) {
        size_t size = plan->n[e], iters = plan->count[e];
        if (size < sizeof(uint64_t))
            die("put: sizes below 8 bytes are not supported");
        /* Warm-up: map the pages on both sides. */
        if (rank == 0)
            for (int i = 0; i < 3; i++) {
                MPI_Put(src, (int)size, MPI_BYTE, 1, 0, (int)size, MPI_BYTE, win);
                MPI_Win_flush(1, win);
            }
        MPI_Barrier(MPI_COMM_WORLD);
        double cpu0 = peers_cpu(), t0 = peers_now(), secs = 0.0;
        int ok = 1;
        if (rank == 0) {
            for (uint64_t i = 1; i <= iters; i++) {
                memcpy(src, &i, sizeof i);
                MPI_Put(src, (int)size, MPI_BYTE, 1, 0, (int)size, MPI_BYTE, win);
                MPI_Win_flush(1, win);
            }
            uint64_t n = iters;
            MPI_Send(&n, 1, MPI_UINT64_T, 1, 7, MPI_COMM_WORLD);
            MPI_Recv(&ok, 1, MPI_INT, 1, 8, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            secs = peers_now() - t0;
        } else if (rank == 1) {
            uint64_t n = 0, seen = 0;
            MPI_Recv(&n, 1, MPI_UINT64_T, 0, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Win_sync(win);
            memcpy(&seen, base, sizeof seen);
            ok = seen == n;
            MPI_Send(&ok, 1, MPI_INT, 0, 8, MPI_COMM_WORLD);
        }
        double cpu = peers_cpu() - cpu0, cpu_sum = 0.0;
        MPI_Reduce(&cpu, &cpu_sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        if (rank == 0) {
            if (!ok)
                die("put: rank 1 did not see the last message");
            printf("{\"size\":%zu,\"iters\":%zu,\"ranks\":%d,\"gbps\":%.6f,"
                   "\"secs\":%.9f,\"cpu_secs\":%.6f,\"window\":\"%s\"}\n",
                   size, iters, world, (double)size * (double)iters * 8.0 / secs / 1e9,
                   secs, cpu_sum, create ? "create" : "allocate");
            fflush(stdout);
        }
        MPI_Barrier(MPI_COMM_WORLD);
    }
    MPI_Win_unlock_all(win);
    MPI_Win_free(&win);
    free(mem);
    free(src);
}

static void bench_allreduce(const peers_plan *plan) {
    size_t max = peers_plan_max(plan);
    float *x = malloc(max * sizeof *x);
    double *times = NULL;
    if (!x)
        die("out of memory");
    const float inv = 1.0f / (float)world;
    for (int e = 0; e < plan->len; e++) {
        size_t len = plan->n[e], rounds = plan->count[e];
        if (len > (size_t)INT32_MAX)
            die("allreduce: size too large");
        free(times);
        times = malloc(rounds * sizeof *times);
        if (!times)
            die("out of memory");
        for (size_t i = 0; i < len; i++)
            x[i] = (float)rank + (float)(i % 7);
        size_t warm = rounds < 5 ? rounds : 5;
        for (size_t r = 0; r < warm; r++) {
            MPI_Allreduce(MPI_IN_PLACE, x, (int)len, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            for (size_t i = 0; i < len; i++)
                x[i] *= inv;
        }
        MPI_Barrier(MPI_COMM_WORLD);
        double cpu0 = peers_cpu(), t0 = peers_now();
        for (size_t r = 0; r < rounds; r++) {
            double t = peers_now();
            MPI_Allreduce(MPI_IN_PLACE, x, (int)len, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            for (size_t i = 0; i < len; i++)
                x[i] *= inv;
            times[r] = (peers_now() - t) * 1e6;
        }
        double wall = peers_now() - t0, cpu = peers_cpu() - cpu0;
        /* Every round keeps the average: (world-1)/2 + i%7 everywhere. */
        float mean = (float)(world - 1) / 2.0f;
        int ok = 1;
        size_t probe[3] = {0, len / 2, len - 1};
        for (int k = 0; k < 3; k++) {
            float want = mean + (float)(probe[k] % 7), got = x[probe[k]];
            if (got < want - 1e-3f || got > want + 1e-3f)
                ok = 0;
        }
        double p50 = peers_percentile(times, rounds, 50.0);
        double p99 = peers_percentile(times, rounds, 99.0);
        double cpu_sum = 0.0, p50_max = 0.0;
        int all_ok = 0;
        MPI_Reduce(&cpu, &cpu_sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        MPI_Reduce(&p50, &p50_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        MPI_Reduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, 0, MPI_COMM_WORLD);
        if (rank == 0) {
            if (!all_ok)
                die("allreduce: wrong average");
            printf("{\"ranks\":%d,\"len\":%zu,\"rounds\":%zu,\"round_us_p50\":%.3f,"
                   "\"round_us_p99\":%.3f,\"round_us_p50_max\":%.3f,"
                   "\"wall_secs\":%.9f,\"cpu_secs\":%.6f}\n",
                   world, len, rounds, p50, p99, p50_max, wall, cpu_sum);
            fflush(stdout);
        }
    }
    free(times);
    free(x);
}

int main(int argc, char **argv) {
    /* Pin before MPI starts its threads, so they inherit the placement. */
    int env_rank = peers_env_rank("OMPI_COMM_WORLD_RANK");
    if (env_rank >= 0)
        peers_pin(env_rank);
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (env_rank < 0)
        peers_pin(rank);
    peers_plan plan;
    if (argc < 3 || peers_parse_plan(argv[2], &plan) != 0) {
        if (rank == 0)
            fprintf(stderr, "usage: mpi_bench put|allreduce N:COUNT,... [create]\n");
        MPI_Finalize();
        return 2;
    }
    if (strcmp(argv[1], "put") == 0)
        bench_put(&plan, argc > 3 && strcmp(argv[3], "create") == 0);
    else if (strcmp(argv[1], "allreduce") == 0)
        bench_allreduce(&plan);
    else {
        if (rank == 0)
            fprintf(stderr, "mpi_bench: unknown mode %s\n", argv[1]);
        MPI_Finalize();
        return 2;
    }
    MPI_Finalize();
    return 0;
}
