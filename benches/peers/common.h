/* Helpers shared by the peer benchmarks (C and C++): the measurement plan,
 * core placement, clocks and CPU time.
 *
 * A plan is "N:COUNT,N:COUNT,...": N is the message size (bytes for the
 * point-to-point programs, floats for the exchange programs) and COUNT the
 * number of timed operations at that size. run.sh passes the same plan to
 * every system so they all do the same work.
 */
#ifndef MALT_PEERS_COMMON_H
#define MALT_PEERS_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define PEERS_MAX_PLAN 64
/* Largest size (bytes or floats) and count a plan entry may ask for: a
 * plan cannot make a program allocate or loop by its own say-so. */
#define PEERS_MAX_SIZE (1ULL << 30)
#define PEERS_MAX_COUNT 10000000ULL

typedef struct {
    size_t n[PEERS_MAX_PLAN];
    size_t count[PEERS_MAX_PLAN];
    int len;
} peers_plan;

/* Parses "N:COUNT,..."; returns 0, or -1 with a message on stderr. */
static inline int peers_parse_plan(const char *text, peers_plan *plan) {
    plan->len = 0;
    const char *p = text;
    while (*p) {
        if (plan->len == PEERS_MAX_PLAN) {
            fprintf(stderr, "plan: more than %d entries\n", PEERS_MAX_PLAN);
            return -1;
        }
        char *end = NULL;
        errno = 0;
        /* strtoull takes "-4" for a huge number: digits only. */
        if (*p < '0' || *p > '9') {
            fprintf(stderr, "plan: bad size at \"%s\" (want N:COUNT,...)\n", p);
            return -1;
        }
        unsigned long long n = strtoull(p, &end, 10);
        if (errno || end == p || *end != ':' || n == 0 || n > PEERS_MAX_SIZE) {
            fprintf(stderr, "plan: bad size at \"%s\" (want N:COUNT,...)\n", p);
            return -1;
        }
        p = end + 1;
        if (*p < '0' || *p > '9') {
            fprintf(stderr, "plan: bad count at \"%s\" (want N:COUNT,...)\n", p);
            return -1;
        }
        unsigned long long c = strtoull(p, &end, 10);
        if (errno || end == p || (*end != ',' && *end != '\0') || c == 0 ||
            c > PEERS_MAX_COUNT) {
            fprintf(stderr, "plan: bad count at \"%s\" (want N:COUNT,...)\n", p);
            return -1;
        }
        plan->n[plan->len] = (size_t)n;
        plan->count[plan->len] = (size_t)c;
        plan->len++;
        p = *end == ',' ? end + 1 : end;
    }
    if (plan->len == 0) {
        fprintf(stderr, "plan: empty\n");
        return -1;
    }
    return 0;
}

static inline size_t peers_plan_max(const peers_plan *plan) {
    size_t m = 0;
    for (int i = 0; i < plan->len; i++)
        if (plan->n[i] > m)
            m = plan->n[i];
    return m;
}

/* Pins the calling thread (and the threads it starts later) to the
 * (rank mod k)-th of the k CPUs this process may run on: the placement
 * every system in run.sh uses. PEERS_PIN=0 in the environment turns it off.
 * Returns the CPU, or -1. */
static inline int peers_pin(int rank) {
    const char *env = getenv("PEERS_PIN");
    if (env && strcmp(env, "0") == 0)
        return -1;
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        return -1;
    int k = CPU_COUNT(&allowed);
    if (k <= 0)
        return -1;
    int want = rank % k, seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed))
            continue;
        if (seen++ == want) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            return sched_setaffinity(0, sizeof one, &one) == 0 ? cpu : -1;
        }
    }
    return -1;
}

static inline double peers_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* User plus system CPU seconds of the whole process (all its threads). */
static inline double peers_cpu(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static inline int peers_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile of n samples (sorts them), nearest rank as in malt. */
static inline double peers_percentile(double *v, size_t n, double p) {
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof *v, peers_cmp_double);
    size_t i = (size_t)((p / 100.0) * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* The rank given in the environment by a launcher, or -1. */
static inline int peers_env_rank(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v)
        return -1;
    char *end = NULL;
    long r = strtol(v, &end, 10);
    return (*end == '\0' && r >= 0 && r < 1 << 20) ? (int)r : -1;
}

#endif
