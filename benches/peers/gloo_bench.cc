// Gloo side of benches/peers.
//
//   gloo_bench RANK SIZE STORE_DIR PLAN
//
// Ranks meet through a gloo::rendezvous::FileStore in STORE_DIR (a fresh
// directory per run) and connect over TCP on 127.0.0.1 (Gloo has no shared
// memory transport; this is what torch.distributed's CPU backend uses on one
// machine). PLAN is in floats: COUNT rounds of gloo::allreduce (sum, in
// place) followed by a division by the number of ranks, timed per round.
//
// Rank 0 prints one JSON line per plan entry; CPU seconds are summed over
// all ranks (getrusage around the timed part). Each rank pins itself to CPU
// (RANK mod k) of the CPUs it may use, as every system in run.sh does.
#include "common.h"

#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/transport/tcp/device.h>

#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr std::chrono::seconds kTimeout(60);

uint32_t next_tag = 1;

void allreduce_sum(const std::shared_ptr<gloo::Context>& ctx, float* x, size_t n) {
    gloo::AllreduceOptions opts(ctx);
    opts.setOutput(x, n);
    opts.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
    opts.setTag(next_tag++);
    opts.setTimeout(kTimeout);
    gloo::allreduce(opts);
}

void allreduce_doubles(const std::shared_ptr<gloo::Context>& ctx, double* x, size_t n, bool max) {
    gloo::AllreduceOptions opts(ctx);
    opts.setOutput(x, n);
    if (max)
        opts.setReduceFunction(
            static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::max<double>));
    else
        opts.setReduceFunction(
            static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<double>));
    opts.setTag(next_tag++);
    opts.setTimeout(kTimeout);
    gloo::allreduce(opts);
}

void barrier(const std::shared_ptr<gloo::Context>& ctx) {
    gloo::BarrierOptions opts(ctx);
    opts.setTag(next_tag++);
    opts.setTimeout(kTimeout);
    gloo::barrier(opts);
}

int run(int rank, int size, const std::string& store_dir, const peers_plan& plan) {
    gloo::transport::tcp::attr attr("127.0.0.1");
    auto dev = gloo::transport::tcp::CreateDevice(attr);
    gloo::rendezvous::FileStore store(store_dir);
    auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
    ctx->setTimeout(kTimeout);
    ctx->connectFullMesh(store, dev);
    std::shared_ptr<gloo::Context> c = ctx;

    std::vector<float> x(peers_plan_max(&plan));
    const float inv = 1.0f / static_cast<float>(size);
    for (int e = 0; e < plan.len; e++) {
        size_t len = plan.n[e], rounds = plan.count[e];
        std::vector<double> times(rounds);
        for (size_t i = 0; i < len; i++)
            x[i] = static_cast<float>(rank) + static_cast<float>(i % 7);
        size_t warm = rounds < 5 ? rounds : 5;
        for (size_t r = 0; r < warm; r++) {
            allreduce_sum(c, x.data(), len);
            for (size_t i = 0; i < len; i++)
                x[i] *= inv;
        }
        barrier(c);
        double cpu0 = peers_cpu(), t0 = peers_now();
        for (size_t r = 0; r < rounds; r++) {
            double t = peers_now();
            allreduce_sum(c, x.data(), len);
            for (size_t i = 0; i < len; i++)
                x[i] *= inv;
            times[r] = (peers_now() - t) * 1e6;
        }
        double wall = peers_now() - t0, cpu = peers_cpu() - cpu0;
        // Every round keeps the average: (size-1)/2 + i%7 everywhere.
        float mean = static_cast<float>(size - 1) / 2.0f;
        double bad = 0.0;
        for (size_t i : {size_t{0}, len / 2, len - 1}) {
            float want = mean + static_cast<float>(i % 7);
            if (x[i] < want - 1e-3f || x[i] > want + 1e-3f)
                bad = 1.0;
        }
        double p50 = peers_percentile(times.data(), rounds, 50.0);
        double p99 = peers_percentile(times.data(), rounds, 99.0);
        double sums[2] = {cpu, bad};
        double p50_max = p50;
        allreduce_doubles(c, sums, 2, false);
        allreduce_doubles(c, &p50_max, 1, true);
        if (sums[1] != 0.0) {
            fprintf(stderr, "gloo_bench: rank %d: wrong average at %zu floats\n", rank, len);
            return 1;
        }
        if (rank == 0) {
            printf("{\"ranks\":%d,\"len\":%zu,\"rounds\":%zu,\"round_us_p50\":%.3f,"
                   "\"round_us_p99\":%.3f,\"round_us_p50_max\":%.3f,"
                   "\"wall_secs\":%.9f,\"cpu_secs\":%.6f}\n",
                   size, len, rounds, p50, p99, p50_max, wall, sums[0]);
            fflush(stdout);
        }
    }
    barrier(c);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: gloo_bench RANK SIZE STORE_DIR N:COUNT,...\n");
        return 2;
    }
    char* end = nullptr;
    long rank = strtol(argv[1], &end, 10);
    bool bad = *end != '\0';
    long size = strtol(argv[2], &end, 10);
    bad = bad || *end != '\0' || size < 1 || rank < 0 || rank >= size;
    peers_plan plan;
    if (bad || peers_parse_plan(argv[4], &plan) != 0) {
        fprintf(stderr, "gloo_bench: bad arguments (RANK SIZE STORE_DIR N:COUNT,...)\n");
        return 2;
    }
    peers_pin(static_cast<int>(rank));
    try {
        return run(static_cast<int>(rank), static_cast<int>(size), argv[3], plan);
    } catch (const std::exception& e) {
        fprintf(stderr, "gloo_bench: rank %ld: %s\n", rank, e.what());
        return 1;
    }
}
