// The only file that knows Python. It checks array arguments, allocates the
// output arrays, releases the GIL around work on raw pointers, and maps the
// core's exceptions: std::invalid_argument and FormatError -> ValueError,
// std::out_of_range -> IndexError, FileError -> OSError (with errno, so a
// missing file is FileNotFoundError).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "replay_memory.h"

namespace py = pybind11;
using replay::BatchView;
using replay::MemoryConfig;
using replay::ReplayMemory;

namespace {

using FrameArray = py::array_t<uint8_t, py::array::c_style>;

std::string shape_text(const py::array& a) {
  return py::str(py::tuple(py::cast(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()))));
}

// Checks that `a` has exactly `shape` (the dtype was checked by the caller's array_t).
void check_shape(const py::array& a, const char* name, const std::vector<py::ssize_t>& shape) {
  if (a.ndim() != static_cast<py::ssize_t>(shape.size()) || !std::equal(shape.begin(), shape.end(), a.shape()))
    throw std::invalid_argument(std::string(name) + " must have shape " +
                                std::string(py::str(py::tuple(py::cast(shape)))) + ", got " + shape_text(a));
}

const uint8_t* frame_pointer(const ReplayMemory& m, const FrameArray& frame) {
  const MemoryConfig& c = m.config();
  if (frame.ndim() != 2 || frame.shape(0) != c.height || frame.shape(1) != c.width)
    throw std::invalid_argument("frame must have shape (" + std::to_string(c.height) + ", " + std::to_string(c.width) +
                                "), got " + shape_text(frame));
  return frame.data();
}

// The append fast path takes its scalars as handles and accepts only the exact
// types below; anything else is a TypeError, and atari_dqn/replay.py then applies
// its documented checks (_check_flag, _check_reward), which accept a superset
// (0/1 integers, numpy scalars). So this path is never less strict than those.
bool strict_flag(py::handle value, const char* name) {
  if (value.ptr() == Py_True) return true;
  if (value.ptr() == Py_False) return false;
  const char* type = Py_TYPE(value.ptr())->tp_name;  // numpy.bool_ (numpy 2 names it numpy.bool)
  if (std::strcmp(type, "numpy.bool") == 0 || std::strcmp(type, "numpy.bool_") == 0) {
    const int truth = PyObject_IsTrue(value.ptr());
    if (truth < 0) throw py::error_already_set();
    return truth == 1;
  }
  throw py::type_error(std::string(name) + " must be a bool, got " + std::string(py::repr(value)));
}

double strict_reward(py::handle value) {
  PyObject* v = value.ptr();
  if (PyFloat_Check(v)) return PyFloat_AS_DOUBLE(v);
  if (PyLong_Check(v) && !PyBool_Check(v)) {
    const double d = PyLong_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    return d;
  }
  throw py::type_error("reward must be a real number, got " + std::string(py::str(py::type::handle_of(value).attr("__name__"))));
}

// Bounds checks for the trees' accessors, which the core leaves unchecked on its hot path.
void check_index(int64_t i, int64_t size, const char* what) {
  if (i < 0 || i >= size)
    throw py::index_error(std::string(what) + " index " + std::to_string(i) + " out of range [0, " +
                          std::to_string(size) + ")");
}

py::tuple sample(ReplayMemory& m, int64_t batch, double beta) {
  if (batch < 1) throw std::invalid_argument("batch_size must be >= 1, got " + std::to_string(batch));
  const MemoryConfig& c = m.config();
  const std::vector<py::ssize_t> state_shape{batch, c.stack, c.height, c.width};
  py::array_t<uint8_t> states, next_states;
  uint8_t* next_data = nullptr;
  if (c.n_step == 1) {
    // Shared layout (see BatchView): one (batch, stack + 1, h, w) buffer; states
    // and next_states are overlapping views of it, one frame apart.
    py::array_t<uint8_t> frames(std::vector<py::ssize_t>{batch, c.stack + 1, c.height, c.width});
    const std::vector<py::ssize_t> strides{(c.stack + 1) * c.height * c.width, c.height * c.width, c.width, 1};
    states = py::array_t<uint8_t>(state_shape, strides, frames.data(), frames);
    next_states = py::array_t<uint8_t>(state_shape, strides, frames.data() + c.height * c.width, frames);
  } else {
    states = py::array_t<uint8_t>(state_shape);
    next_states = py::array_t<uint8_t>(state_shape);
    next_data = next_states.mutable_data();
  }
  py::array_t<int64_t> actions(batch), ids(batch);
  py::array_t<float> rewards(batch), dones(batch), discounts(batch);
  py::object weights = py::none();
  BatchView view;
  view.states = states.mutable_data();
  view.next_states = next_data;
  view.actions = actions.mutable_data();
  view.rewards = rewards.mutable_data();
  view.dones = dones.mutable_data();
  view.discounts = discounts.mutable_data();
  view.ids = ids.mutable_data();
  if (c.prioritized) {
    py::array_t<float> w(batch);
    view.weights = w.mutable_data();
    weights = std::move(w);
  }
  {
    py::gil_scoped_release release;
    m.sample(batch, beta, view);
  }
  return py::make_tuple(states, actions, rewards, next_states, dones, discounts, ids, weights);
}

