// Replay memory for Atari DQN: a circular store of transitions whose 84x84
// observations are kept once each and stacked at sample time, with optional
// proportional prioritized sampling (Schaul et al. 2016).
//
// Data model
// ----------
// The memory takes `streams` independent streams of episodes (one per env of a
// vector of envs; 1 by default). On each stream an episode is
// start_episode(o0, s) followed by append(a_t, r_t, o_{t+1}, term, trunc, s)
// calls. Every observation is pushed once into its stream's FrameStore and gets
// a frame number in that store; the observations of one episode have
// consecutive numbers. The n-th append over the memory's life, counting every
// stream (and the rows of append_batch in order), creates transition id n, kept
// in slot n % capacity of the per-transition arrays:
//
//   obs_frame_[slot]  frame number (in its stream's store) of the observation
//                     the action was taken in
//   history_[slot]    how many earlier frames of the same episode the state may
//                     use: min(steps since the episode began, stack - 1)
//   stream_[slot]     the stream it was appended on
//   next_[slot]       id of the next transition appended on the same stream,
//                     -1 until it exists (it may lie in a later episode)
//   action_, reward_, flags_ (terminated / truncated)
//
// so its next observation is frame obs_frame_ + 1 of the same store. The state
// for an observation with frame g and history h is the frames
//   g - min(stack-1, h), ..., g - min(1, h), g        (oldest first)
// i.e. the first observation of the episode is repeated where the episode is
// shorter than the stack, and a state never reaches into another episode or
// another stream.
//
//   stream 0 frames:  o0 o1 o2 o3 | o0' o1'        (o3 ends the episode)
//   stream 1 frames:  p0 p1 p2 p3
//   ids (global):     t0 t1 t2 t3 t4 t5 t6           t0 = (s0: o0 -> o1), t1 = (s1: p0 -> p1),
//   stream:           0  1  0  1  0  1  0            t2 = (s0: o1 -> o2), ..., t6 = (s0: o0' -> o1')
//   next:             2  3  4  5  6  -1 -1
//   history:          0  0  1  1  2  2  0
//   state(t4) with stack 4 = [o0 o0 o1 o2]; next state(t4) = [o0 o1 o2 o3]
//
// With one stream next_[slot(t)] = t + 1 always, and everything below reduces to
// the single-stream memory (same ids, samples, priorities and snapshot bytes).
//
// Live window and validity
// ------------------------
// With T transitions appended, the live ids are [T - min(T, capacity), T): the
// newest `capacity` transitions over all streams. Each stream knows its oldest
// and newest live id; when the oldest live id e is evicted, its stream's oldest
// becomes next_[e] (all ids after e are live). Frames of stream s are released
// only below the state of its oldest live transition (and of its newest
// observation), so every live transition has all its frames: a transition is
// never returned once any of its frames is gone, and never before its next frame
// exists (append stores both together). Frame numbers and state starts only grow
// along a stream, so the oldest live transition of a stream needs the oldest frame.
//
// With n-step returns, transition t needs the rewards of t and the next n - 1
// transitions of its stream (following next_) unless its episode ends sooner.
// The last min(n - 1, steps so far) transitions of the episode in progress on
// each stream are "pending": stored but not sampleable until enough steps arrive
// on that stream or the episode ends. Each stream lists its live pending ids
// (at most n - 1, oldest first; an evicted pending id leaves the list), so
// size() = live - pending. Pending ids are scattered (at most streams * (n - 1));
// uniform sampling draws k in [0, size()) and takes the k-th live id that is not
// pending (with one stream the pending ids are the newest, so this is lo + k).
//
// n-step target of transition t, ending at the first of t_{n-1}, a terminal, or a
// truncation (step t_{k-1}, where t_0 = t and t_{i+1} = next_[t_i]):
// rewards = sum_{i<k} gamma^i r(t_i); next state = state after step t_{k-1};
// discounts = gamma^k, or 0 if that step terminated (a truncated episode
// bootstraps from its true last state).
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
// exactly as it was; counters move last. (append_batch checks every row first, so
// bad input stores nothing; see it for running out of memory.) Frame numbers and
// ids stay below kMaxCount = 2^62 (146 years at 10^9 appends per second), so no
// index arithmetic can overflow.
//
// Thread safety: every public method takes one mutex, so one thread may append
// while another samples.
#pragma once
#include <cstdint>
#include <deque>
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

// Snapshot format versions (the layout is in replay_memory.cc). Version 1 is the
// one-stream format that every build before streams wrote, and what a one-stream
// memory still writes; version 2 holds several streams.
constexpr uint32_t kSnapshotOneStream = 1;
constexpr uint32_t kSnapshotStreams = 2;

