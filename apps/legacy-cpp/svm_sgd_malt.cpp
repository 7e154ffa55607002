// svm_sgd: a linear SVM trained by stochastic gradient descent, the way
// Bottou's svmsgd does it; data-parallel with malt (malt launch -n N ...).
//
//   svm_sgd TRAIN.libsvm [--epochs N] [--cb N] [--lambda L]
//
// Minimises  lambda/2 |w|^2 + (1/n) sum_i max(0, 1 - y_i (w.x_i + b))  with
// the learning rate 1 / (lambda (t + t0)), t0 calibrated on the first 1000
// examples; the weights are kept as wscale * w so that a step costs
// O(non-zeros), and the bias learns at 1% of the rate. Labels above 0 are
// +1, the others -1. Every cb examples the scale is folded into the weights
// (default 5000). Prints the objective after every epoch.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>
#include <malt.h>
#define CHECK(call) do { if ((call) != MALT_OK) { std::fprintf(stderr, "%s\n", malt_last_error()); return 1; } } while (0)

struct Feature {
    unsigned index; // 0-based
    float value;
};

struct Example {
    double label; // +1 or -1
    std::vector<Feature> x;
};

// Reads a LIBSVM file: "label index:value ..." with 1-based, increasing
// indices; '#' starts a comment. Returns false with a message on bad input.
static bool read_libsvm(const char *path, std::vector<Example> &data, size_t &dim,
                        std::string &error) {
    std::ifstream in(path);
    if (!in) {
        error = std::string(path) + ": cannot open";
        return false;
    }
    std::string line;
    size_t lineno = 0;
    dim = 0;
    while (std::getline(in, line)) {
        lineno++;
        std::string where = std::string(path) + ":" + std::to_string(lineno) + ": ";
        size_t hash = line.find('#');
        if (hash != std::string::npos)
            line.resize(hash);
        const char *p = line.c_str();
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        if (*p == '\0')
            continue;
        char *end;
        double label = std::strtod(p, &end);
        if (end == p || !std::isfinite(label)) {
            error = where + "bad label";
            return false;
        }
        Example ex;
        ex.label = label > 0 ? 1.0 : -1.0;
        unsigned long previous = 0;
        p = end;
        for (;;) {
            while (*p == ' ' || *p == '\t' || *p == '\r')
                p++;
            if (*p == '\0')
                break;
            if (std::strncmp(p, "qid:", 4) == 0) {
                while (*p && *p != ' ' && *p != '\t')
                    p++;
                continue;
            }
            unsigned long index = std::strtoul(p, &end, 10);
            if (end == p || *end != ':' || index == 0 || index <= previous ||
                index > std::numeric_limits<unsigned>::max()) {
                error = where + "bad feature index";
                return false;
            }
            p = end + 1;
            float value = std::strtof(p, &end);
            if (end == p || !std::isfinite(value)) {
                error = where + "bad feature value";
                return false;
            }
            p = end;
            ex.x.push_back({unsigned(index - 1), value});
            previous = index;
        }
        if (previous > dim)
            dim = previous;
        data.push_back(std::move(ex));
    }
    return true;
}

static double dot(const float *w, const Example &e) {
    double s = 0;
    for (const Feature &f : e.x)
        s += double(w[f.index] * f.value);
    return s;
}

// The model: dim weights w (times wscale) and the bias.
struct Svm {
    float *w;
    size_t dim;
    double lambda;
    double wscale = 1, bias = 0;

    void step(const Example &e, double eta) {
        double s = wscale * dot(w, e) + bias;
        wscale *= 1 - eta * lambda;
        if (e.label * s < 1) {
            float coef = float(eta * e.label / wscale);
            for (const Feature &f : e.x)
                w[f.index] += coef * f.value;
            bias += 0.01 * eta * e.label;
        }
        if (wscale < 1e-5)
            renormalize();
    }

    // w <- wscale * w, wscale <- 1.
    void renormalize() {
        if (wscale == 1)
            return;
        float s = float(wscale);
        for (size_t i = 0; i < dim; i++)
            w[i] *= s;
        wscale = 1;
    }

    // lambda/2 |w|^2 + mean hinge loss over data[lo, hi).
    double objective(const std::vector<Example> &data, size_t lo, size_t hi) {
        renormalize();
        double loss = 0, norm = 0;
        for (size_t i = lo; i < hi; i++)
            loss += std::fmax(0.0, 1 - data[i].label * (dot(w, data[i]) + bias));
        for (size_t i = 0; i < dim; i++)
            norm += double(w[i]) * double(w[i]);
        return 0.5 * lambda * norm + loss / double(hi > lo ? hi - lo : 1);
    }
};

// The objective on the sample after one pass with the constant rate eta.
static double try_eta(const std::vector<Example> &data, size_t sample, size_t dim, double lambda,
                      double eta) {
    if (eta * lambda >= 1)
        return std::numeric_limits<double>::infinity();
    std::vector<float> w(dim + 1, 0.0f);
    Svm svm{w.data(), dim, lambda};
    for (size_t i = 0; i < sample; i++)
        svm.step(data[i], eta);
    double cost = svm.objective(data, 0, sample);
    return std::isfinite(cost) ? cost : std::numeric_limits<double>::infinity();
}

