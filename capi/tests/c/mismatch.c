/* Calls that do not match across ranks, run as `mismatch MODE` on every rank:
 *
 *   counts  A gather before any scatter is a call-order error under BSP on
 *           every rank (and merges nothing, successfully, under ASYNC). Then
 *           rank 0 makes 3 scatter/gather rounds and every other rank 4:
 *           the others' 4th gather and rank 0's malt_finalize both return
 *           MALT_ERR_MISMATCH within a second, with a message naming both
 *           ranks and what each sent.
 *   late    The last rank arrives at a vector's creation 3 s after the
 *           others, with MALT_TIMEOUT=1: the others time out naming it; it
 *           is told it came too late, and never named as missing to itself.
 *
 * Prints one summary line per rank (with the measured times) and exits 0
 * when every check held. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <malt.h>
#include "check.h"

static size_t world;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Whether `message` says that some rank r > 0 waits for rank 0 after
 * rank 0 sent it 3 updates while it sent rank 0 4. */
static int found_by_one_of_the_others(const char *message) {
    char text[256];
    size_t r;
    for (r = 1; r < world; r++) {
        snprintf(text, sizeof text,
                 "rank %zu waits for an update from rank 0, but rank 0 is waiting in the final "
                 "barrier (finish, malt_finalize) after sending rank %zu 3 updates, while rank "
                 "%zu sent rank 0 4",
                 r, r, r);
        if (strstr(message, text) != NULL)
            return 1;
    }
    return 0;
}

static void counts(void) {
    malt_vector *w = NULL, *a = NULL;
    float *x = NULL;
    malt_options async = {0};
    double start, took;
    int round, rounds = rank == 0 ? 3 : 4;
    malt_status got;

    OK(malt_dense_create_f32("w", 100, NULL, &w, &x));
    EXPECT(malt_gather(w, MALT_UDF_AVG), MALT_ERR_CALL_ORDER);
    MESSAGE_HAS("before this rank's scatter");
    async.consistency = MALT_ASYNC;
    OK(malt_dense_create_f32("a", 10, &async, &a, NULL));
    OK(malt_gather(a, MALT_UDF_AVG));
    OK(malt_vector_free(a));

    for (round = 0; round < rounds; round++) {
        x[0] = (float)round;
        OK(malt_scatter(w));
        start = now();
        got = malt_gather(w, MALT_UDF_AVG);
        took = now() - start;
        if (round < 3) {
            EXPECT(got, MALT_OK);
            continue;
        }
        /* Rank 0 waits in malt_finalize: this gather can never end. The
         * message is that of the first rank to find it (this one, or
         * another rank that made 4 rounds too), with both ranks' counts. */
        EXPECT(got, MALT_ERR_MISMATCH);
        TRUE(found_by_one_of_the_others(malt_last_error()));
        MESSAGE_HAS("malt_finalize");
        TRUE(took < 1.0);
        printf("mismatch rank %zu: the extra gather failed after %.3f s\n", rank, took);
    }
    start = now();
    got = malt_finalize();
    took = now() - start;
    EXPECT(got, MALT_ERR_MISMATCH);
    MESSAGE_HAS("vector \"w\": rank ");
    TRUE(found_by_one_of_the_others(malt_last_error()));
    if (rank == 0) {
        TRUE(took < 1.0);
        printf("mismatch rank 0: malt_finalize failed after %.3f s\n", took);
    }
}

static void late(void) {
    malt_vector *w = NULL;
    char text[64];
    int last = rank == world - 1;
    struct timespec pause = {3, 0};
    malt_status got;

    if (last)
        nanosleep(&pause, NULL);
    got = malt_dense_create_f32("w", 10, NULL, &w, NULL);
    EXPECT(got, MALT_ERR_TIMEOUT);
    if (last) {
        MESSAGE_HAS("the other ranks stopped waiting for this rank after 1 s");
        MESSAGE_LACKS("waiting for ranks");
    } else {
        snprintf(text, sizeof text, "waiting for ranks [%zu]", world - 1);
        MESSAGE_HAS(text);
        MESSAGE_HAS("vector creation timed out after 1 s");
        MESSAGE_LACKS("timed out after 1 s (");
    }
    printf("mismatch rank %zu: %s\n", rank, malt_last_error());
    /* The job is over: finalize says so and returns. */
    TRUE(malt_finalize() != MALT_OK);
}

int main(int argc, char **argv) {
    if (argc != 2 || (strcmp(argv[1], "counts") != 0 && strcmp(argv[1], "late") != 0)) {
        fprintf(stderr, "usage: mismatch counts|late\n");
        return 2;
    }
    OK(malt_init());
    OK(malt_rank(&rank));
    OK(malt_world_size(&world));
    if (strcmp(argv[1], "counts") == 0)
        counts();
    else
        late();
    printf("mismatch %s rank %zu of %zu: %d checks, %d failed\n", argv[1], rank, world, checks,
           failures);
    return failures != 0;
}