// One step of every stream; see ReplayMemory::append_batch. Every array must
// already have its exact dtype and be C-contiguous (no silent copies).
void append_batch(ReplayMemory& m, const py::array_t<int64_t, py::array::c_style>& actions,
                  const py::array_t<float, py::array::c_style>& rewards, const FrameArray& frames,
                  const py::array_t<bool, py::array::c_style>& terminated,
                  const py::array_t<bool, py::array::c_style>& truncated, const std::optional<FrameArray>& reset_frames) {
  const MemoryConfig& c = m.config();
  const py::ssize_t n = c.streams;
  check_shape(actions, "actions", {n});
  check_shape(rewards, "rewards", {n});
  check_shape(frames, "frames", {n, c.height, c.width});
  check_shape(terminated, "terminated", {n});
  check_shape(truncated, "truncated", {n});
  if (reset_frames) check_shape(*reset_frames, "reset_frames", {n, c.height, c.width});
  static_assert(sizeof(bool) == sizeof(uint8_t), "numpy bools are one byte");
  const int64_t* action_data = actions.data();
  const float* reward_data = rewards.data();
  const uint8_t* frame_data = frames.data();
  const auto* terminated_data = reinterpret_cast<const uint8_t*>(terminated.data());
  const auto* truncated_data = reinterpret_cast<const uint8_t*>(truncated.data());
  const uint8_t* reset_data = reset_frames ? reset_frames->data() : nullptr;
  py::gil_scoped_release release;
  m.append_batch(action_data, reward_data, frame_data, terminated_data, truncated_data, reset_data);
}

// The name of an option's C++ type in MEMORY_OPTIONS; replay.py checks each kind its own way.
template <typename T>
constexpr const char* option_kind() {
  if constexpr (std::is_same_v<T, bool>) {
    return "bool";
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return "int64";
  } else if constexpr (std::is_same_v<T, uint64_t>) {
    return "uint64";
  } else {
    static_assert(std::is_same_v<T, double>, "an option is int64_t, uint64_t, double or bool");
    return "float64";
  }
}

// Memory(**options): the keywords are the core's options (REPLAY_MEMORY_OPTIONS), each
// converted to its C++ type; one not given keeps MemoryConfig's default. An unknown
// keyword or a value that does not convert is a TypeError.
MemoryConfig config_of(const py::kwargs& keywords) {
  MemoryConfig config;
  size_t used = 0;
  MemoryConfig::for_each_option([&](const char* name, auto member, uint32_t) {
    if (!keywords.contains(name)) return;
    using T = std::decay_t<decltype(config.*member)>;
    try {
      config.*member = py::cast<T>(keywords[name]);
    } catch (const py::cast_error&) {
      throw py::type_error(std::string(name) + " must be " + option_kind<T>() + ", got " +
                           std::string(py::repr(keywords[name])));
    }
    ++used;
  });
  if (used != keywords.size()) {
    for (const auto& item : keywords) {
      const std::string key = py::str(item.first);
      bool known = false;
      MemoryConfig::for_each_option([&](const char* name, auto, uint32_t) { known = known || key == name; });
      if (!known) throw py::type_error("Memory() got an unknown option '" + key + "'");
    }
  }
  return config;
}

}  // namespace

