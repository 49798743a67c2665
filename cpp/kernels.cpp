// Kernels for one instruction set. CMakeLists.txt compiles this file once per
// instruction set, each time with its own flags, MUSEMO_ISA (a name) and
// MUSEMO_LANES (how many frames one vector holds).
#include <cmath>
#include <cstring>
#include <utility>

#include "kernel_api.hpp"

#if !defined(MUSEMO_ISA) || !defined(MUSEMO_LANES)
#error "compile with -DMUSEMO_ISA=<name> -DMUSEMO_LANES=<n>"
#endif

#define MUSEMO_STR2(x) #x
#define MUSEMO_STR(x) MUSEMO_STR2(x)
#define MUSEMO_CAT2(a, b) a##b
#define MUSEMO_CAT(a, b) MUSEMO_CAT2(a, b)

namespace musemo {
namespace MUSEMO_ISA {
#include "kernels_impl.inc"
}  // namespace MUSEMO_ISA

const KernelSet* MUSEMO_CAT(kernels_, MUSEMO_ISA)() {
    static const KernelSet set{MUSEMO_STR(MUSEMO_ISA), MUSEMO_LANES, MUSEMO_ISA::frames_kernel,
                               MUSEMO_ISA::first_nonfinite};
    return &set;
}
}  // namespace musemo
