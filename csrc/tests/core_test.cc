// Tests of the pure C++ core, without Python. tests/test_core_sanitized.py builds
// this file with -fsanitize=address,undefined and with -fsanitize=thread and runs
// it; it also builds alone:
//   g++ -std=c++17 -pthread -Icsrc csrc/tests/core_test.cc csrc/*.cc -o core_test && ./core_test
#include <sys/stat.h>

#include <atomic>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "checksum.h"
#include "replay_memory.h"
#include "sum_tree.h"

using namespace replay;

namespace {

int failures = 0;
int checks = 0;

void check(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
  }
}

template <typename Exception>
void check_throws(const std::function<void()>& f, const std::string& what) {
  try {
    f();
  } catch (const Exception&) {
    check(true, what);
    return;
  } catch (const std::exception& e) {
    check(false, what + " threw the wrong exception: " + e.what());
    return;
  }
  check(false, what + " did not throw");
}

void test_fenwick_by_hand() {
  FenwickTree t(4);
  for (int i = 0; i < 4; ++i) t.set(i, i + 1.0);
  check(t.prefix(0) == 0 && t.prefix(1) == 1 && t.prefix(2) == 3 && t.prefix(3) == 6 && t.total() == 10,
        "fenwick prefix sums of [1,2,3,4]");
  check(t.find(0) == 0 && t.find(0.5) == 0 && t.find(1) == 1 && t.find(5.9) == 2 && t.find(6) == 3 && t.find(10) == 4,
        "fenwick descent of [1,2,3,4]");
  t.set(2, 0);
  check(t.find(3) == 3, "fenwick descent skips a zero leaf");
  t.check_invariants();
  check_throws<std::invalid_argument>([&] { t.set(0, std::nan("")); }, "fenwick rejects NaN");
  check_throws<std::out_of_range>([&] { t.set(4, 1); }, "fenwick rejects index past the end");
}

void test_fenwick_random() {
  Rng rng(42);
  for (int64_t size : {1, 2, 7, 33, 128}) {
    FenwickTree t(size, 50);
    MinTree m(size);
    std::vector<double> leaves(static_cast<size_t>(size), 0.0);
    for (int step = 0; step < 2000; ++step) {
      const int64_t i = static_cast<int64_t>(rng.below(static_cast<uint64_t>(size)));
      const double v = rng.uniform() < 0.1 ? 0.0 : rng.uniform() * 100;
      leaves[static_cast<size_t>(i)] = v;
      t.set(i, v);
      m.set(i, v > 0 ? v : std::numeric_limits<double>::infinity());
    }
    t.check_invariants();
    m.check_invariants();
    double sum = 0, lowest = std::numeric_limits<double>::infinity();
    for (double v : leaves) {
      sum += v;
      if (v > 0) lowest = std::min(lowest, v);
    }
    check(std::fabs(t.total() - sum) <= 1e-9 * sum, "fenwick total matches the leaves");
    check(m.min() == lowest, "min tree root is the smallest positive leaf");
  }
}

MemoryConfig small_config(bool prioritized, int64_t capacity, int64_t stack, int64_t n_step) {
  MemoryConfig c;
  c.capacity = capacity;
  c.height = 3;
  c.width = 2;
  c.stack = stack;
  c.n_step = n_step;
  c.gamma = 0.9;
  c.prioritized = prioritized;
  c.seed = 5;
  return c;
}

struct Buffers {
  std::vector<uint8_t> states, next_states;
  std::vector<int64_t> actions, ids;
  std::vector<float> rewards, dones, discounts, weights;
  BatchView view;
  Buffers(const MemoryConfig& c, int64_t batch)
      : states(static_cast<size_t>(batch * c.stack * c.frame_bytes())),
        next_states(states.size()),
        actions(static_cast<size_t>(batch)),
        ids(static_cast<size_t>(batch)),
        rewards(static_cast<size_t>(batch)),
        dones(static_cast<size_t>(batch)),
        discounts(static_cast<size_t>(batch)),
        weights(static_cast<size_t>(batch)) {
    view = BatchView{states.data(), next_states.data(), actions.data(), rewards.data(),
                     dones.data(),  discounts.data(),   ids.data(),     weights.data()};
  }
};