// The memory's options, declared once: X(type, name, default, since) where `since` is
// the snapshot format version from which a snapshot's header stores the option
// (version 1 predates streams: such a memory has one). MemoryConfig's fields and
// for_each_option() come from this list, and through for_each_option the snapshot
// header (save and load walk the options in this order), the Python binding's
// keyword arguments and properties, and atari_dqn/replay.py's checks. A type is
// one of int64_t, uint64_t, double and bool (stored as an int64 0 or 1). Adding an
// option changes the snapshot layout, so it needs a new format version.
#define REPLAY_MEMORY_OPTIONS(X)                                                  \
  X(int64_t, capacity, 0, 1)  /* transitions */                                   \
  X(int64_t, height, 84, 1)   /* frame rows */                                    \
  X(int64_t, width, 84, 1)    /* frame columns */                                 \
  X(int64_t, stack, 4, 1)     /* frames in a state */                             \
  X(int64_t, n_step, 1, 1)    /* steps in a return */                             \
  X(double, gamma, 0.99, 1)   /* discount per step */                             \
  X(bool, prioritized, false, 1)                                                  \
  X(double, alpha, 0.6, 1)    /* priority exponent (prioritized only) */          \
  X(double, eps, 1e-6, 1)     /* added to |TD error| (prioritized only) */        \
  X(uint64_t, seed, 0, 1)     /* of the sampler's RNG at construction */          \
  X(int64_t, streams, 1, 2)   /* independent episode streams (envs) feeding it */

struct MemoryConfig {
#define REPLAY_OPTION_FIELD(type, name, default_value, since) type name = default_value;
  REPLAY_MEMORY_OPTIONS(REPLAY_OPTION_FIELD)
#undef REPLAY_OPTION_FIELD

  // Calls visit(name, &MemoryConfig::field, since) for every option, in the order above.
  template <typename Visit>
  static void for_each_option(Visit&& visit) {
#define REPLAY_VISIT_OPTION(type, name, default_value, since) visit(#name, &MemoryConfig::name, uint32_t{since});
    REPLAY_MEMORY_OPTIONS(REPLAY_VISIT_OPTION)
#undef REPLAY_VISIT_OPTION
  }

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
// sampling): entry k is id first_id + k, k < count = min(appended, capacity), and
// streams[k] is the stream it was appended on. episode_start[k] is 1 when the
// transition is the first step of its episode: the one after a terminal or
// truncation of the same stream, or, for the oldest live id of its stream, one
// whose state has no history (history 0). With stack 1 every history is 0, so
// such an id then counts as a start only if no id was evicted yet (first_id 0).
struct TransitionLog {
  int64_t first_id = 0;
  std::vector<int32_t> actions;
  std::vector<float> rewards;
  std::vector<uint8_t> terminated;
  std::vector<uint8_t> truncated;
  std::vector<uint8_t> episode_start;
  std::vector<uint16_t> streams;
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
  // Every call that takes a stream throws std::out_of_range unless 0 <= stream < streams.
  void start_episode(const uint8_t* frame, int64_t stream = 0);
  // reward must be finite and within float32 range (it is stored as float).
  void append(int64_t action, double reward, const uint8_t* frame, bool terminated, bool truncated,
              int64_t stream = 0);
  // One step of every stream (row i is stream i; each array has `streams` rows,
  // frames and reset_frames are streams x height x width; terminated/truncated are
  // 0 or nonzero). The same as append(..., stream = i) for i = 0, 1, ... in order,
  // each followed, when reset_frames is not null and row i ended its episode, by
  // start_episode(reset_frames row i, i). Every row is checked before any is stored;
  // only running out of memory (std::bad_alloc) can stop a batch half-way, and then
  // the rows before it stay stored, each whole.
  void append_batch(const int64_t* actions, const float* rewards, const uint8_t* frames, const uint8_t* terminated,
                    const uint8_t* truncated, const uint8_t* reset_frames);
  int64_t size() const;                  // sampleable transitions
  int64_t transitions_appended() const;  // ids handed out so far
  // The stacked state of the newest observation of a stream (what the agent acts on next).
  void current_state(uint8_t* out, int64_t stream = 0) const;
  // current_state of every stream: streams x stack x height x width.
  void current_states(uint8_t* out) const;
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
  // A FIFO of at most `capacity` ids (a stream's pending ids, oldest first). Its
  // storage is allocated once, by reserve(), so push and pop never throw: they
  // may run in the commit phase of append.
  class IdRing {
   public:
    void reserve(size_t capacity) {  // on an empty ring
      if (ids_.size() < capacity) ids_.assign(capacity, -1);
    }
    size_t capacity() const { return ids_.size(); }
    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    int64_t at(size_t i) const { return ids_[(head_ + i) % ids_.size()]; }  // i-th oldest
    int64_t front() const { return ids_[head_]; }
    void push_back(int64_t id) { ids_[(head_ + size_++) % ids_.size()] = id; }  // requires size() < capacity()
    void pop_front() {  // requires !empty()
      head_ = (head_ + 1) % ids_.size();
      --size_;
    }
    void clear() {
      head_ = 0;
      size_ = 0;
    }
    bool contains(int64_t id) const {
      for (size_t i = 0; i < size_; ++i) {
        if (at(i) == id) return true;
      }
      return false;
    }

