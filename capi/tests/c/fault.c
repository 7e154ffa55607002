/* A fault-tolerant job of three ranks (MALT_MIN_RANKS=2): rank 2 dies after
 * the first exchange without finalizing; ranks 0 and 1 get
 * MALT_ERR_REGROUPED, regroup, rejoin their vector and exchange again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malt.h>
#include "check.h"


int main(void) {
    size_t world, members[3], n = 0;
    uint32_t epoch = 0;
    OK(malt_init());
    OK(malt_rank(&rank));
    OK(malt_world_size(&world));
    TRUE(world == 3);
    OK(malt_epoch(&epoch));
    TRUE(epoch == 1);
    EXPECT(malt_members(members, 2, &n), MALT_ERR_LENGTH);
    TRUE(n == 3);
    OK(malt_members(members, 3, &n));
    TRUE(n == 3 && members[0] == 0 && members[2] == 2);

    malt_vector *v;
    float *x;
    OK(malt_dense_create_f32("w", 4, NULL, &v, &x));
    for (int i = 0; i < 4; i++)
        x[i] = (float)rank;
    OK(malt_scatter(v));
    OK(malt_gather(v, MALT_UDF_AVG));
    TRUE(x[0] == 1.0f && x[3] == 1.0f);
    if (rank == 2) {
        printf("fault rank 2: leaving abruptly after %d checks, %d failed\n", checks, failures);
        fflush(stdout);
        _Exit(failures == 0 ? 0 : 1);
    }

    /* Under BSP the next gather waits for rank 2, until the group regroups. */
    malt_status s = MALT_OK;
    for (int t = 0; t < 100 && s == MALT_OK; t++) {
        s = malt_scatter(v);
        if (s == MALT_OK)
            s = malt_gather(v, MALT_UDF_AVG);
    }
    EXPECT(s, MALT_ERR_REGROUPED);
    TRUE(strstr(malt_last_error(), "regrouped") != NULL);
    OK(malt_regroup(&epoch));
    TRUE(epoch == 2);
    OK(malt_members(members, 3, &n));
    TRUE(n == 2 && members[0] == 0 && members[1] == 1);

    OK(malt_vector_rejoin(v));
    float *again;
    OK(malt_dense_data_f32(v, &again, NULL));
    TRUE(again == x);
    for (int i = 0; i < 4; i++)
        x[i] = 10.0f * (float)rank;
    OK(malt_scatter(v));
    OK(malt_gather(v, MALT_UDF_AVG));
    TRUE(x[0] == 5.0f && x[3] == 5.0f);

    OK(malt_barrier());
    OK(malt_finalize());
    printf("fault rank %zu: %d checks, %d failed\n", rank, checks, failures);
    return failures == 0 ? 0 : 1;
}