void test_memory_random_operations(bool prioritized) {
  Rng rng(prioritized ? 11 : 12);
  for (int sequence = 0; sequence < 300; ++sequence) {
    const int64_t stack = 1 + static_cast<int64_t>(rng.below(4));
    const int64_t n_step = 1 + static_cast<int64_t>(rng.below(3));
    const MemoryConfig c = small_config(prioritized, stack + n_step + static_cast<int64_t>(rng.below(10)), stack, n_step);
    ReplayMemory m(c);
    Buffers out(c, 8);
    std::vector<uint8_t> frame(static_cast<size_t>(c.frame_bytes()));
    bool open = false;
    for (int step = 0; step < 120; ++step) {
      for (auto& b : frame) b = static_cast<uint8_t>(rng.next());
      if (!open || rng.uniform() < 0.03) {
        m.start_episode(frame.data());
        open = true;
      } else {
        const bool terminated = rng.uniform() < 0.1;
        const bool truncated = !terminated && rng.uniform() < 0.05;
        m.append(static_cast<int64_t>(rng.below(4)), 1.0f, frame.data(), terminated, truncated);
        open = !(terminated || truncated);
      }
      if (m.size() > 0 && rng.uniform() < 0.3) {
        m.sample(8, 0.5, out.view);
        for (int64_t b = 0; b < 8; ++b) {
          check(out.ids[static_cast<size_t>(b)] >= m.transitions_appended() - c.capacity, "sampled id is live");
          check(out.discounts[static_cast<size_t>(b)] >= 0 && out.discounts[static_cast<size_t>(b)] <= 1, "discount in [0, 1]");
          if (prioritized) check(out.weights[static_cast<size_t>(b)] > 0 && out.weights[static_cast<size_t>(b)] <= 1, "weight in (0, 1]");
        }
        if (prioritized) {
          std::vector<double> priorities(8);
          for (auto& p : priorities) p = rng.uniform() * 4;
          m.update_priorities(out.ids.data(), priorities.data(), 8);
        }
      }
    }
    m.check_invariants();
  }
}

void test_memory_errors() {
  const MemoryConfig c = small_config(true, 8, 2, 1);
  ReplayMemory m(c);
  std::vector<uint8_t> frame(static_cast<size_t>(c.frame_bytes()), 7);
  Buffers out(c, 4);
  check_throws<std::invalid_argument>([&] { m.append(0, 0, frame.data(), false, false); }, "append before start");
  check_throws<std::out_of_range>([&] { m.sample(4, 0.4, out.view); }, "sample from empty memory");
  m.start_episode(frame.data());
  m.append(0, 0, frame.data(), true, false);
  check_throws<std::invalid_argument>([&] { m.append(0, 0, frame.data(), false, false); }, "append after terminal");
  const int64_t id = 0;
  const double nan = std::nan("");
  check_throws<std::invalid_argument>([&] { m.update_priorities(&id, &nan, 1); }, "NaN priority");
  const int64_t future = 3;
  const double one = 1.0;
  check_throws<std::out_of_range>([&] { m.update_priorities(&future, &one, 1); }, "id never appended");
  check_throws<std::invalid_argument>([&] { m.sample(4, -1.0, out.view); }, "negative beta");
  check_throws<std::invalid_argument>([&] { ReplayMemory bad(small_config(false, 2, 4, 1)); }, "capacity below stack");
  check_throws<FileError>([&] { ReplayMemory::load("/nonexistent/dir/file.bin"); }, "missing snapshot");
}