   private:
    std::vector<int64_t> ids_;
    size_t head_ = 0, size_ = 0;
  };

  // Everything save and load know about the file (replay_memory.cc). A member, so
  // it reads and restores the memory's private state.
  struct Snapshot;

  // Everything one stream of episodes owns.
  struct Stream {
    explicit Stream(size_t frame_bytes, size_t chunk_bytes) : frames(frame_bytes, chunk_bytes) {}
    FrameStore frames;
    bool episode_open = false;  // start_episode called and no terminal/truncation since
    bool have_obs = false;      // at least one observation stored
    int64_t cur_frame = -1;     // frame number of the newest observation
    int64_t cur_history = 0;    // its state history (min(steps, stack - 1))
    int64_t episode_steps = 0;  // steps appended to the episode in progress
    int64_t oldest_id = -1;     // oldest live transition of this stream, -1 if none
    int64_t newest_id = -1;     // newest live transition of this stream, -1 if none
    IdRing pending;             // live pending ids of the open episode, oldest first (n_step - 1 slots)
  };

  int64_t live_lo() const { return appended_ > config_.capacity ? appended_ - config_.capacity : 0; }
  int64_t slot(int64_t id) const { return id % config_.capacity; }
  std::string on_stream(int64_t stream) const;  // " on stream i" in messages, when there are several
  void check_stream(int64_t stream) const;
  // Throws what append would for these arguments; `frames` = frames the step will push.
  void check_can_append(int64_t action, double reward, int64_t stream, int64_t frames) const;
  void check_has_observation(int64_t stream) const;
  bool is_pending(int64_t id) const;  // id is live
  void start_episode_locked(const uint8_t* frame, int64_t stream);
  void append_locked(int64_t action, float reward, const uint8_t* frame, bool terminated, bool truncated,
                     int64_t stream);
  void evict_oldest();
  void write_state(const FrameStore& frames, int64_t frame, int64_t history, uint8_t* out) const;
  void fill_item(int64_t id, int64_t b, const BatchView& out) const;
  void prefetch_item(int64_t id) const;
  void set_leaf(int64_t id, double value);  // value = p^alpha, 0 for not sampleable
  void make_sampleable(int64_t id);         // a leaf of max_priority^alpha
  void end_episode(Stream& st);             // its pending ids become sampleable
  void release_frames(int64_t stream);
  void rebuild_stream_links();              // load: next_, oldest/newest, pending from the arrays
  // Whether a p^alpha may be stored: in (0, max_leaf] (NaN is not).
  bool leaf_in_range(double leaf) const { return leaf > 0.0 && leaf <= sum_tree_->max_leaf(); }
  // Throws std::overflow_error unless `frames` more frames stay below kMaxCount.
  void check_frame_numbers_left(const Stream& st, int64_t frames) const;

  MemoryConfig config_;
  mutable std::mutex mu_;
  std::deque<Stream> streams_;  // a deque never moves its elements (a FrameStore has no nothrow move)
  Rng rng_;
  int64_t appended_ = 0;        // transitions ever appended (next id)
  int64_t pending_ = 0;         // live pending ids over all streams
  double max_priority_ = 1.0;   // largest p = |delta| + eps seen so far
  std::vector<int64_t> obs_frame_;
  std::vector<int32_t> action_;
  std::vector<float> reward_;
  std::vector<uint8_t> flags_;
  std::vector<uint8_t> history_;
  std::vector<uint16_t> stream_;
  std::vector<int64_t> next_;
  std::vector<int64_t> sorted_pending_;     // sample's scratch: live pending ids, ascending
  std::unique_ptr<FenwickTree> sum_tree_;  // prioritized only
  std::unique_ptr<MinTree> min_tree_;      // prioritized only
};

}  // namespace replay
