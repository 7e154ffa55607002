/* The checks of the C test programs: each counts, prints what failed (with
 * this rank and malt's last error) and lets the program go on, so that one
 * run reports every failed check. A program prints its totals at the end
 * and exits non-zero when `failures` is. */
#ifndef MALT_TEST_CHECK_H
#define MALT_TEST_CHECK_H

#include <stdio.h>
#include <string.h>
#include <malt.h>

static int checks, failures;
/* This process's rank, for messages (0 until the program knows it). */
static size_t rank;

/* `got` must be `want`; a failure must come with a message. */
static void expect_status(int line, const char *what, malt_status got, malt_status want) {
    checks++;
    if (got != want) {
        failures++;
        fprintf(stderr, "rank %zu line %d: %s returned %s, expected %s (last error: %s)\n", rank,
                line, what, malt_status_string(got), malt_status_string(want), malt_last_error());
    } else if (want != MALT_OK && malt_last_error()[0] == '\0') {
        failures++;
        fprintf(stderr, "rank %zu line %d: %s failed without a message\n", rank, line, what);
    }
}

static void expect_true(int line, const char *what, int ok) {
    checks++;
    if (!ok) {
        failures++;
        fprintf(stderr, "rank %zu line %d: %s is false (last error: %s)\n", rank, line, what,
                malt_last_error());
    }
}

#define EXPECT(call, want) expect_status(__LINE__, #call, (call), (want))
#define OK(call) EXPECT(call, MALT_OK)
#define TRUE(cond) expect_true(__LINE__, #cond, (cond))
#define MESSAGE_HAS(text) TRUE(strstr(malt_last_error(), (text)) != NULL)
#define MESSAGE_LACKS(text) TRUE(strstr(malt_last_error(), (text)) == NULL)

#endif