void test_snapshot_round_trip() {
  const MemoryConfig c = small_config(true, 20, 3, 2);
  ReplayMemory m(c);
  std::vector<uint8_t> frame(static_cast<size_t>(c.frame_bytes()));
  Rng rng(3);
  m.start_episode(frame.data());
  for (int step = 0; step < 70; ++step) {
    for (auto& b : frame) b = static_cast<uint8_t>(rng.next());
    const bool end = step % 13 == 12;
    m.append(step % 4, static_cast<float>(step), frame.data(), end, false);
    if (end) m.start_episode(frame.data());
  }
  const std::string path = "core_test_snapshot.bin";
  m.save(path);
  auto loaded = ReplayMemory::load(path);
  Buffers a(c, 16), b(c, 16);
  m.sample(16, 0.5, a.view);
  loaded->sample(16, 0.5, b.view);
  check(a.states == b.states && a.next_states == b.next_states && a.ids == b.ids && a.weights == b.weights,
        "snapshot round trip gives the same samples");
  // Truncate the file: loading must fail with FormatError, never crash.
  std::FILE* f = std::fopen(path.c_str(), "rb");
  std::vector<char> bytes(1 << 16);
  const size_t n = std::fread(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  for (size_t cut : {size_t{5}, size_t{150}, n / 2, n - 1}) {
    f = std::fopen(path.c_str(), "wb");
    std::fwrite(bytes.data(), 1, cut, f);
    std::fclose(f);
    check_throws<FormatError>([&] { ReplayMemory::load(path); }, "truncated snapshot at " + std::to_string(cut));
  }
  std::remove(path.c_str());
}

void test_shared_layout_equals_separate_layout() {
  for (int64_t stack : {1, 2, 4}) {
    const MemoryConfig c = small_config(false, 30, stack, 1);
    ReplayMemory a(c), b(c);
    std::vector<uint8_t> frame(static_cast<size_t>(c.frame_bytes()));
    Rng rng(static_cast<uint64_t>(stack));
    for (ReplayMemory* m : {&a, &b}) {
      Rng stream(99);
      m->start_episode(frame.data());
      for (int step = 0; step < 100; ++step) {
        for (auto& byte : frame) byte = static_cast<uint8_t>(stream.next());
        const bool end = stream.uniform() < 0.2;  // many short episodes: lots of padding
        m->append(0, 1.0f, frame.data(), end, false);
        if (end) m->start_episode(frame.data());
      }
    }
    const int64_t batch = 64;
    Buffers separate(c, batch), shared(c, batch);
    std::vector<uint8_t> rows(static_cast<size_t>(batch * (stack + 1) * c.frame_bytes()));
    shared.view.states = rows.data();
    shared.view.next_states = nullptr;
    a.sample(batch, 0.0, separate.view);
    b.sample(batch, 0.0, shared.view);
    bool same = separate.ids == shared.ids && separate.dones == shared.dones && separate.discounts == shared.discounts;
    const size_t frame_bytes = static_cast<size_t>(c.frame_bytes());
    const size_t state_bytes = static_cast<size_t>(stack) * frame_bytes;
    for (int64_t i = 0; i < batch; ++i) {
      const uint8_t* row = rows.data() + static_cast<size_t>(i) * (state_bytes + frame_bytes);
      same = same && std::memcmp(row, &separate.states[static_cast<size_t>(i) * state_bytes], state_bytes) == 0 &&
             std::memcmp(row + frame_bytes, &separate.next_states[static_cast<size_t>(i) * state_bytes], state_bytes) == 0;
    }
    check(same, "shared layout gives the same states and next states, stack " + std::to_string(stack));
  }
}


// -- issue 12: validate, then commit ------------------------------------------------------

// Everything observable about a prioritized memory, to compare before and after an error.
struct Observed {
  int64_t appended, size;
  double max_priority;
  std::vector<double> priorities;
  bool operator==(const Observed& o) const {
    return appended == o.appended && size == o.size && max_priority == o.max_priority && priorities == o.priorities;
  }
};

Observed observe(const ReplayMemory& m) {
  Observed o{m.transitions_appended(), m.size(), m.max_priority(), {}};
  const int64_t lo = std::max<int64_t>(0, o.appended - m.config().capacity);
  for (int64_t id = lo; id < o.appended; ++id) o.priorities.push_back(m.priority_of(id));
  return o;
}

void fill_memory(ReplayMemory& m, int steps) {
  std::vector<uint8_t> frame(static_cast<size_t>(m.config().frame_bytes()), 1);
  m.start_episode(frame.data());
  for (int i = 0; i < steps; ++i) {
    frame[0] = static_cast<uint8_t>(i);
    m.append(i % 3, 0.5, frame.data(), false, false);
  }
}

void test_priority_bounds() {
  MemoryConfig c = small_config(true, 100, 2, 1);
  c.alpha = 2.0;
  ReplayMemory m(c);
  fill_memory(m, 50);
  const Observed before = observe(m);
  const int64_t id = 3;
  const double huge = 1e200;  // 1e400 overflows
  check_throws<std::invalid_argument>([&] { m.update_priorities(&id, &huge, 1); }, "p^alpha overflowing is refused");
  check(observe(m) == before, "a refused priority changes nothing");
  m.check_invariants();
  std::vector<uint8_t> frame(static_cast<size_t>(c.frame_bytes()), 9);
  m.append(0, 0, frame.data(), false, false);
  check(m.transitions_appended() == 51, "append works after a refused priority");
  m.save("core_test_bounds.bin");
  ReplayMemory::load("core_test_bounds.bin")->check_invariants();
  std::remove("core_test_bounds.bin");

  // alpha = 1: fifty priorities of 1e308 would sum to inf.
  c.alpha = 1.0;
  ReplayMemory linear(c);
  fill_memory(linear, 50);
  std::vector<int64_t> ids(50);
  std::vector<double> big(50, 1e308), one(50, 1.0);
  for (int64_t i = 0; i < 50; ++i) ids[static_cast<size_t>(i)] = i;
  check_throws<std::invalid_argument>([&] { linear.update_priorities(ids.data(), big.data(), 50); },
                                      "priorities that could overflow the total are refused");
  // One huge accepted priority, then reset: the total must not cancel to 0.
  const double largest = std::numeric_limits<double>::max() / 1000;  // below max_leaf = DBL_MAX / 200
  linear.update_priorities(ids.data(), &largest, 1);
  linear.update_priorities(ids.data(), one.data(), 50);
  Buffers out(c, 200);
  linear.sample(200, 0.5, out.view);
  std::vector<int> seen(50, 0);
  for (int64_t b = 0; b < 200; ++b) seen[static_cast<size_t>(out.ids[static_cast<size_t>(b)])] = 1;
  int distinct = 0;
  for (int v : seen) distinct += v;
  check(distinct == 50, "after a reset from a huge priority every id is sampled again");
  linear.check_invariants();

  // eps ** alpha must be a positive normal double at construction.
  MemoryConfig tiny = small_config(true, 16, 2, 1);
  tiny.eps = 1e-300;
  tiny.alpha = 2.0;
  check_throws<std::invalid_argument>([&] { ReplayMemory bad(tiny); }, "eps ** alpha underflowing is refused");
  tiny.alpha = 1.0;
  ReplayMemory small_eps(tiny);  // 1e-300 is normal: accepted, and zero TD errors still sample
  fill_memory(small_eps, 10);
  std::vector<double> zeros(10, 0.0);
  small_eps.update_priorities(ids.data(), zeros.data(), 10);
  Buffers few(tiny, 8);
  small_eps.sample(8, 0.5, few.view);
  small_eps.check_invariants();
}

void test_sizes_and_trees() {
  MemoryConfig c = small_config(false, 16, 2, 1);
  c.height = c.width = int64_t{1} << 32;
  check_throws<std::invalid_argument>([&] { ReplayMemory bad(c); }, "frame size overflow is reported");
  c = small_config(false, int64_t{1} << 41, 2, 1);
  check_throws<std::invalid_argument>([&] { ReplayMemory bad(c); }, "capacity above 2^40 is refused");
  check_throws<std::invalid_argument>([&] { FenwickTree t(0); }, "empty fenwick tree");
  check_throws<std::invalid_argument>([&] { FenwickTree t(-5); }, "negative fenwick size, before allocating");
  check_throws<std::invalid_argument>([&] { MinTree t(-5); }, "negative min tree size, before allocating");
  MinTree m(4);
  check_throws<std::invalid_argument>([&] { m.set(0, std::nan("")); }, "min tree rejects NaN");
  check_throws<std::out_of_range>([&] { m.set(-1, 1.0); }, "min tree rejects a negative index");
  FenwickTree t(4);
  check_throws<std::invalid_argument>([&] { t.set(0, t.max_leaf() * 2); }, "fenwick rejects a leaf above max_leaf");
  for (int i = 0; i < 4; ++i) t.set(i, t.max_leaf());
  check(std::isfinite(t.total()), "four max_leaf leaves sum to a finite total");
}

std::vector<char> read_bytes(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  std::vector<char> bytes;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) bytes.insert(bytes.end(), buffer, buffer + n);
  std::fclose(f);
  return bytes;
}