// svmsgd's calibration: from eta = 1, halve or double while the objective
// on the sample keeps improving; keep the smaller rate of the best pair.
static double calibrate(const std::vector<Example> &data, size_t sample, size_t dim,
                        double lambda) {
    double lo = 1, hi = 2;
    double lo_cost = try_eta(data, sample, dim, lambda, lo);
    double hi_cost = try_eta(data, sample, dim, lambda, hi);
    if (lo_cost < hi_cost) {
        for (int k = 0; k < 40 && lo_cost < hi_cost; k++) {
            hi = lo, hi_cost = lo_cost;
            lo = hi / 2, lo_cost = try_eta(data, sample, dim, lambda, lo);
        }
    } else {
        for (int k = 0; k < 40 && hi_cost < lo_cost; k++) {
            lo = hi, lo_cost = hi_cost;
            hi = lo * 2, hi_cost = try_eta(data, sample, dim, lambda, hi);
        }
    }
    return std::fmin(lo, 0.5 / lambda);
}

int main(int argc, char **argv) {
    const char *path = nullptr;
    int epochs = 10;
    size_t cb = 5000;
    double lambda = 0;
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "--epochs") == 0 && i + 1 < argc)
            epochs = std::atoi(argv[++i]);
        else if (std::strcmp(argv[i], "--cb") == 0 && i + 1 < argc)
            cb = std::strtoul(argv[++i], nullptr, 10);
        else if (std::strcmp(argv[i], "--lambda") == 0 && i + 1 < argc)
            lambda = std::atof(argv[++i]);
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            std::fprintf(stderr, "usage: %s TRAIN.libsvm [--epochs N] [--cb N] [--lambda L]\n",
                         argv[0]);
            return 2;
        }
    }
    if (!path || epochs < 1) {
        std::fprintf(stderr, "usage: %s TRAIN.libsvm [--epochs N] [--cb N] [--lambda L]\n",
                     argv[0]);
        return 2;
    }
    CHECK(malt_init());
    size_t rank, world;
    CHECK(malt_rank(&rank));
    CHECK(malt_world_size(&world));
    std::vector<Example> data;
    size_t dim;
    std::string error;
    if (!read_libsvm(path, data, dim, error)) {
        std::fprintf(stderr, "%s\n", error.c_str());
        return 1;
    }
    size_t n = data.size();
    if (n == 0) {
        std::fprintf(stderr, "%s: no examples\n", path);
        return 1;
    }
    if (lambda <= 0)
        lambda = 1.0 / double(n);

    std::vector<float> weights(dim, 0.0f);
    float *w = weights.data();
    Svm svm{w, dim, lambda};
    // The ranks share the program's own weights (float) and bias (double) in place.
    malt_vector *shared_w, *shared_bias;
    CHECK(malt_dense_wrap_f32("w", w, dim, nullptr, &shared_w));
    CHECK(malt_dense_wrap_f64("bias", &svm.bias, 1, nullptr, &shared_bias));
    double eta0 = calibrate(data, n < 1000 ? n : 1000, dim, lambda);

    // This process trains on data[begin, end); `most` is the largest share.
    size_t begin = n * rank / world, end = n * (rank + 1) / world, most = (n + world - 1) / world;
    size_t rounds = cb ? (most + cb - 1) / cb : 1;
    std::printf("examples %zu features %zu lambda %g eta0 %g\n", n, dim, lambda, eta0);
    std::printf("epoch 0 objective %.9g\n", svm.objective(data, 0, n));
    double seconds = 0;
    size_t t = 0;
    for (int epoch = 1; epoch <= epochs; epoch++) {
        auto start = std::chrono::steady_clock::now();
        for (size_t k = 0; k < rounds; k++) {
            size_t lo = begin + k * (end - begin) / rounds;
            size_t hi = begin + (k + 1) * (end - begin) / rounds;
            for (size_t i = lo; i < hi; i++, t++)
                svm.step(data[i], eta0 / (1 + lambda * eta0 * double(t)));
            // Every cb examples: fold the scale in, so that w[] holds the weights.
            svm.renormalize();
            // wscale is now 1 on every rank, so averaging w[] averages the weights exactly.
            CHECK(malt_scatter(shared_w));
            CHECK(malt_scatter(shared_bias));
            CHECK(malt_gather(shared_w, MALT_UDF_AVG));
            CHECK(malt_gather(shared_bias, MALT_UDF_AVG));
        }
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("epoch %d objective %.9g seconds %.3f\n", epoch, svm.objective(data, 0, n),
                    seconds);
    }
    std::printf("final objective %.9g epochs %d seconds %.3f\n", svm.objective(data, 0, n), epochs,
                seconds);
    CHECK(malt_finalize());
    return 0;
}
