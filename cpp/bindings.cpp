// musemo._native: a thin pybind11 layer over SpectrogramPlan. Validation and
// the friendly API live in Python (src/musemo/); this file only turns arrays
// into pointers and releases the GIL around the work. Every array argument is
// noconvert(): an array of another dtype or layout is refused, never copied
// (an output copy would be filled and thrown away).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "crc32c.hpp"
#include "spectrogram.hpp"

namespace py = pybind11;
using musemo::Job;
using musemo::PadMode;
using musemo::SpectrogramPlan;

namespace {

using FloatArray = py::array_t<float, py::array::c_style>;

const musemo::KernelSet* find_kernels(const std::string& name) {
    for (const musemo::KernelSet* k : musemo::available_kernels()) {
        if (name.empty() || name == k->name) return k;
    }
    throw std::invalid_argument("kernel set '" + name + "' is not available on this CPU");
}

PadMode parse_pad_mode(const std::string& mode) {
    if (mode == "constant") return PadMode::Constant;
    if (mode == "reflect") return PadMode::Reflect;
    if (mode == "edge") return PadMode::Edge;
    throw std::invalid_argument("unsupported pad_mode '" + mode + "'");
}

std::vector<float> to_vector(const FloatArray& a) { return std::vector<float>(a.data(), a.data() + a.size()); }

// Pair each input with its output, checking the shapes the plan will write.
Job make_job(const SpectrogramPlan& plan, const FloatArray& y, FloatArray& out) {
    if (y.ndim() != 1) throw std::invalid_argument("each signal must be one-dimensional");
    const std::int64_t frames = plan.n_frames(y.shape(0));
    if (out.ndim() != 2 || out.shape(0) != plan.n_rows() || out.shape(1) != frames)
        throw std::invalid_argument("output array has the wrong shape");
    return Job{y.data(), static_cast<std::int64_t>(y.shape(0)), out.mutable_data()};
}

// Run the jobs without the GIL; report the first non-finite sample as (job, index).
py::object run(const SpectrogramPlan& plan, std::vector<Job>& jobs, int threads) {
    {
        py::gil_scoped_release release;
        musemo::run_jobs(plan, jobs, threads);
    }
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        if (jobs[i].bad_sample >= 0) return py::make_tuple(i, jobs[i].bad_sample);
    }
    return py::none();
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "musemo's C++ spectrogram engine (private: use the musemo package).";

    m.def("available_kernels", []() {
        std::vector<std::string> names;
        for (const musemo::KernelSet* k : musemo::available_kernels()) names.emplace_back(k->name);
        return names;
    }, "Names of the SIMD kernel sets this CPU can run, fastest first.");

    m.def("crc32c", [](const py::buffer& data) {
        const py::buffer_info info = data.request();
        if (info.itemsize != 1 || info.ndim != 1 || info.strides[0] != 1)
            throw std::invalid_argument("crc32c takes contiguous bytes");
        const auto* bytes = static_cast<const unsigned char*>(info.ptr);
        const auto n = static_cast<std::size_t>(info.size);
        py::gil_scoped_release release;
        return musemo::crc32c(bytes, n);
    }, py::arg("data"), "CRC-32C (Castagnoli) of a bytes-like object.");

    py::class_<SpectrogramPlan>(m, "SpectrogramPlan")
        .def(py::init([](int n_fft, int hop_length, bool center, const std::string& pad_mode,
                         const FloatArray& window, float power, const FloatArray& mel, int n_mels,
                         const std::string& kernels, std::optional<float> db_amin, float db_ref,
                         std::optional<float> log1p_scale) {
                 using Kind = musemo::Compression::Kind;
                 if (db_amin && log1p_scale) throw std::invalid_argument("choose dB or log1p, not both");
                 musemo::Compression log;
                 if (db_amin) log = musemo::Compression{Kind::Decibels, *db_amin, db_ref, 1.0f};
                 if (log1p_scale) log = musemo::Compression{Kind::Log1p, 1e-10f, 1.0f, *log1p_scale};
                 return new SpectrogramPlan(n_fft, hop_length, center, parse_pad_mode(pad_mode),
                                            to_vector(window), power, to_vector(mel), n_mels,
                                            find_kernels(kernels), log);
             }),
             py::arg("n_fft"), py::arg("hop_length"), py::arg("center"), py::arg("pad_mode"),
             py::arg("window").noconvert(), py::arg("power"), py::arg("mel").noconvert(), py::arg("n_mels"),
             py::arg("kernels") = "", py::arg("db_amin") = py::none(), py::arg("db_ref") = 1.0f,
             py::arg("log1p_scale") = py::none(),
             "With db_amin set, the plan outputs 10 log10(max(x, db_amin)) - 10 log10(max(db_amin, |db_ref|));\n"
             "with log1p_scale, log10(1 + log1p_scale x).")
        .def_property_readonly("n_rows", &SpectrogramPlan::n_rows)
        .def_property_readonly("kernels", [](const SpectrogramPlan& p) { return std::string(p.kernels().name); })
        .def_property_readonly("lanes", [](const SpectrogramPlan& p) { return p.kernels().lanes; })
        .def("n_frames", &SpectrogramPlan::n_frames, py::arg("n_samples"))
        .def(
            "compute",
            [](const SpectrogramPlan& plan, const FloatArray& y, FloatArray& out, int threads) {
                // y: (batch, n); out: (batch, n_rows, n_frames)
                if (y.ndim() != 2 || out.ndim() != 3 || out.shape(0) != y.shape(0))
                    throw std::invalid_argument("expected y (batch, n) and out (batch, rows, frames)");
                const std::int64_t n = y.shape(1);
                if (out.shape(1) != plan.n_rows() || out.shape(2) != plan.n_frames(n))
                    throw std::invalid_argument("output array has the wrong shape");
                std::vector<Job> jobs;
                const std::int64_t out_step = out.shape(1) * out.shape(2);
                for (py::ssize_t b = 0; b < y.shape(0); ++b)
                    jobs.push_back(Job{y.data() + b * n, n, out.mutable_data() + b * out_step});
                return run(plan, jobs, threads);
            },
            py::arg("y").noconvert(), py::arg("out").noconvert(), py::arg("threads") = 1,
            "Fill out from y; None, or (row, sample) of the first non-finite sample.")
        .def(
            "compute_many",
            [](const SpectrogramPlan& plan, std::vector<FloatArray> ys, std::vector<FloatArray> outs,
               int threads) {
                if (ys.size() != outs.size()) throw std::invalid_argument("need one output per signal");
                std::vector<Job> jobs;
                for (std::size_t i = 0; i < ys.size(); ++i) jobs.push_back(make_job(plan, ys[i], outs[i]));
                return run(plan, jobs, threads);
            },
            py::arg("ys").noconvert(), py::arg("outs").noconvert(), py::arg("threads") = 1,
            "Fill each outs[i] from ys[i]; None, or (i, sample) of the first non-finite sample.");
}
