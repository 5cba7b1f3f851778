// Binding of the fused Adam step (rnncore/optim.hpp): one call updates every parameter array of a group.
#include <algorithm>
#include <cstdint>
#include <utility>
#include <variant>
#include <vector>

#include "bindings.hpp"
#include "rnncore/optim.hpp"

namespace rnncore::bindings {

namespace {

/// One parameter's arrays, checked: p, g, m, v, vmax (or null), step.
template <typename T>
struct AdamJob {
  index_t n;
  T *p, *m, *v, *vmax, *step;
  const T* g;
};
using AnyJob = std::variant<AdamJob<float>, AdamJob<double>>;

/// An ndarray (not a subclass) of native dtype T, C-contiguous, writeable when `out`, with `nd` axes of the sizes
/// `shape` (null: any), else null.
template <typename T>
T* exact_data(py::handle a, int nd, const py::ssize_t* shape, bool out) {
  const py::ssize_t* dims;
  if (!array_shape<T>(a, nd, dims)) return nullptr;
  const auto* arr = py::detail::array_proxy(a.ptr());
  if (!(arr->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) return nullptr;
  if (out && !(arr->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_)) return nullptr;
  for (int k = 0; shape && k < nd; ++k)
    if (dims[k] != shape[k]) return nullptr;
  return reinterpret_cast<T*>(arr->data);
}

/// Parameter i's job when every array of it is exact (same dtype T and shape as p; step a 0-d T), else false.
template <typename T>
bool adam_job(const py::list& ps, const py::list& gs, const py::list& ms, const py::list& vs, const py::handle vmaxs,
              const py::list& steps, size_t i, std::vector<AnyJob>& jobs) {
  const py::handle p = ps[i];
  if (Py_TYPE(p.ptr()) != py::detail::npy_api::get().PyArray_Type_) return false;
  const int nd = py::detail::array_proxy(p.ptr())->nd;
  const py::ssize_t* shape;
  if (!array_shape<T>(p, nd, shape)) return false;
  AdamJob<T> job{1, exact_data<T>(p, nd, shape, true), exact_data<T>(ms[i], nd, shape, true),
                 exact_data<T>(vs[i], nd, shape, true), nullptr, exact_data<T>(steps[i], 0, nullptr, true),
                 exact_data<T>(gs[i], nd, shape, false)};
  if (!vmaxs.is_none()) job.vmax = exact_data<T>(py::reinterpret_borrow<py::list>(vmaxs)[i], nd, shape, true);
  if (!(job.p && job.m && job.v && job.step && job.g && (vmaxs.is_none() || job.vmax))) return false;
  for (int k = 0; k < nd; ++k) job.n *= shape[k];
  jobs.emplace_back(job);
  return true;
}

/// Whether any two arrays the jobs write (p, m, v, vmax, step of every parameter) share memory, or a job's grad
/// shares memory with one of its own: the kernel takes them as restrict pointers. Byte ranges sorted by start, each
/// compared with the furthest-reaching one before it.
bool jobs_overlap(const std::vector<AnyJob>& jobs) {
  using Span = std::pair<std::uintptr_t, std::uintptr_t>;  // [begin, end)
  std::vector<Span> all, own;
  auto overlap = [](std::vector<Span>& spans) {
    std::sort(spans.begin(), spans.end());
    std::uintptr_t reach = 0;
    for (const Span& s : spans) {
      if (s.first < reach) return true;
      reach = std::max(reach, s.second);
    }
    return false;
  };
  for (const AnyJob& any : jobs) {
    const bool clash = std::visit(
        [&](const auto& j) {
          auto span = [&](const auto* a, index_t n) {
            const auto begin = reinterpret_cast<std::uintptr_t>(a);
            return Span{begin, begin + sizeof(*a) * static_cast<std::uintptr_t>(n)};
          };
          own.clear();
          for (const auto* a : {j.p, j.m, j.v, j.vmax}) {
            if (a && j.n > 0) own.push_back(span(a, j.n));
          }
          own.push_back(span(j.step, 1));
          all.insert(all.end(), own.begin(), own.end());
          if (j.n > 0) own.push_back(span(j.g, j.n));
          return overlap(own);
        },
        any);
    if (clash) return true;
  }
  return overlap(all);
}

/// adam_update(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs or None, steps, lr, beta1, beta2, eps,
/// weight_decay, amsgrad, maximize, decoupled): lists of equal length; None when updated, NotImplemented (nothing
/// changed) when any array is not exact (rnncore.ops.adam_update then names it).
py::object adam_update_py(const py::list& ps, const py::list& gs, const py::list& ms, const py::list& vs,
                          py::handle vmaxs, const py::list& steps, double lr, double beta1, double beta2, double eps,
                          double weight_decay, bool amsgrad, bool maximize, bool decoupled) {
  const size_t count = ps.size();
  if (gs.size() != count || ms.size() != count || vs.size() != count || steps.size() != count) return not_exact();
  if (amsgrad == vmaxs.is_none()) return not_exact();
  if (!vmaxs.is_none() && (!PyList_CheckExact(vmaxs.ptr()) || py::len(vmaxs) != count)) return not_exact();
  std::vector<AnyJob> jobs;
  jobs.reserve(count);
  for (size_t i = 0; i < count; ++i)
    if (!adam_job<float>(ps, gs, ms, vs, vmaxs, steps, i, jobs) &&
        !adam_job<double>(ps, gs, ms, vs, vmaxs, steps, i, jobs))
      return not_exact();
  if (jobs_overlap(jobs)) return not_exact();  // aliased arrays (rnncore.ops.adam_update names them)
  AdamHyper h;
  h.lr = lr, h.beta1 = beta1, h.beta2 = beta2, h.eps = eps, h.weight_decay = weight_decay;
  h.amsgrad = amsgrad, h.maximize = maximize, h.decoupled = decoupled;
  {
    py::gil_scoped_release release;
    for (const AnyJob& any : jobs)
      std::visit([&](const auto& j) { adam_update(j.n, j.p, j.g, j.m, j.v, j.vmax, j.step, h); }, any);
  }
  return py::none();
}

}  // namespace

void register_optim(py::module_& m) {
  using py::arg;
  m.def("adam_update", &adam_update_py, arg("params"), arg("grads"), arg("exp_avgs"), arg("exp_avg_sqs"),
        arg("max_exp_avg_sqs"), arg("steps"), arg("lr"), arg("beta1"), arg("beta2"), arg("eps"), arg("weight_decay"),
        arg("amsgrad"), arg("maximize"), arg("decoupled"));
}

}  // namespace rnncore::bindings