// Rewrites int64 fields of a snapshot and re-seals both checksums (layout in replay_memory.cc).
void forge(const std::string& path, std::vector<char> bytes, const std::vector<std::pair<size_t, int64_t>>& fields) {
  constexpr size_t kHeaderChecksumAt = 200;
  for (const auto& field : fields) std::memcpy(&bytes[field.first], &field.second, sizeof(int64_t));
  Checksum header;
  header.update(bytes.data(), kHeaderChecksumAt);
  const uint64_t header_digest = header.digest();
  std::memcpy(&bytes[kHeaderChecksumAt], &header_digest, sizeof(header_digest));
  Checksum all;
  all.update(bytes.data(), bytes.size() - 8);
  const uint64_t digest = all.digest();
  std::memcpy(&bytes[bytes.size() - 8], &digest, sizeof(digest));
  std::FILE* f = std::fopen(path.c_str(), "wb");
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

void test_snapshot_values_out_of_range() {
  const MemoryConfig c = small_config(true, 64, 2, 1);
  ReplayMemory m(c);
  fill_memory(m, 40);
  m.save("core_test_forge.bin");
  const std::vector<char> bytes = read_bytes("core_test_forge.bin");
  auto field = [&](size_t at) {
    int64_t v;
    std::memcpy(&v, &bytes[at], sizeof(v));
    return v;
  };
  // Frame numbers shifted to just below INT64_MAX: frames_begin, frames_end, cur_frame, every obs_frame.
  const int64_t shift = std::numeric_limits<int64_t>::max() - 100;
  std::vector<std::pair<size_t, int64_t>> shifted{{104, field(104) + shift}, {112, field(112) + shift},
                                                  {136, field(136) + shift}};
  for (size_t i = 0; i < 40; ++i) shifted.push_back({208 + 8 * i, field(208 + 8 * i) + shift});
  forge("core_test_forged.bin", bytes, shifted);
  check_throws<FormatError>([&] { ReplayMemory::load("core_test_forged.bin"); }, "frame numbers near INT64_MAX");
  forge("core_test_forged.bin", bytes, {{16, int64_t{1} << 40}});
  check_throws<FormatError>([&] { ReplayMemory::load("core_test_forged.bin"); }, "capacity of 2^40");
  forge("core_test_forged.bin", bytes, {{152, int64_t{1} << 62}});
  check_throws<FormatError>([&] { ReplayMemory::load("core_test_forged.bin"); }, "episode steps beyond appended");
  forge("core_test_forged.bin", bytes, {});
  ReplayMemory::load("core_test_forged.bin")->check_invariants();  // the forger itself is sound
  std::remove("core_test_forged.bin");
  std::remove("core_test_forge.bin");

  check_throws<std::invalid_argument>([&] { m.save(std::string("a\0b", 3)); }, "save to a path with a NUL byte");
  check_throws<std::invalid_argument>([&] { ReplayMemory::load(std::string("a\0b", 3)); }, "load a path with a NUL");
  std::FILE* a = std::fopen("a", "rb");
  check(a == nullptr, "nothing written to the path cut at its NUL");
  if (a != nullptr) std::fclose(a);
  check(::mkfifo("core_test_fifo", 0600) == 0, "mkfifo");
  check_throws<FormatError>([&] { ReplayMemory::load("core_test_fifo"); }, "load of a FIFO fails without waiting");
  std::remove("core_test_fifo");
  check_throws<FileError>([&] { ReplayMemory::load("."); }, "load of a directory");
}

// Each step of load refuses its own kind of damage with a FormatError naming it, and a
// file it refuses never becomes a memory. Offsets are those of a version 1 file (layout
// in replay_memory.cc): options from 16 (prioritized at 64), max_priority at 160.
void test_load_refuses_each_kind_of_damage() {
  const MemoryConfig c = small_config(true, 64, 2, 1);
  ReplayMemory m(c);
  fill_memory(m, 40);
  m.save("core_test_damage.bin");
  const std::vector<char> bytes = read_bytes("core_test_damage.bin");
  auto write = [](const std::vector<char>& data) {
    std::FILE* f = std::fopen("core_test_damaged.bin", "wb");
    std::fwrite(data.data(), 1, data.size(), f);
    std::fclose(f);
  };
  auto refused = [](const std::string& expected, const std::string& what) {
    try {
      ReplayMemory::load("core_test_damaged.bin");
      check(false, what + " loaded");
    } catch (const FormatError& e) {
      check(std::string(e.what()).find(expected) != std::string::npos, what + ": message '" + e.what() + "'");
    }
  };
  auto changed = [&](size_t at, const std::vector<char>& value) {  // no checksum recomputed
    std::vector<char> data = bytes;
    std::copy(value.begin(), value.end(), data.begin() + static_cast<std::ptrdiff_t>(at));
    return data;
  };
  write(changed(7, {'X'}));
  refused("not a replay memory snapshot", "another magic");
  write(changed(8, {3, 0, 0, 0}));
  refused("format version 3", "an unknown version");
  write(changed(12, {1, 2, 3, 4}));
  refused("another byte order", "the other byte order");
  write(changed(56, {0x55}));  // a byte of gamma
  refused("header checksum mismatch", "a changed option");
  write(changed(bytes.size() - 9, {0x55}));  // the last frame byte, 1 before
  refused("checksum mismatch", "a changed frame");
  std::vector<char> longer = bytes;
  longer.push_back(0);
  write(longer);
  refused("1 unexpected bytes after the data", "a byte after the data");
  write(std::vector<char>(bytes.begin(), bytes.begin() + 230));
  refused("truncated", "a file cut in its arrays");
  forge("core_test_damaged.bin", bytes, {{64, 2}});
  refused("bad prioritized flag", "a prioritized flag of 2");
  forge("core_test_damaged.bin", bytes, {{40, 0}});
  refused("stack must be in [1, 255]", "an option the constructor refuses");
  int64_t negative;
  const double minus_one = -1.0;
  std::memcpy(&negative, &minus_one, sizeof(negative));
  forge("core_test_damaged.bin", bytes, {{160, negative}});
  refused("bad max priority", "a negative max priority");
  forge("core_test_damaged.bin", bytes, {});
  ReplayMemory::load("core_test_damaged.bin")->check_invariants();  // the forger alone changes nothing
  std::remove("core_test_damaged.bin");
  std::remove("core_test_damage.bin");
}

// One thread appends while another samples and updates priorities (run under TSan
// by tests/test_core_sanitized.py): no data race, and the memory stays consistent.
void test_threads(bool prioritized) {
  MemoryConfig c = small_config(prioritized, 500, 4, prioritized ? 1 : 3);
  ReplayMemory m(c);
  fill_memory(m, 20);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    std::vector<uint8_t> frame(static_cast<size_t>(c.frame_bytes()));
    for (int i = 0; i < 5000; ++i) {
      frame[0] = static_cast<uint8_t>(i);
      const bool end = i % 97 == 96;
      m.append(i % 4, 1.0, frame.data(), end, false);
      if (end) m.start_episode(frame.data());
    }
    done = true;
  });
  Buffers out(c, 16);
  std::vector<double> priorities(16);
  Rng rng(1);
  int samples = 0;
  bool consistent = true;
  while (!done || samples == 0) {
    m.sample(16, 0.5, out.view);
    ++samples;
    for (int64_t b = 0; b < 16; ++b) consistent = consistent && out.ids[static_cast<size_t>(b)] >= 0;
    if (prioritized) {
      for (auto& p : priorities) p = rng.uniform() * 3;
      m.update_priorities(out.ids.data(), priorities.data(), 16);
    }
  }
  writer.join();
  check(consistent && samples > 0, "samples while another thread appends");
  m.check_invariants();
}

