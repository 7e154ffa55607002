#include <stdio.h>
#include <stdlib.h>
#include <malt.h>

#define CHECK(call)                                          \
    do {                                                     \
        if ((call) != MALT_OK) {                             \
            fprintf(stderr, "%s\n", malt_last_error());      \
            return 1;                                        \
        }                                                    \
    } while (0)

int main(void) {
    CHECK(malt_init()); /* joins the job of malt launch, srun, mpirun or torchrun */
    size_t rank, world;
    CHECK(malt_rank(&rank));
    CHECK(malt_world_size(&world));

    malt_options opts = {0}; /* zeros: all-to-all graph, BSP */
    opts.graph = MALT_GRAPH_HALTON;
    opts.consistency = MALT_SSP;
    opts.staleness = 2;
    malt_vector *model;
    float *w; /* this rank's copy of the model, used like any array */
    CHECK(malt_dense_create_f32("w", 2, &opts, &model, &w));

    /* y = 2 x0 - 3 x1: the user's SGD loop, unchanged */
    for (int epoch = 0; epoch < 300; epoch++) {
        for (int batch = 0; batch < 4; batch++) {
            float g0 = 0, g1 = 0;
            for (int i = 16 * batch; i < 16 * batch + 16; i++) {
                float x0 = (i % 8) / 8.0f, x1 = (i / 8) / 8.0f;
                float err = w[0] * x0 + w[1] * x1 - (2 * x0 - 3 * x1);
                g0 += err * x0;
                g1 += err * x1;
            }
            w[0] -= 0.5f * g0 / 16;
            w[1] -= 0.5f * g1 / 16;
        }
        CHECK(malt_scatter(model));              /* one-sided push to out-neighbours */
        CHECK(malt_gather(model, MALT_UDF_AVG)); /* average what has arrived */
    }

    size_t size;
    CHECK(malt_stats_json(model, NULL, 0, &size)); /* asks for the size */
    char *stats = malloc(size);
    CHECK(malt_stats_json(model, stats, size, NULL));
    printf("rank %zu of %zu: w = %.3f %.3f\n%s\n", rank, world, w[0], w[1], stats);
    free(stats);
    CHECK(malt_vector_free(model));
    CHECK(malt_finalize());
    return 0;
}
