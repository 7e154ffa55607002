/* Vectors over memory the program owns (malt_dense_wrap_f32 / _f64), at any
 * number of ranks: BSP averaging is exact and lands in the program's own
 * arrays; a freed name can be used again; bad regions (NULL, empty,
 * misaligned, overlapping a live vector) are invalid arguments naming the
 * problem; a zero-length created vector is rejected on every rank; a
 * statistics size query succeeds. Prints one summary line per rank and exits
 * 0 when every check held. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <malt.h>
#include "check.h"

#define LEN 1003 /* not a multiple of any rank count used */

static size_t world;

/* The program's own model: weights in float, a bias in double. */
static float weights[LEN];
static double bias[2];

int main(void) {
    malt_vector *w = NULL, *b = NULL, *again = NULL, *empty = NULL;
    float *seen = NULL;
    size_t n = 0, needed = 0, i;
    int round, exact = 1;
    double mean_rank, diff;

    OK(malt_init());
    OK(malt_rank(&rank));
    OK(malt_world_size(&world));
    mean_rank = (double)(world - 1) / 2.0;

    /* Bad regions are refused before anything is shared. */
    EXPECT(malt_dense_wrap_f32("w", NULL, LEN, NULL, &w), MALT_ERR_NULL);
    TRUE(w == NULL);
    EXPECT(malt_dense_wrap_f32("w", weights, 0, NULL, &w), MALT_ERR_INVALID_ARGUMENT);
    MESSAGE_HAS("len is 0");
    EXPECT(malt_dense_wrap_f32("w", (float *)((char *)weights + 1), 4, NULL, &w),
           MALT_ERR_INVALID_ARGUMENT);
    MESSAGE_HAS("not aligned to 4 bytes");
    EXPECT(malt_dense_wrap_f64("b", (double *)((char *)bias + 4), 1, NULL, &b),
           MALT_ERR_INVALID_ARGUMENT);
    MESSAGE_HAS("not aligned to 8 bytes");

    for (i = 0; i < LEN; i++)
        weights[i] = (float)(1000.0 * (double)rank + 0.5 * (double)i);
    bias[0] = (double)rank + 0.25;
    OK(malt_dense_wrap_f32("w", weights, LEN, NULL, &w));
    OK(malt_dense_wrap_f64("b", bias, 1, NULL, &b));
    TRUE(w != NULL && b != NULL);
    OK(malt_dense_data_f32(w, &seen, &n));
    TRUE(seen == weights && n == LEN);
    /* The same memory cannot back two live vectors. */
    EXPECT(malt_dense_wrap_f32("w2", weights + 10, 5, NULL, &again), MALT_ERR_INVALID_ARGUMENT);
    MESSAGE_HAS("overlaps");

    /* Rounds of "training": each rank moves its own copy, then averages. */
    for (round = 0; round < 3; round++) {
        OK(malt_scatter(w));
        OK(malt_scatter(b));
        OK(malt_gather(w, MALT_UDF_AVG));
        OK(malt_gather(b, MALT_UDF_AVG));
        for (i = 0; i < LEN; i++) {
            double want = 1000.0 * mean_rank + 0.5 * (double)i + (double)round * mean_rank;
            if (weights[i] != (float)want) {
                if (exact)
                    fprintf(stderr, "rank %zu round %d: weights[%zu] = %.9g, expected %.9g\n",
                            rank, round, i, weights[i], want);
                exact = 0;
            }
        }
        /* Kept in double: float would lose the 1e-9 steps. */
        diff = bias[0] - (0.25 + mean_rank + (double)round * (mean_rank + 1e-9));
        TRUE(diff < 1e-13 && diff > -1e-13);
        for (i = 0; i < LEN; i++)
            weights[i] += (float)rank;
        bias[0] += (double)rank + 1e-9;
    }
    TRUE(exact);

    /* Statistics: the size query is not a failure. */
    OK(malt_stats_json(w, NULL, 0, &needed));
    TRUE(needed > 2);

    /* A freed name can be used again, over the same memory. */
    OK(malt_vector_free(w));
    OK(malt_dense_wrap_f32("w", weights, LEN, NULL, &w));
    OK(malt_scatter(w));
    OK(malt_gather(w, MALT_UDF_AVG));
    OK(malt_vector_free(w));
    OK(malt_vector_free(b));

    /* A zero-length vector is refused on every rank, and the ranks stay in
     * step. */
    EXPECT(malt_dense_create_f32("empty", 0, NULL, &empty, NULL), MALT_ERR_INVALID_ARGUMENT);
    MESSAGE_HAS("no elements");
    OK(malt_barrier());

    OK(malt_finalize());
    printf("wrap rank %zu of %zu: %d checks, %d failed\n", rank, world, checks, failures);
    return failures != 0;
}