// Several streams: frames carry their stream in byte 0, so every sampled state and
// next state must hold only frames of the stream its id was appended on.
void test_streams_random_operations(bool prioritized) {
  Rng rng(prioritized ? 21 : 22);
  for (int sequence = 0; sequence < 150; ++sequence) {
    const int64_t stack = 1 + static_cast<int64_t>(rng.below(4));
    const int64_t n_step = 1 + static_cast<int64_t>(rng.below(3));
    MemoryConfig c = small_config(prioritized, stack + n_step + static_cast<int64_t>(rng.below(14)), stack, n_step);
    c.streams = 2 + static_cast<int64_t>(rng.below(3));
    ReplayMemory m(c);
    const size_t frame_bytes = static_cast<size_t>(c.frame_bytes());
    const size_t streams = static_cast<size_t>(c.streams);
    Buffers out(c, 8);
    std::vector<uint8_t> frames(streams * frame_bytes), resets(frames.size());
    std::vector<int64_t> actions(streams);
    std::vector<float> rewards(streams);
    std::vector<uint8_t> terminated(streams), truncated(streams), open(streams, 0);
    std::vector<int64_t> stream_of;  // id -> stream
    auto random_frame = [&](uint8_t* f, size_t stream) {
      for (size_t k = 0; k < frame_bytes; ++k) f[k] = static_cast<uint8_t>(rng.next());
      f[0] = static_cast<uint8_t>(stream);
    };
    for (int step = 0; step < 150; ++step) {
      const bool all_open = std::all_of(open.begin(), open.end(), [](uint8_t o) { return o != 0; });
      if (all_open && rng.uniform() < 0.25) {
        const bool reset = rng.uniform() < 0.5;
        for (size_t i = 0; i < streams; ++i) {
          random_frame(&frames[i * frame_bytes], i);
          random_frame(&resets[i * frame_bytes], i);
          actions[i] = static_cast<int64_t>(rng.below(4));
          rewards[i] = 1.0f;
          terminated[i] = rng.uniform() < 0.1;
          truncated[i] = !terminated[i] && rng.uniform() < 0.05;
          open[i] = reset || !(terminated[i] || truncated[i]);
          stream_of.push_back(static_cast<int64_t>(i));
        }
        m.append_batch(actions.data(), rewards.data(), frames.data(), terminated.data(), truncated.data(),
                       reset ? resets.data() : nullptr);
      } else {
        const size_t stream = static_cast<size_t>(rng.below(streams));
        random_frame(frames.data(), stream);
        if (!open[stream] || rng.uniform() < 0.03) {
          m.start_episode(frames.data(), static_cast<int64_t>(stream));
          open[stream] = 1;
        } else {
          const bool term = rng.uniform() < 0.1;
          const bool trunc = !term && rng.uniform() < 0.05;
          m.append(static_cast<int64_t>(rng.below(4)), 1.0, frames.data(), term, trunc, static_cast<int64_t>(stream));
          open[stream] = !(term || trunc);
          stream_of.push_back(static_cast<int64_t>(stream));
        }
      }
      check(m.transitions_appended() == static_cast<int64_t>(stream_of.size()), "ids are global, one per step");
      if (m.size() > 0 && rng.uniform() < 0.3) {
        m.sample(8, 0.5, out.view);
        const size_t state_bytes = static_cast<size_t>(stack) * frame_bytes;
        for (size_t b = 0; b < 8; ++b) {
          const int64_t id = out.ids[b];
          check(id >= m.transitions_appended() - c.capacity && id < m.transitions_appended(), "sampled id is live");
          const int64_t stream = stream_of[static_cast<size_t>(id)];
          bool own_stream = true;
          for (int64_t k = 0; k < stack; ++k) {
            const size_t at = b * state_bytes + static_cast<size_t>(k) * frame_bytes;
            own_stream = own_stream && out.states[at] == stream && out.next_states[at] == stream;
          }
          check(own_stream, "a sampled state holds frames of its own stream only");
          if (prioritized) check(out.weights[b] > 0 && out.weights[b] <= 1, "weight in (0, 1]");
        }
        if (prioritized) {
          std::vector<double> priorities(8);
          for (auto& p : priorities) p = rng.uniform() * 4;
          m.update_priorities(out.ids.data(), priorities.data(), 8);
        }
      }
    }
    m.check_invariants();
  }
}

