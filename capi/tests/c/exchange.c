/* Two ranks exchanging through the C API: dense vectors of float and double
 * with built-in merges, C callbacks (whole vector and per index), sparse
 * vectors, every graph and consistency mode, a collective mismatch, barrier
 * and statistics. Every rank runs this program; it prints one summary line
 * and exits 0 when every check held. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malt.h>
#include "check.h"

static size_t world;

/* What the whole-vector callback saw. */
struct seen {
    int calls;
    size_t count, len;
    malt_status rank_inside, local_world_inside, scatter_inside;
    malt_vector *self;
    int fail_with;
};

/* local = max(local, incoming...), recording what it was given. */
static int merge_max(float *local, const float *const *incoming, size_t count, size_t len,
                     void *user) {
    struct seen *s = user;
    size_t r;
    s->calls++;
    s->count = count;
    s->len = len;
    s->rank_inside = malt_rank(&r);
    s->local_world_inside = malt_local_world(&r);
    s->scatter_inside = malt_scatter(s->self);
    for (size_t k = 0; k < count; k++)
        for (size_t i = 0; i < len; i++)
            if (incoming[k][i] > local[i])
                local[i] = incoming[k][i];
    return s->fail_with;
}

/* local = (local + sum of carried) / (1 + count), like MALT_UDF_AVG. */
static int average_each(float *local, const float *carried, size_t count, void *user) {
    float sum = *local;
    for (size_t k = 0; k < count; k++)
        sum += carried[k];
    *local = sum / (float)(1 + count);
    ++*(int *)user;
    return 0;
}

static int sum_each_f64(double *local, const double *carried, size_t count, void *user) {
    (void)user;
    for (size_t k = 0; k < count; k++)
        *local += carried[k];
    return 0;
}

/* Five rounds of a dense float vector under `opts`: values stay finite and
 * the iteration counts the gathers. */
static void rounds(const char *name, const malt_options *opts) {
    malt_vector *v;
    float *x;
    EXPECT(malt_dense_create_f32(name, 64, opts, &v, &x), MALT_OK);
    if (!v)
        return;
    for (int t = 0; t < 5; t++) {
        for (int i = 0; i < 64; i++)
            x[i] += (float)(rank + 1);
        OK(malt_scatter(v));
        OK(malt_gather(v, MALT_UDF_AVG));
    }
    uint64_t it = 0;
    OK(malt_iteration(v, &it));
    TRUE(it == 5);
    TRUE(isfinite(x[0]) && x[0] > 0.0f);
    OK(malt_vector_free(v));
}

/* The local rank and local world size are the launcher's
 * (MALT_LOCAL_RANK, MALT_LOCAL_WORLD_SIZE under malt launch); without them
 * the calls say so and leave the output alone. */
static void check_local_numbers(void) {
    const char *lr = getenv("MALT_LOCAL_RANK"), *lw = getenv("MALT_LOCAL_WORLD_SIZE");
    size_t local_rank = 77, local_world = 77;
    if (lr != NULL && lw != NULL) {
        OK(malt_local_rank(&local_rank));
        OK(malt_local_world(&local_world));
        TRUE(local_rank == (size_t)strtoul(lr, NULL, 10));
        TRUE(local_world == (size_t)strtoul(lw, NULL, 10));
        TRUE(local_rank < local_world && local_world <= world);
    } else if (lr == NULL && lw == NULL) {
        EXPECT(malt_local_rank(&local_rank), MALT_ERR_CONFIG);
        TRUE(strstr(malt_last_error(), "MALT_LOCAL_RANK") != NULL);
        EXPECT(malt_local_world(&local_world), MALT_ERR_CONFIG);
        TRUE(strstr(malt_last_error(), "MALT_LOCAL_WORLD_SIZE") != NULL);
        TRUE(local_rank == 77 && local_world == 77);
    }
}

