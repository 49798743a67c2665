#include "spectrogram.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <cfloat>
#include <cmath>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <type_traits>

namespace musemo {

namespace {

#if defined(MUSEMO_HAVE_AVX2) || defined(MUSEMO_HAVE_AVX512)
bool cpu_has(const char* feature) {
#if defined(__GNUC__)
    __builtin_cpu_init();
    if (std::string(feature) == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (std::string(feature) == "avx512") {
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq");
    }
#else
    (void)feature;
#endif
    return false;
}
#endif

struct AlignedFree {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t(64)); }
};
using Scratch = std::unique_ptr<float[], AlignedFree>;

// Scratch memory of the calling thread, kept between calls so that a call
// allocates nothing but its output once the thread has warmed up.
float* thread_scratch(std::size_t n) {
    thread_local Scratch buffer;
    thread_local std::size_t capacity = 0;
    if (capacity < n) {
        buffer.reset(static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t(64))));
        capacity = n;
    }
    return buffer.get();
}

constexpr int kMaxLanes = 64;

// numpy.pad semantics for an index outside [0, n).
float padded_sample(const float* y, std::int64_t n, std::int64_t i, PadMode mode) {
    if (i >= 0 && i < n) return y[i];
    switch (mode) {
        case PadMode::Constant:
            return 0.0f;
        case PadMode::Edge:
            return i < 0 ? y[0] : y[n - 1];
        case PadMode::Reflect: {
            if (n == 1) return y[0];
            const std::int64_t period = 2 * (n - 1);
            std::int64_t r = i % period;
            if (r < 0) r += period;
            return y[r < n ? r : period - r];
        }
    }
    return 0.0f;
}

int log2_exact(int n) {
    int p = 0;
    while ((1 << p) < n) ++p;
    return p;
}

}  // namespace

const std::vector<const KernelSet*>& available_kernels() {
    static const std::vector<const KernelSet*> sets = [] {
        std::vector<const KernelSet*> out;
#if defined(MUSEMO_HAVE_AVX512)
        if (cpu_has("avx512")) out.push_back(kernels_avx512());
#endif
#if defined(MUSEMO_HAVE_AVX2)
        if (cpu_has("avx2")) out.push_back(kernels_avx2());
#endif
        out.push_back(kernels_generic());
        return out;
    }();
    return sets;
}

static_assert(!std::is_copy_constructible<SpectrogramPlan>::value &&
                  !std::is_copy_assignable<SpectrogramPlan>::value,
              "a plan's tables point into its own vectors");

SpectrogramPlan::SpectrogramPlan(int n_fft, int hop_length, bool center, PadMode pad_mode,
                                 const std::vector<float>& window, float power,
                                 const std::vector<float>& mel, int n_mels, const KernelSet* kernels,
                                 const Compression& log)
    : hop_(hop_length), center_(center), pad_mode_(pad_mode), kernels_(kernels), narrow_(kernels) {
    // The Python layer validates everything; these checks only keep a
    // misuse of the private module from corrupting memory.
    if (n_fft < 4 || (n_fft & (n_fft - 1)) != 0) throw std::invalid_argument("n_fft must be a power of two >= 4");
    if (hop_length < 1) throw std::invalid_argument("hop_length must be positive");
    if (static_cast<int>(window.size()) != n_fft) throw std::invalid_argument("window must have n_fft samples");
    if (!(power > 0.0f)) throw std::invalid_argument("power must be positive");
    if (n_mels < 0 || mel.size() != static_cast<std::size_t>(n_mels) * static_cast<std::size_t>(n_fft / 2 + 1))
        throw std::invalid_argument("mel weights must be n_mels x (n_fft/2 + 1)");
    if (kernels == nullptr || kernels->lanes > kMaxLanes) throw std::invalid_argument("bad kernel set");

    // A few frames (streaming, short clips, the tail of a batch) go to the
    // narrowest kernel set rather than filling mostly idle wide vectors.
    for (const KernelSet* k : available_kernels()) {
        if (k->lanes < narrow_->lanes) narrow_ = k;
    }
    tables_.n_fft = n_fft;
    tables_.m = n_fft / 2;
    tables_.n_bins = n_fft / 2 + 1;
    tables_.power = power;
    if (log.kind == Compression::Kind::Decibels) {
        if (!(log.amin > 0.0f) || !std::isfinite(log.amin) || !std::isfinite(log.ref))
            throw std::invalid_argument("amin must be positive and ref finite");
        tables_.db = true;
        tables_.db_amin = std::max(log.amin, FLT_MIN);  // the fast logarithm needs normal numbers
        tables_.db_offset = static_cast<float>(10.0 * std::log10(std::max<double>(log.amin, std::fabs(log.ref))));
    } else if (log.kind == Compression::Kind::Log1p) {
        if (!(log.scale > 0.0f) || !std::isfinite(log.scale)) throw std::invalid_argument("scale must be positive");
        tables_.log1p = true;
        tables_.log1p_scale = log.scale;
    }
    window_.resize(n_fft);
    for (int i = 0; i < n_fft; ++i) window_[i] = 0.5f * window[i];
    tables_.window = window_.data();
    build_fft_tables();
    build_mel_tables(mel);
    tables_.n_mels = n_mels;
}