void test_streams_errors_and_snapshot() {
  MemoryConfig c = small_config(true, 30, 2, 3);
  c.streams = 3;
  ReplayMemory m(c);
  const size_t frame_bytes = static_cast<size_t>(c.frame_bytes());
  std::vector<uint8_t> frames(3 * frame_bytes, 5), state(2 * frame_bytes), states(3 * 2 * frame_bytes);
  std::vector<int64_t> actions{0, 1, 2};
  std::vector<float> rewards{1.0f, 2.0f, 3.0f};
  std::vector<uint8_t> no(3, 0), yes(3, 1);
  check_throws<std::out_of_range>([&] { m.start_episode(frames.data(), 3); }, "stream past the end");
  check_throws<std::out_of_range>([&] { m.append(0, 0.0, frames.data(), false, false, -1); }, "negative stream");
  check_throws<std::invalid_argument>([&] { m.current_states(states.data()); }, "states before any observation");
  m.start_episode(frames.data(), 0);
  m.start_episode(frames.data(), 1);
  check_throws<std::invalid_argument>(
      [&] { m.append_batch(actions.data(), rewards.data(), frames.data(), no.data(), no.data(), nullptr); },
      "a batch with a stream never started");
  check(m.transitions_appended() == 0, "a refused batch stores no row");
  m.start_episode(frames.data(), 2);
  rewards[2] = std::numeric_limits<float>::quiet_NaN();
  check_throws<std::invalid_argument>(
      [&] { m.append_batch(actions.data(), rewards.data(), frames.data(), no.data(), no.data(), nullptr); },
      "a batch with a NaN reward in its last row");
  check(m.transitions_appended() == 0, "a refused batch stores no row");
  rewards[2] = 3.0f;
  Rng rng(8);
  for (int step = 0; step < 40; ++step) {
    for (auto& b : frames) b = static_cast<uint8_t>(rng.next());
    const bool end = step % 9 == 8;
    m.append_batch(actions.data(), rewards.data(), frames.data(), end ? yes.data() : no.data(), no.data(),
                   frames.data());
  }
  m.current_states(states.data());
  for (int64_t s = 0; s < 3; ++s) {
    m.current_state(state.data(), s);
    check(std::memcmp(state.data(), &states[static_cast<size_t>(s) * state.size()], state.size()) == 0,
          "current_states row s is current_state(s)");
  }
  m.check_invariants();
  const std::string path = "core_test_streams.bin";
  m.save(path);
  auto loaded = ReplayMemory::load(path);
  loaded->check_invariants();
  check(loaded->config().streams == 3 && loaded->size() == m.size(), "stream snapshot keeps streams and size");
  Buffers a(c, 16), b(c, 16);
  m.sample(16, 0.5, a.view);
  loaded->sample(16, 0.5, b.view);
  check(a.states == b.states && a.next_states == b.next_states && a.ids == b.ids && a.weights == b.weights &&
            a.rewards == b.rewards,
        "stream snapshot round trip gives the same samples");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  std::vector<char> bytes(1 << 16);
  const size_t n = std::fread(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  for (size_t cut : {size_t{12}, size_t{150}, size_t{300}, n / 2, n - 1}) {
    f = std::fopen(path.c_str(), "wb");
    std::fwrite(bytes.data(), 1, cut, f);
    std::fclose(f);
    check_throws<FormatError>([&] { ReplayMemory::load(path); }, "truncated stream snapshot at " + std::to_string(cut));
  }
  std::remove(path.c_str());
}

}  // namespace

int main() {
  test_fenwick_by_hand();
  test_fenwick_random();
  test_memory_random_operations(false);
  test_memory_random_operations(true);
  test_memory_errors();
  test_snapshot_round_trip();
  test_shared_layout_equals_separate_layout();
  test_priority_bounds();
  test_sizes_and_trees();
  test_snapshot_values_out_of_range();
  test_load_refuses_each_kind_of_damage();
  test_threads(false);
  test_threads(true);
  test_streams_random_operations(false);
  test_streams_random_operations(true);
  test_streams_errors_and_snapshot();
  std::printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}