// Memory.export_log(): the live transitions in id order as numpy arrays (see
// replay::TransitionLog); a copy taken under the memory's mutex.
static void bind_export_log(py::module_& mod) {
  auto memory_class = py::reinterpret_borrow<py::class_<ReplayMemory>>(mod.attr("Memory"));
  memory_class.def("export_log", [](const ReplayMemory& m) {
    replay::TransitionLog log;
    {
      py::gil_scoped_release release;
      log = m.export_log();
    }
    const auto count = static_cast<py::ssize_t>(log.actions.size());
    py::array_t<int64_t> ids(count);
    int64_t* id_data = ids.mutable_data();
    for (py::ssize_t k = 0; k < count; ++k) id_data[k] = log.first_id + k;
    auto as_bool = [count](const std::vector<uint8_t>& flags) {
      py::array_t<bool> out(count);
      bool* data = out.mutable_data();
      for (py::ssize_t k = 0; k < count; ++k) data[k] = flags[static_cast<size_t>(k)] != 0;
      return out;
    };
    py::dict out;
    out["ids"] = ids;
    out["actions"] = py::array_t<int32_t>(count, log.actions.data());
    out["rewards"] = py::array_t<float>(count, log.rewards.data());
    out["terminated"] = as_bool(log.terminated);
    out["truncated"] = as_bool(log.truncated);
    out["episode_start"] = as_bool(log.episode_start);
    out["streams"] = py::array_t<uint16_t>(count, log.streams.data());
    return out;
  });
}