void SpectrogramPlan::build_fft_tables() {
    const int m = tables_.m;
    const int bits = log2_exact(m);
    tables_.n_radix4_stages = bits / 2;
    tables_.final_radix2 = (bits % 2) == 1;
    const double two_pi = 2.0 * 3.14159265358979323846;
    for (int st = 0, s = m / 4; st < tables_.n_radix4_stages; ++st, s /= 4) {
        for (int j = 0; j < s; ++j) {
            for (int q = 1; q <= 3; ++q) {
                const double angle = -two_pi * q * j / (4.0 * s);
                stage_twiddles_.push_back(static_cast<float>(std::cos(angle)));
                stage_twiddles_.push_back(static_cast<float>(std::sin(angle)));
            }
        }
    }
    bitrev_.resize(m);
    for (int k = 0; k < m; ++k) {
        int r = 0;
        for (int b = 0; b < bits; ++b) r |= ((k >> b) & 1) << (bits - 1 - b);
        bitrev_[k] = r;
    }
    for (int k = 0; k < tables_.n_bins; ++k) {
        const double angle = two_pi * k / tables_.n_fft;
        twist_.push_back(static_cast<float>(std::cos(angle)));
        twist_.push_back(static_cast<float>(-std::sin(angle)));
    }
    tables_.stage_twiddles = stage_twiddles_.data();
    tables_.bitrev = bitrev_.data();
    tables_.twist = twist_.data();
}

void SpectrogramPlan::build_mel_tables(const std::vector<float>& mel) {
    const int n_bins = tables_.n_bins;
    const int n_mels = static_cast<int>(mel.size() / n_bins);
    for (int f = 0; f < n_mels; ++f) {
        const float* row = mel.data() + static_cast<std::size_t>(f) * n_bins;
        int lo = 0, hi = n_bins;
        while (lo < n_bins && row[lo] == 0.0f) ++lo;
        while (hi > lo && row[hi - 1] == 0.0f) --hi;
        mel_start_.push_back(lo);
        mel_len_.push_back(hi - lo);
        mel_offset_.push_back(static_cast<std::int64_t>(mel_weights_.size()));
        mel_weights_.insert(mel_weights_.end(), row + lo, row + hi);
    }
    tables_.mel_start = mel_start_.data();
    tables_.mel_len = mel_len_.data();
    tables_.mel_offset = mel_offset_.data();
    tables_.mel_weights = mel_weights_.data();
}

std::int64_t SpectrogramPlan::n_frames(std::int64_t n) const {
    if (center_) return 1 + n / hop_;
    if (n < tables_.n_fft) return 0;
    return 1 + (n - tables_.n_fft) / hop_;
}

const float* SpectrogramPlan::frame_pointer(const float* y, std::int64_t n, std::int64_t t,
                                            float* edge) const {
    const int n_fft = tables_.n_fft;
    const std::int64_t start = t * hop_ - (center_ ? n_fft / 2 : 0);
    if (start >= 0 && start + n_fft <= n) return y + start;
    for (int i = 0; i < n_fft; ++i) edge[i] = padded_sample(y, n, start + i, pad_mode_);
    return edge;
}

std::int64_t SpectrogramPlan::compute(const float* y, std::int64_t n, float* out) const {
    const std::int64_t bad = kernels_->first_nonfinite(y, n);
    if (bad >= 0) return bad;
    const std::int64_t frames = n_frames(n);
    if (frames == 0) return -1;
    const int lanes = kernels_->lanes;
    const int n_fft = tables_.n_fft;
    const std::size_t kernel_floats = kernel_scratch_floats(tables_.m, tables_.n_bins, lanes);
    float* scratch = thread_scratch(kernel_floats + static_cast<std::size_t>(lanes) * n_fft);
    float* edges = scratch + kernel_floats;
    const float* ptrs[kMaxLanes];
    for (std::int64_t t0 = 0; t0 < frames;) {
        const KernelSet* k = frames - t0 <= narrow_->lanes ? narrow_ : kernels_;
        const int count = static_cast<int>(std::min<std::int64_t>(k->lanes, frames - t0));
        for (int l = 0; l < count; ++l) ptrs[l] = frame_pointer(y, n, t0 + l, edges + l * n_fft);
        for (int l = count; l < k->lanes; ++l) ptrs[l] = ptrs[0];
        k->frames(tables_, ptrs, count, out + t0, frames, scratch);
        t0 += count;
    }
    return -1;
}

void run_jobs(const SpectrogramPlan& plan, std::vector<Job>& jobs, int threads) {
    if (threads <= 1 || jobs.size() <= 1) {
        for (Job& job : jobs) job.bad_sample = plan.compute(job.y, job.n, job.out);
        return;
    }
    std::atomic<std::size_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&]() {
        try {
            for (std::size_t i = next++; i < jobs.size(); i = next++) {
                jobs[i].bad_sample = plan.compute(jobs[i].y, jobs[i].n, jobs[i].out);
            }
        } catch (...) {  // e.g. no memory for scratch: stop every worker, report once
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            next = jobs.size();
        }
    };
    const int n_workers = static_cast<int>(std::min<std::size_t>(threads, jobs.size()));
    std::vector<std::thread> pool;
    pool.reserve(n_workers - 1);
    for (int i = 1; i < n_workers; ++i) {
        try {
            pool.emplace_back(worker);
        } catch (const std::system_error&) {
            break;  // the system refuses more threads: go on with those we have
        }
    }
    worker();
    for (std::thread& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace musemo
