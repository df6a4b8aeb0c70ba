// Replay memory for Atari DQN: a circular store of transitions whose 84x84
// observations are kept once each and stacked at sample time, with optional
// proportional prioritized sampling (Schaul et al. 2016).
//
// Data model
// ----------
// An episode is start_episode(o0) followed by append(a_t, r_t, o_{t+1}, term, trunc)
// calls. Every observation is pushed once into the FrameStore and gets a global
// frame number; the observations of one episode have consecutive numbers. The
// n-th append over the memory's life creates transition id n, kept in slot
// n % capacity of the per-transition arrays:
//
//   obs_frame_[slot]  frame number of the observation the action was taken in
//   history_[slot]    how many earlier frames of the same episode the state may
//                     use: min(steps since the episode began, stack - 1)
//   action_, reward_, flags_ (terminated / truncated)
//
// so its next observation is frame obs_frame_ + 1. The state for an observation
// with frame g and history h is the frames
//   g - min(stack-1, h), ..., g - min(1, h), g        (oldest first)
// i.e. the first observation of the episode is repeated where the episode is
// shorter than the stack, and a state never reaches into another episode.
//
//   frames:   ... | o0 o1 o2 o3 o4 | o0' o1' | o0'' ...
//   ids:            t0 t1 t2 t3       t4         (o4 ends the episode: no id of its own)
//   history:        0  1  2  3        0
//   state(t1) with stack 4 = [o0 o0 o0 o1]; next state(t1) = [o0 o0 o1 o2]
//
// Live window and validity
// ------------------------
// With T transitions appended, the live ids are [T - min(T, capacity), T): the
// newest `capacity` transitions. Frames are released only once no live
// transition needs them (oldest needed = the state history of the oldest live
// id), so every live transition has all its frames: a transition is never
// returned once any of its frames is gone, and never before its next frame
// exists (append stores both together).
//
// With n-step returns, transition t needs the rewards of t .. t+n-1 unless its
// episode ends sooner. The last min(n - 1, steps so far) transitions of the
// episode in progress are "pending": they are stored but not sampleable until
// enough steps arrive or the episode ends. size() counts live, non-pending ids;
// the sampleable ids are the contiguous range [lo, hi).
//
// n-step target of transition t, ending at the first of t+n-1, a terminal, or a
// truncation (step t+k-1): rewards = sum_{i<k} gamma^i r_{t+i};
// next state = state after step t+k-1; discounts = gamma^k, or 0 if that step
// terminated (a truncated episode bootstraps from its true last state).
//
// Priorities
// ----------
// Leaf slot holds p^alpha with p = |delta| + eps; pending and empty slots hold 0
// in the Fenwick tree and +inf in the min tree. A transition gets max_priority^alpha
// (the largest p seen so far, 1 at first) when it becomes sampleable.
//
// Every stored p^alpha, computed in double, lies in [eps^alpha, max_leaf] with
// eps^alpha a positive normal double (checked at construction) and
// max_leaf = DBL_MAX / (2 capacity) (FenwickTree::max_leaf), so the total of the
// sampleable leaves is finite, and positive whenever one is sampleable: sampling
// never meets a total of 0 or infinity. A priority whose p^alpha falls outside is
// refused (std::invalid_argument) before anything changes.
//
// Errors: every method checks its arguments and every derived value first, then
// commits with operations that cannot throw, so an exception leaves the memory
// exactly as it was. Frame numbers and ids stay below kMaxCount = 2^62 (146 years
// at 10^9 appends per second), so no index arithmetic can overflow.
//
// Thread safety: every public method takes one mutex, so one thread may append
// while another samples.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "frame_store.h"
#include "rng.h"
#include "sum_tree.h"

namespace replay {

// Raised for a truncated, corrupt or foreign snapshot file (maps to ValueError).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Raised when the operating system refuses a file operation (maps to OSError).
class FileError : public std::runtime_error {
 public:
  FileError(int error_number, const std::string& what) : std::runtime_error(what), error_number_(error_number) {}
  int error_number() const { return error_number_; }

 private:
  int error_number_;
};

struct MemoryConfig {
  int64_t capacity = 0;  // transitions
  int64_t height = 84;
  int64_t width = 84;
  int64_t stack = 4;
  int64_t n_step = 1;
  double gamma = 0.99;
  bool prioritized = false;
  double alpha = 0.6;
  double eps = 1e-6;
  uint64_t seed = 0;

