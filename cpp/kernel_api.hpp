// The contract between the instruction-set-neutral driver (spectrogram.cpp) and
// the SIMD kernels (kernels.cpp, compiled once per instruction set).
//
// Kernel translation units may only see this header: no standard-library
// templates cross the boundary, so no code built for a wider instruction set
// can be picked by the linker for a caller built for a narrower one.
#pragma once

#include <cstddef>
#include <cstdint>

namespace musemo {

// Read-only tables shared by every call on one plan. All pointers are owned
// by SpectrogramPlan and live as long as it does.
struct KernelTables {
    int n_fft;            // power of two, >= 4
    int m;                // n_fft / 2: size of the complex FFT
    int n_bins;           // n_fft / 2 + 1
    const float* window;  // n_fft samples, already scaled by 1/2 (see twist)
    // Radix-4 decimation-in-frequency stages, largest span first; stage with
    // span s stores s entries of (w1r, w1i, w2r, w2i, w3r, w3i), w = exp(-2πi/(4s)).
    const float* stage_twiddles;
    int n_radix4_stages;
    bool final_radix2;    // log2(m) odd: one radix-2 stage closes the FFT
    const int* bitrev;    // natural index k -> position in the FFT's output
    const float* twist;   // n_bins pairs (cos, -sin)(2πk/n_fft): real-FFT post-processing
    float power;          // exponent applied to |X|
    // Log scaling of every output value: 10 log10(max(x, db_amin)) - db_offset.
    bool db;
    float db_amin;        // >= FLT_MIN
    float db_offset;      // 10 log10(max(amin, ref))
    // Or (never both) log10(1 + log1p_scale x).
    bool log1p;
    float log1p_scale;    // > 0
    // Output rows: the mel filters (CSR-like, one contiguous run of bins per
    // filter) or, when n_mels == 0, the n_bins power rows themselves.
    int n_mels;
    const int* mel_start;
    const int* mel_len;
    const std::int64_t* mel_offset;
    const float* mel_weights;
};

// Transform `lanes` frames at once (frames[l] points to n_fft samples; unused
// lanes may repeat a valid frame) and write the first `count` columns of
// each output row: out[row * out_stride + l] for l < count.
// scratch: kernel_scratch_floats(...) floats, 64-byte aligned.
using FramesKernel = void (*)(const KernelTables& t, const float* const* frames, int count,
                              float* out, std::ptrdiff_t out_stride, float* scratch);

// Index of the first NaN or infinite sample, or -1.
using FiniteKernel = std::int64_t (*)(const float* y, std::int64_t n);

struct KernelSet {
    const char* name;
    int lanes;
    FramesKernel frames;
    FiniteKernel first_nonfinite;
};

inline std::size_t kernel_scratch_floats(int m, int n_bins, int lanes) {
    return static_cast<std::size_t>(2 * m + n_bins) * static_cast<std::size_t>(lanes);
}

// One KernelSet per instruction set compiled into this build (kernels.cpp).
const KernelSet* kernels_generic();
#if defined(MUSEMO_HAVE_AVX2)
const KernelSet* kernels_avx2();
#endif
#if defined(MUSEMO_HAVE_AVX512)
const KernelSet* kernels_avx512();
#endif

}  // namespace musemo
