// A spectrogram plan: everything that depends only on the settings (window,
// FFT twiddles, bit reversal, sparse mel weights) is computed once here and
// shared, read-only, by every call and every thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel_api.hpp"

namespace musemo {

enum class PadMode { Constant, Reflect, Edge };

// The kernel sets this build and this CPU can run, fastest first (detected once).
const std::vector<const KernelSet*>& available_kernels();

// Log scaling of every output value: none, decibels, 10 log10(max(x, amin)) -
// 10 log10(max(amin, |ref|)), or log10(1 + scale x) (musicnn's front end).
struct Compression {
    enum class Kind { None, Decibels, Log1p };
    Kind kind = Kind::None;
    float amin = 1e-10f;
    float ref = 1.0f;
    float scale = 1.0f;
};

class SpectrogramPlan {
public:
    // window: n_fft samples (already centred and zero-padded to n_fft).
    // mel: n_mels x (n_fft/2 + 1) row-major weights, or empty for the power spectrogram.
    // A plan is immutable: every thread may share it.
    SpectrogramPlan(int n_fft, int hop_length, bool center, PadMode pad_mode,
                    const std::vector<float>& window, float power, const std::vector<float>& mel,
                    int n_mels, const KernelSet* kernels, const Compression& log = Compression{});
    // The tables point into the plan's own vectors: a copy would point into the original.
    SpectrogramPlan(const SpectrogramPlan&) = delete;
    SpectrogramPlan& operator=(const SpectrogramPlan&) = delete;

    int n_fft() const { return tables_.n_fft; }
    int n_rows() const { return tables_.n_mels > 0 ? tables_.n_mels : tables_.n_bins; }
    const KernelSet& kernels() const { return *kernels_; }
    // Frames for a signal of n samples (0 when it is too short, uncentred).
    std::int64_t n_frames(std::int64_t n) const;

    // Fill out (n_rows x n_frames(n), row-major) from y. Returns -1, or the
    // index of the first non-finite sample (out is then left untouched).
    std::int64_t compute(const float* y, std::int64_t n, float* out) const;

private:
    void build_fft_tables();
    void build_mel_tables(const std::vector<float>& mel);
    const float* frame_pointer(const float* y, std::int64_t n, std::int64_t t, float* edge) const;

    int hop_;
    bool center_;
    PadMode pad_mode_;
    const KernelSet* kernels_;
    const KernelSet* narrow_;
    KernelTables tables_{};
    std::vector<float> window_, stage_twiddles_, twist_, mel_weights_;
    std::vector<int> bitrev_, mel_start_, mel_len_;
    std::vector<std::int64_t> mel_offset_;
};

// One signal of a batch: compute() fills out and sets bad_sample.
struct Job {
    const float* y;
    std::int64_t n;
    float* out;
    std::int64_t bad_sample = -1;
};

// Run every job on `threads` threads: the calling thread and threads - 1 workers started
// for this call (some 50 us each on Linux), whose scratch lives as long as the call.
void run_jobs(const SpectrogramPlan& plan, std::vector<Job>& jobs, int threads);

}  // namespace musemo
