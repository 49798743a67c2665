// A self-contained check of the C++ engine without Python: every kernel set
// this CPU runs, against a direct DFT in double precision. Used to prove the
// engine on other architectures (e.g. aarch64 under qemu, see test_native.py).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "spectrogram.hpp"

using musemo::PadMode;
using musemo::SpectrogramPlan;

static double check(const musemo::KernelSet* k, int n_fft, int n_frames, std::mt19937& rng) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> y(static_cast<std::size_t>(n_fft) * n_frames);
    for (float& v : y) v = u(rng);
    std::vector<float> window(n_fft, 1.0f);
    SpectrogramPlan plan(n_fft, n_fft, false, PadMode::Constant, window, 2.0f, {}, 0, k);
    const int bins = n_fft / 2 + 1;
    std::vector<float> out(static_cast<std::size_t>(bins) * n_frames);
    if (plan.compute(y.data(), static_cast<std::int64_t>(y.size()), out.data()) != -1) return 1e9;
    std::vector<double> cos_table(n_fft), sin_table(n_fft);
    for (int i = 0; i < n_fft; ++i) {
        cos_table[i] = std::cos(-2.0 * M_PI * i / n_fft);
        sin_table[i] = std::sin(-2.0 * M_PI * i / n_fft);
    }
    double worst = 0.0;
    for (int t = 0; t < n_frames; ++t) {
        std::vector<double> ref(bins);
        double peak = 0.0;
        for (int b = 0; b < bins; ++b) {
            double re = 0.0, im = 0.0;
            for (int i = 0; i < n_fft; ++i) {
                const int r = static_cast<int>((static_cast<long long>(b) * i) % n_fft);
                re += y[static_cast<std::size_t>(t) * n_fft + i] * cos_table[r];
                im += y[static_cast<std::size_t>(t) * n_fft + i] * sin_table[r];
            }
            ref[b] = re * re + im * im;
            peak = std::fmax(peak, ref[b]);
        }
        for (int b = 0; b < bins; ++b)
            worst = std::fmax(worst, std::fabs(out[static_cast<std::size_t>(b) * n_frames + t] - ref[b]) / peak);
    }
    return worst;
}

int main() {
    std::mt19937 rng(7);
    int passed = 0, failed = 0;
    for (const musemo::KernelSet* k : musemo::available_kernels()) {
        for (int n_fft = 4; n_fft <= 4096; n_fft *= 2) {
            // 19 frames: full and partial batches, and the narrow kernel for the tail
            const double err = check(k, n_fft, n_fft <= 1024 ? 19 : 5, rng);
            const bool ok = err <= 1e-6;
            (ok ? passed : failed) += 1;
            std::printf("%-8s n_fft=%-5d max|err|/peak=%.2e %s\n", k->name, n_fft, err, ok ? "ok" : "FAIL");
        }
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
