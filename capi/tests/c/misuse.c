/* Misuse of the C API: every call below is wrong in some way and must
 * return the expected error code, with a message, and never crash. Runs as a
 * one-rank job (MALT_MASTER_PORT and MALT_JOB_TOKEN come from the caller).
 * Build it with -fsanitize=address, or run it under valgrind, to check that
 * no misuse touches memory it should not. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <malt.h>
#include "check.h"


static int never_called(float *local, const float *const *incoming, size_t count, size_t len,
                        void *user) {
    (void)local, (void)incoming, (void)count, (void)len;
    ++*(int *)user;
    return 0;
}

int main(void) {
    malt_vector *bogus = (malt_vector *)(uintptr_t)0x1234;
    size_t rank = 99, world = 99;
    uint64_t u64 = 0;
    malt_vector *w = NULL, *s = NULL, *d = NULL;
    float *data = NULL;
    double *ddata = NULL;

    /* Before malt_init. */
    TRUE(malt_last_error() != NULL && malt_last_error()[0] == '\0');
    EXPECT(malt_rank(&rank), MALT_ERR_NOT_INITIALIZED);
    MESSAGE_HAS("malt_rank");
    MESSAGE_HAS("not initialized");
    TRUE(rank == 99);
    EXPECT(malt_world_size(&world), MALT_ERR_NOT_INITIALIZED);
    EXPECT(malt_local_rank(&rank), MALT_ERR_NOT_INITIALIZED);
    MESSAGE_HAS("malt_local_rank");
    EXPECT(malt_local_world(&world), MALT_ERR_NOT_INITIALIZED);
    TRUE(rank == 99 && world == 99);
    EXPECT(malt_barrier(), MALT_ERR_NOT_INITIALIZED);
    EXPECT(malt_finalize(), MALT_ERR_NOT_INITIALIZED);
    EXPECT(malt_scatter(bogus), MALT_ERR_NOT_INITIALIZED);
    EXPECT(malt_scatter(NULL), MALT_ERR_NULL);
    EXPECT(malt_dense_create_f32("w", 4, NULL, &w, &data), MALT_ERR_NOT_INITIALIZED);
    TRUE(strcmp(malt_status_string(MALT_ERR_BAD_HANDLE), "MALT_ERR_BAD_HANDLE") == 0);
    TRUE(strcmp(malt_status_string(-7), "unknown status") == 0);

    EXPECT(malt_init(), MALT_OK);
    EXPECT(malt_init(), MALT_ERR_ALREADY_INITIALIZED);
    EXPECT(malt_rank(NULL), MALT_ERR_NULL);
    MESSAGE_HAS("rank");
    EXPECT(malt_world_size(NULL), MALT_ERR_NULL);
    EXPECT(malt_rank(&rank), MALT_OK);
    EXPECT(malt_world_size(&world), MALT_OK);
    TRUE(rank == 0 && world == 1);
    /* One rank: local rank 0 of 1, whatever the launcher says. */
    EXPECT(malt_local_rank(NULL), MALT_ERR_NULL);
    MESSAGE_HAS("local_rank");
    EXPECT(malt_local_world(NULL), MALT_ERR_NULL);
    MESSAGE_HAS("local_world");
    rank = world = 99;
    EXPECT(malt_local_rank(&rank), MALT_OK);
    EXPECT(malt_local_world(&world), MALT_OK);
    TRUE(rank == 0 && world == 1);

    /* Creation: bad names, options, lengths and outputs. The outputs are
     * set to NULL on failure. */
    malt_options bad_graph = {0}, bad_mode = {0}, bad_random = {0};
    bad_graph.graph = 42;
    bad_mode.consistency = 7;
    bad_random.graph = MALT_GRAPH_RANDOM;
    bad_random.random_peers = 5;
    w = bogus;
    data = (float *)bogus;
    EXPECT(malt_dense_create_f32(NULL, 4, NULL, &w, &data), MALT_ERR_NULL);
    TRUE(w == NULL && data == NULL);
    EXPECT(malt_dense_create_f32("w", 4, NULL, NULL, &data), MALT_ERR_NULL);
    EXPECT(malt_dense_create_f32("", 4, NULL, &w, &data), MALT_ERR_INVALID_ARGUMENT);
    EXPECT(malt_dense_create_f32("\xff\xfe", 4, NULL, &w, &data), MALT_ERR_INVALID_ARGUMENT);
    MESSAGE_HAS("UTF-8");
    EXPECT(malt_dense_create_f32("w", 4, &bad_graph, &w, &data), MALT_ERR_INVALID_ARGUMENT);
    MESSAGE_HAS("unknown graph 42");
    EXPECT(malt_dense_create_f32("w", 4, &bad_mode, &w, &data), MALT_ERR_INVALID_ARGUMENT);
    MESSAGE_HAS("consistency");
    EXPECT(malt_dense_create_f32("w", 4, &bad_random, &w, &data), MALT_ERR_INVALID_ARGUMENT);
    EXPECT(malt_dense_create_f32("w", SIZE_MAX, NULL, &w, &data), MALT_ERR_NO_MEMORY);
    EXPECT(malt_dense_create_f64("w", SIZE_MAX / 4, NULL, &d, &ddata), MALT_ERR_NO_MEMORY);
    EXPECT(malt_sparse_create_f32("s", 10, SIZE_MAX / 2, NULL, &s), MALT_ERR_NO_MEMORY);
    TRUE(w == NULL && d == NULL && s == NULL);

    /* A dense vector, used wrongly. */
    EXPECT(malt_dense_create_f32("w", 8, NULL, &w, &data), MALT_OK);
    TRUE(w != NULL && data != NULL);
    for (int i = 0; i < 8; i++)
        data[i] = (float)i;
    float *again = NULL;
    size_t len = 0;
    EXPECT(malt_dense_data_f32(w, &again, &len), MALT_OK);
    TRUE(again == data && len == 8);
    EXPECT(malt_dense_data_f32(w, NULL, &len), MALT_ERR_NULL);
    EXPECT(malt_dense_data_f64(w, &ddata, &len), MALT_ERR_TYPE);
    MESSAGE_HAS("dense vector of float");
    EXPECT(malt_dense_data_f32(bogus, &again, &len), MALT_ERR_BAD_HANDLE);
    MESSAGE_HAS("not a live vector handle");
    EXPECT(malt_sparse_update_f32(w, NULL, NULL, 0), MALT_ERR_TYPE);
    EXPECT(malt_sparse_clear(w), MALT_ERR_TYPE);
    EXPECT(malt_sparse_entries_f32(w, NULL, NULL, 0, &len), MALT_ERR_TYPE);
    EXPECT(malt_gather(w, 9), MALT_ERR_INVALID_ARGUMENT);
    MESSAGE_HAS("unknown merge function 9");
    EXPECT(malt_gather(w, -1), MALT_ERR_INVALID_ARGUMENT);
    EXPECT(malt_gather_fn_f32(w, NULL, NULL), MALT_ERR_NULL);
    EXPECT(malt_gather_each_f32(w, NULL, NULL), MALT_ERR_NULL);
    EXPECT(malt_gather_fn_f64(w, (malt_merge_fn_f64)0, NULL), MALT_ERR_NULL);
    EXPECT(malt_vector_len(w, NULL), MALT_ERR_NULL);
    EXPECT(malt_iteration(w, NULL), MALT_ERR_NULL);
    EXPECT(malt_scatter(bogus), MALT_ERR_BAD_HANDLE);
    EXPECT(malt_gather(bogus, MALT_UDF_AVG), MALT_ERR_BAD_HANDLE);
    /* A second vector of the same name is refused, and the first survives. */
    EXPECT(malt_dense_create_f32("w", 8, NULL, &d, &again), MALT_ERR_INVALID_ARGUMENT);
    MESSAGE_HAS("already exists");

    /* One rank: nothing arrives, the values stay, the callback is not called. */
    int calls = 0;
    EXPECT(malt_scatter(w), MALT_OK);
    EXPECT(malt_gather(w, MALT_UDF_AVG), MALT_OK);
    EXPECT(malt_scatter(w), MALT_OK);
    EXPECT(malt_gather_fn_f32(w, never_called, &calls), MALT_OK);
    TRUE(calls == 0);
    TRUE(data[0] == 0.0f && data[7] == 7.0f);
    EXPECT(malt_iteration(w, &u64), MALT_OK);
    TRUE(u64 == 2);
    EXPECT(malt_vector_len(w, &u64), MALT_OK);
    TRUE(u64 == 8);

    /* Statistics: a size query, and buffers too small. */
    size_t needed = 0;
    char buf[8192];
    EXPECT(malt_stats_json(w, NULL, 0, &needed), MALT_OK);
    TRUE(needed > 2 && needed < sizeof buf);
    memset(buf, 'x', sizeof buf);
    EXPECT(malt_stats_json(w, buf, needed - 1, NULL), MALT_ERR_LENGTH);
    TRUE(buf[0] == 'x');
    EXPECT(malt_stats_json(w, NULL, sizeof buf, NULL), MALT_ERR_NULL);
    EXPECT(malt_stats_json(w, buf, needed, NULL), MALT_OK);
    TRUE(strlen(buf) == needed - 1 && buf[0] == '{' && strstr(buf, "\"gathers\":2") != NULL);

    /* A sparse vector, used wrongly. */
    EXPECT(malt_sparse_create_f32("s", 100, 3, NULL, &s), MALT_OK);
    uint64_t idx[4] = {5, 1, 100, 7};
    float val[4] = {0.5f, 0.25f, 1.0f, 2.0f};
    EXPECT(malt_sparse_update_f32(s, NULL, val, 2), MALT_ERR_NULL);
    EXPECT(malt_sparse_update_f32(s, idx, NULL, 2), MALT_ERR_NULL);
    EXPECT(malt_sparse_update_f32(s, NULL, NULL, 0), MALT_OK);
    EXPECT(malt_sparse_update_f32(s, idx, val, 3), MALT_ERR_INVALID_ARGUMENT);
    MESSAGE_HAS("index 100");
    idx[2] = 9;
    EXPECT(malt_sparse_update_f32(s, idx, val, 4), MALT_ERR_LENGTH);
    MESSAGE_HAS("at most 3");
    EXPECT(malt_sparse_entries_f32(s, NULL, NULL, 0, &len), MALT_OK);
    TRUE(len == 0);
    EXPECT(malt_sparse_update_f32(s, idx, val, 3), MALT_OK);
    EXPECT(malt_sparse_update_f64(s, idx, (const double *)val, 1), MALT_ERR_TYPE);
    uint64_t out_idx[3];
    float out_val[3];
    EXPECT(malt_sparse_entries_f32(s, out_idx, out_val, 2, &len), MALT_ERR_LENGTH);
    TRUE(len == 3);
    EXPECT(malt_sparse_entries_f32(s, out_idx, out_val, 3, NULL), MALT_ERR_NULL);
    EXPECT(malt_sparse_entries_f32(s, NULL, out_val, 3, &len), MALT_ERR_NULL);
    EXPECT(malt_sparse_entries_f32(s, out_idx, out_val, 3, &len), MALT_OK);
    TRUE(len == 3 && out_idx[0] == 1 && out_idx[1] == 5 && out_idx[2] == 9);
    TRUE(out_val[0] == 0.25f && out_val[1] == 0.5f && out_val[2] == 1.0f);
    EXPECT(malt_dense_data_f32(s, &again, &len), MALT_ERR_TYPE);
    EXPECT(malt_gather_fn_f32(s, never_called, &calls), MALT_ERR_TYPE);
    EXPECT(malt_scatter(s), MALT_OK);
    EXPECT(malt_gather(s, MALT_UDF_SUM), MALT_OK);
    EXPECT(malt_sparse_clear(s), MALT_OK);
    EXPECT(malt_sparse_entries_f32(s, out_idx, out_val, 3, &len), MALT_OK);
    TRUE(len == 0);

    /* Double free, use after free. */
    EXPECT(malt_vector_free(w), MALT_OK);
    EXPECT(malt_vector_free(w), MALT_ERR_BAD_HANDLE);
    EXPECT(malt_scatter(w), MALT_ERR_BAD_HANDLE);
    EXPECT(malt_gather(w, MALT_UDF_AVG), MALT_ERR_BAD_HANDLE);
    EXPECT(malt_dense_data_f32(w, &again, &len), MALT_ERR_BAD_HANDLE);
    EXPECT(malt_vector_free(NULL), MALT_ERR_NULL);
    EXPECT(malt_vector_free(bogus), MALT_ERR_BAD_HANDLE);

    /* Use after finalize (s is still alive: finalize frees it). */
    EXPECT(malt_barrier(), MALT_OK);
    EXPECT(malt_finalize(), MALT_OK);
    EXPECT(malt_finalize(), MALT_ERR_FINALIZED);
    MESSAGE_HAS("finalized");
    EXPECT(malt_init(), MALT_ERR_FINALIZED);
    EXPECT(malt_rank(&rank), MALT_ERR_FINALIZED);
    EXPECT(malt_local_rank(&rank), MALT_ERR_FINALIZED);
    EXPECT(malt_local_world(&world), MALT_ERR_FINALIZED);
    EXPECT(malt_scatter(s), MALT_ERR_FINALIZED);
    EXPECT(malt_sparse_update_f32(s, idx, val, 1), MALT_ERR_FINALIZED);
    EXPECT(malt_vector_free(s), MALT_ERR_FINALIZED);
    EXPECT(malt_dense_create_f32("w2", 4, NULL, &w, &data), MALT_ERR_FINALIZED);
    EXPECT(malt_barrier(), MALT_ERR_FINALIZED);

    printf("misuse: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