  void validate() const;  // throws std::invalid_argument with the reason
  int64_t frame_bytes() const { return height * width; }  // after validate(): no overflow
  // Bytes of the per-transition arrays for one slot (priority trees included).
  int64_t slot_bytes() const;
};

// Caller-owned output arrays, each with room for `batch` items; weights is
// written only for a prioritized memory (may be null otherwise).
//
// Frame layout, chosen by next_states:
//   separate (next_states != null): states and next_states are each
//     batch x stack x height x width.
//   shared (next_states == null, n_step == 1 only): states is
//     batch x (stack + 1) x height x width; row b holds the state's frames and
//     then the next observation, so the state is frames [0, stack) and the next
//     state frames [1, stack + 1). With one step the next state is always the
//     state shifted by one frame (padding included), so this writes and reads
//     stack + 1 frames per item instead of 2 * stack.
// The live transitions in id order (a read-only copy for dataset tools, not for
// sampling): entry k is id first_id + k, k < count = min(appended, capacity).
// episode_start[k] is 1 when the transition is the first step of its episode:
// the one after a terminal or truncation, or, for the oldest live id, one whose
// state has no history (history 0). With stack 1 every history is 0, so the
// oldest live id then counts as a start only if it is id 0.
struct TransitionLog {
  int64_t first_id = 0;
  std::vector<int32_t> actions;
  std::vector<float> rewards;
  std::vector<uint8_t> terminated;
  std::vector<uint8_t> truncated;
  std::vector<uint8_t> episode_start;
};

struct BatchView {
  uint8_t* states = nullptr;
  uint8_t* next_states = nullptr;
  int64_t* actions = nullptr;
  float* rewards = nullptr;
  float* dones = nullptr;
  float* discounts = nullptr;
  int64_t* ids = nullptr;
  float* weights = nullptr;
};

class ReplayMemory {
 public:
  explicit ReplayMemory(const MemoryConfig& config);

  const MemoryConfig& config() const { return config_; }
  void start_episode(const uint8_t* frame);
  // reward must be finite and within float32 range (it is stored as float).
  void append(int64_t action, double reward, const uint8_t* frame, bool terminated, bool truncated);
  int64_t size() const;                  // sampleable transitions
  int64_t transitions_appended() const;  // ids handed out so far
  // The stacked state of the newest observation (what the agent acts on next).
  void current_state(uint8_t* out) const;
  // Uniform: beta is ignored. Prioritized: stratified proportional sampling.
  void sample(int64_t batch, double beta, const BatchView& out);
  // priorities are |TD error| (finite, >= 0, with (p + eps)^alpha <= max_leaf);
  // stale and pending ids are ignored.
  void update_priorities(const int64_t* ids, const double* priorities, int64_t count);
  // Reads the stored priority p^alpha of a live id (tests, diagnostics).
  double priority_of(int64_t id) const;
  double max_priority() const;
  void save(const std::string& path) const;
  static std::unique_ptr<ReplayMemory> load(const std::string& path);
  void reseed(uint64_t seed);
  size_t bytes_allocated() const;
  void check_invariants() const;  // throws std::logic_error on a broken invariant
  TransitionLog export_log() const;  // see TransitionLog

 private:
  struct Range {
    int64_t lo, hi;
  };
  Range sampleable() const;  // [lo, hi) of sampleable ids; caller holds mu_
  int64_t pending() const;
  int64_t slot(int64_t id) const { return id % config_.capacity; }
  void write_state(int64_t frame, int64_t history, uint8_t* out) const;
  void fill_item(int64_t id, int64_t b, const BatchView& out) const;
  void prefetch_item(int64_t id) const;
  void set_leaf(int64_t id, double value);  // value = p^alpha, 0 for not sampleable
  // Whether a p^alpha may be stored: in (0, max_leaf] (NaN is not).
  bool leaf_in_range(double leaf) const { return leaf > 0.0 && leaf <= sum_tree_->max_leaf(); }
  void check_frame_numbers_left() const;  // throws std::overflow_error at kMaxCount
  void release_frames();
  void mark_newly_sampleable(int64_t old_hi, int64_t new_hi);

  MemoryConfig config_;
  mutable std::mutex mu_;
  FrameStore frames_;
  Rng rng_;
  int64_t appended_ = 0;        // transitions ever appended (next id)
  bool episode_open_ = false;   // start_episode called and no terminal/truncation since
  bool have_obs_ = false;       // at least one observation stored
  int64_t cur_frame_ = -1;      // frame number of the newest observation
  int64_t cur_history_ = 0;     // its state history (min(steps, stack - 1))
  int64_t episode_steps_ = 0;   // steps appended to the episode in progress
  double max_priority_ = 1.0;   // largest p = |delta| + eps seen so far
  std::vector<int64_t> obs_frame_;
  std::vector<int32_t> action_;
  std::vector<float> reward_;
  std::vector<uint8_t> flags_;
  std::vector<uint8_t> history_;
  std::unique_ptr<FenwickTree> sum_tree_;  // prioritized only
  std::unique_ptr<MinTree> min_tree_;      // prioritized only
};

}  // namespace replay