int main(void) {
    OK(malt_init());
    OK(malt_rank(&rank));
    OK(malt_world_size(&world));
    TRUE(world == 2);
    check_local_numbers();
    const float r = (float)rank;

    /* Dense float, MALT_UDF_AVG under BSP: every rank holds the exact mean. */
    malt_vector *a;
    float *av;
    OK(malt_dense_create_f32("a", 1000, NULL, &a, &av));
    for (int i = 0; i < 1000; i++)
        av[i] = r * 1000.0f + (float)i;
    OK(malt_scatter(a));
    OK(malt_gather(a, MALT_UDF_AVG));
    int exact = 1;
    for (int i = 0; i < 1000; i++)
        exact &= av[i] == 500.0f + (float)i;
    TRUE(exact);

    /* Dense double, MALT_UDF_SUM. */
    malt_vector *b;
    double *bv;
    OK(malt_dense_create_f64("b", 10, NULL, &b, &bv));
    for (int i = 0; i < 10; i++)
        bv[i] = r + 1.0;
    OK(malt_scatter(b));
    OK(malt_gather(b, MALT_UDF_SUM));
    TRUE(bv[0] == 3.0 && bv[9] == 3.0);

    /* A whole-vector C callback: called once with the peer's update; inside
     * it, malt_rank works and malt_scatter is refused (no deadlock). */
    malt_vector *c;
    float *cv;
    OK(malt_dense_create_f32("c", 16, NULL, &c, &cv));
    for (int i = 0; i < 16; i++)
        cv[i] = (rank == 0) ? (float)i : (float)(15 - i);
    struct seen s = {0};
    s.self = c;
    OK(malt_scatter(c));
    OK(malt_gather_fn_f32(c, merge_max, &s));
    TRUE(s.calls == 1 && s.count == 1 && s.len == 16);
    TRUE(s.rank_inside == MALT_OK);
    TRUE(s.local_world_inside != MALT_ERR_REENTRANT);
    TRUE(s.scatter_inside == MALT_ERR_REENTRANT);
    TRUE(cv[0] == 15.0f && cv[7] == 8.0f && cv[15] == 15.0f);
    /* A failing callback: the gather completes, MALT_ERR_CALLBACK. */
    s.fail_with = 5;
    OK(malt_scatter(c));
    EXPECT(malt_gather_fn_f32(c, merge_max, &s), MALT_ERR_CALLBACK);
    TRUE(strstr(malt_last_error(), "returned 5") != NULL);
    uint64_t it = 0;
    OK(malt_iteration(c, &it));
    TRUE(it == 2);

    /* Sparse float with a per-index callback: only indices some update
     * carries are merged. Rank 0 holds {1: 1, 5: 3}, rank 1 {5: 5, 7: 2}. */
    malt_vector *sp;
    OK(malt_sparse_create_f32("s", 1000000, 10, NULL, &sp));
    uint64_t idx0[2] = {1, 5}, idx1[2] = {5, 7};
    float val0[2] = {1.0f, 3.0f}, val1[2] = {5.0f, 2.0f};
    OK(malt_sparse_update_f32(sp, rank == 0 ? idx0 : idx1, rank == 0 ? val0 : val1, 2));
    OK(malt_scatter(sp));
    int each_calls = 0;
    OK(malt_gather_each_f32(sp, average_each, &each_calls));
    TRUE(each_calls == 2);
    uint64_t oi[10];
    float ov[10];
    size_t n = 0;
    OK(malt_sparse_entries_f32(sp, oi, ov, 10, &n));
    if (rank == 0)
        TRUE(n == 3 && oi[0] == 1 && ov[0] == 1.0f && oi[1] == 5 && ov[1] == 4.0f &&
             oi[2] == 7 && ov[2] == 1.0f);
    else
        TRUE(n == 3 && oi[0] == 1 && ov[0] == 0.5f && oi[1] == 5 && ov[1] == 4.0f &&
             oi[2] == 7 && ov[2] == 2.0f);

    /* Sparse double with the built-in average, and a per-index sum on a
     * dense vector of double. */
    malt_vector *sd;
    OK(malt_sparse_create_f64("sd", 50, 4, NULL, &sd));
    uint64_t i2 = 3;
    double v2 = rank == 0 ? 2.0 : 6.0;
    OK(malt_sparse_update_f64(sd, &i2, &v2, 1));
    OK(malt_scatter(sd));
    OK(malt_gather(sd, MALT_UDF_AVG));
    double dv[4];
    OK(malt_sparse_entries_f64(sd, oi, dv, 4, &n));
    TRUE(n == 1 && oi[0] == 3 && dv[0] == 4.0);
    OK(malt_scatter(b));
    OK(malt_gather_each_f64(b, sum_each_f64, NULL));
    TRUE(bv[0] == 6.0);

    /* Every graph and consistency mode. */
    malt_options o = {0};
    o.graph = MALT_GRAPH_RING;
    rounds("ring", &o);
    o.graph = MALT_GRAPH_HALTON;
    o.consistency = MALT_SSP;
    o.staleness = 1;
    rounds("halton-ssp", &o);
    o.graph = MALT_GRAPH_RANDOM;
    o.random_peers = 1;
    o.random_seed = 7;
    o.consistency = MALT_ASYNC;
    rounds("random-async", &o);
    /* Async ranks may be apart: meet before the next collective. */
    OK(malt_barrier());

    /* Ranks that disagree about a vector's length both get the mismatch. */
    malt_vector *m = (malt_vector *)(uintptr_t)0x1;
    float *mv;
    EXPECT(malt_dense_create_f32("m", rank == 0 ? 10 : 11, NULL, &m, &mv), MALT_ERR_MISMATCH);
    TRUE(m == NULL);
    TRUE(strstr(malt_last_error(), "disagrees") != NULL);

    /* Statistics count the exchanges. */
    char stats[8192];
    OK(malt_stats_json(a, stats, sizeof stats, NULL));
    TRUE(strstr(stats, "\"gathers\":1") != NULL);

    OK(malt_vector_free(a));
    OK(malt_vector_free(c));
    OK(malt_barrier());
    OK(malt_finalize()); /* frees b, sp, sd */

    printf("exchange rank %zu of %zu: %d checks, %d failed\n", rank, world, checks, failures);
    return failures == 0 ? 0 : 1;
}