PYBIND11_MODULE(_replay, mod) {
  mod.doc() = "C++ core of the replay memory; use atari_dqn.replay instead.";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const replay::FormatError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const replay::FileError& e) {
      PyObject* args = Py_BuildValue("(is)", e.error_number(), e.what());
      PyErr_SetObject(PyExc_OSError, args);
      Py_XDECREF(args);
    }
  });

  // The priority trees, exposed so tests can check them against brute force.
  py::class_<replay::FenwickTree>(mod, "FenwickTree")
      .def(py::init<int64_t, int64_t>(), py::arg("size"), py::arg("rebuild_every") = 0)
      .def("set", &replay::FenwickTree::set, py::arg("index"), py::arg("value"))
      .def(
          "get",
          [](const replay::FenwickTree& t, int64_t i) {
            check_index(i, t.size(), "FenwickTree");
            return t.get(i);
          },
          py::arg("index"))
      .def(
          "prefix",
          [](const replay::FenwickTree& t, int64_t count) {
            check_index(count, t.size() + 1, "FenwickTree prefix");
            return t.prefix(count);
          },
          py::arg("count"))
      .def_property_readonly("max_leaf", &replay::FenwickTree::max_leaf)
      .def("total", &replay::FenwickTree::total)
      .def("find", &replay::FenwickTree::find, py::arg("mass"))
      .def("rebuild", &replay::FenwickTree::rebuild)
      .def("check_invariants", &replay::FenwickTree::check_invariants)
      .def(
          "set_many",  // one call for millions of updates in the drift test
          [](replay::FenwickTree& t, const py::array_t<int64_t, py::array::c_style>& indices,
             const py::array_t<double, py::array::c_style>& values) {
            if (indices.ndim() != 1 || values.ndim() != 1 || indices.shape(0) != values.shape(0))
              throw std::invalid_argument("indices and values must be 1-D arrays of the same length");
            const int64_t* i = indices.data();
            const double* v = values.data();
            const py::ssize_t n = indices.shape(0);
            py::gil_scoped_release release;
            for (py::ssize_t k = 0; k < n; ++k) t.set(i[k], v[k]);
          },
          py::arg("indices").noconvert(), py::arg("values").noconvert())
      .def_property_readonly("size", &replay::FenwickTree::size);
  py::class_<replay::MinTree>(mod, "MinTree")
      .def(py::init<int64_t>(), py::arg("size"))
      .def("set", &replay::MinTree::set, py::arg("index"), py::arg("value"))
      .def(
          "get",
          [](const replay::MinTree& t, int64_t i) {
            check_index(i, t.size(), "MinTree");
            return t.get(i);
          },
          py::arg("index"))
      .def("min", &replay::MinTree::min)
      .def("check_invariants", &replay::MinTree::check_invariants);

  py::class_<ReplayMemory> memory(mod, "Memory");
  memory.def(py::init([](const py::kwargs& options) { return std::make_unique<ReplayMemory>(config_of(options)); }))
      .def(
          "start_episode",
          [](ReplayMemory& m, const FrameArray& frame, int64_t stream) {
            const uint8_t* data = frame_pointer(m, frame);
            py::gil_scoped_release release;
            m.start_episode(data, stream);
          },
          py::arg("frame").noconvert(), py::arg("stream") = 0)
      .def(
          "append",
          [](ReplayMemory& m, int64_t action, py::handle reward, const FrameArray& frame, py::handle terminated,
             py::handle truncated, int64_t stream) {
            const double r = strict_reward(reward);
            const bool term = strict_flag(terminated, "terminated"), trunc = strict_flag(truncated, "truncated");
            const uint8_t* data = frame_pointer(m, frame);
            py::gil_scoped_release release;
            m.append(action, r, data, term, trunc, stream);
          },
          py::arg("action"), py::arg("reward"), py::arg("frame").noconvert(), py::arg("terminated"),
          py::arg("truncated"), py::arg("stream") = 0)
      .def("append_batch", &append_batch, py::arg("actions").noconvert(), py::arg("rewards").noconvert(),
           py::arg("frames").noconvert(), py::arg("terminated").noconvert(), py::arg("truncated").noconvert(),
           py::arg("reset_frames").noconvert() = py::none())
      .def("__len__", &ReplayMemory::size)
      .def_property_readonly("appended", &ReplayMemory::transitions_appended)
      .def(
          "state",
          [](const ReplayMemory& m, int64_t stream) {
            const MemoryConfig& c = m.config();
            py::array_t<uint8_t> out(std::vector<py::ssize_t>{c.stack, c.height, c.width});
            uint8_t* data = out.mutable_data();
            {
              py::gil_scoped_release release;
              m.current_state(data, stream);
            }
            return out;
          },
          py::arg("stream") = 0)
      .def("states",
           [](const ReplayMemory& m) {
             const MemoryConfig& c = m.config();
             py::array_t<uint8_t> out(std::vector<py::ssize_t>{c.streams, c.stack, c.height, c.width});
             uint8_t* data = out.mutable_data();
             {
               py::gil_scoped_release release;
               m.current_states(data);
             }
             return out;
           })
      .def("sample", &sample, py::arg("batch_size"), py::arg("beta"))
      .def(
          "update_priorities",
          [](ReplayMemory& m, const py::array_t<int64_t, py::array::c_style>& ids,
             const py::array_t<double, py::array::c_style>& priorities) {
            if (ids.ndim() != 1 || priorities.ndim() != 1 || ids.shape(0) != priorities.shape(0))
              throw std::invalid_argument("ids and priorities must be 1-D arrays of the same length");
            const int64_t* id_data = ids.data();
            const double* p_data = priorities.data();
            const int64_t count = ids.shape(0);
            py::gil_scoped_release release;
            m.update_priorities(id_data, p_data, count);
          },
          py::arg("ids").noconvert(), py::arg("priorities").noconvert())
      .def("priority_of", &ReplayMemory::priority_of, py::arg("id"))
      .def_property_readonly("max_priority", &ReplayMemory::max_priority)
      .def("save", &ReplayMemory::save, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def_static("load", &ReplayMemory::load, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def("reseed", &ReplayMemory::reseed, py::arg("seed"))
      .def("bytes_allocated", &ReplayMemory::bytes_allocated)
      .def("check_invariants", &ReplayMemory::check_invariants);
  // A read-only property per option, and MEMORY_OPTIONS: (name, kind, default) of each, in
  // the core's order, which atari_dqn/replay.py iterates to check and pass the options.
  py::list options;
  const MemoryConfig defaults;
  MemoryConfig::for_each_option([&](const char* name, auto member, uint32_t) {
    memory.def_property_readonly(name, [member](const ReplayMemory& m) { return m.config().*member; });
    options.append(py::make_tuple(name, option_kind<std::decay_t<decltype(defaults.*member)>>(), defaults.*member));
  });
  mod.attr("MEMORY_OPTIONS") = py::tuple(options);

  bind_export_log(mod);
}
