// Tests of the pure C++ core, without Python. tests/test_core_sanitized.py builds
// this file with -fsanitize=address,undefined and runs it; it also builds alone:
//   g++ -std=c++17 -Icsrc csrc/tests/core_test.cc csrc/*.cc -o core_test && ./core_test
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

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

}  // namespace

int main() {
  test_fenwick_by_hand();
  test_fenwick_random();
  test_memory_random_operations(false);
  test_memory_random_operations(true);
  test_memory_errors();
  test_snapshot_round_trip();
  test_shared_layout_equals_separate_layout();
  std::printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}
