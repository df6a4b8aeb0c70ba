#include "replay_memory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "checksum.h"

namespace replay {

namespace {

constexpr uint8_t kTerminated = 1;
constexpr uint8_t kTruncated = 2;
constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr int64_t kMaxStack = 255;  // history_ is one byte
constexpr int64_t kMaxNStep = 1000;
constexpr int64_t kMaxCount = int64_t{1} << 62;     // frame numbers and ids stay below (see the header)
constexpr int64_t kMaxCapacity = int64_t{1} << 40;  // transitions; keeps capacity * slot bytes far from overflow
constexpr int64_t kMaxFrameBytes = int64_t{1} << 32;
constexpr int64_t kMaxStreams = std::numeric_limits<uint16_t>::max() + 1;  // stream_ is two bytes

// Snapshot layout (native little-endian; the endian mark rejects foreign byte order):
//   prologue: magic[8] version:u32 endian_mark:u32
//   header:   version 1: <options> appended:i64 <stream> max_priority:f64 rng[4]:u64
//             version 2: <options> appended:i64 max_priority:f64 rng[4]:u64 <stream> x streams
//   header_checksum:u64 of the bytes above (checked before anything is allocated)
//   arrays:   for live ids [appended - live, appended), array by array:
//             obs_frame:i64[] action:i32[] reward:f32[] flags:u8[] history:u8[]
//             (version 2: stream:u16[]) (prioritized: priority:f64[], the leaves p^alpha)
//   frames:   [frames_begin, frames_end) of stream 0, then of stream 1, ...: height*width bytes each
//   checksum:u64 of every byte before it
// <options> are REPLAY_MEMORY_OPTIONS (replay_memory.h) in their order, those stored since
// the file's version (version 1 has no streams), a bool as i64 0 or 1; <stream> =
// frames_begin frames_end episode_open have_obs cur_frame cur_history episode_steps:i64.
// The code states this once: ReplayMemory::Snapshot's walk_header (the header, whose
// size is counted by walking it) and for_each_array (the arrays), which save, load and
// load's size checks all use. Version 1 is byte for byte what every build before streams
// wrote; tests/data holds files of both versions that today's build must write again.
// The links between a stream's transitions and its pending ids are not stored: load
// rebuilds them from stream:u16[].
constexpr char kMagic[8] = {'A', 'T', 'D', 'Q', 'N', 'R', 'P', 'M'};
constexpr uint32_t kEndianMark = 0x01020304;
constexpr size_t kPrologueBytes = sizeof(kMagic) + sizeof(uint32_t) + sizeof(kEndianMark);  // magic, version, mark

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " '" + path + "': " + std::strerror(errno);
}

// The C library would silently cut a path at its first NUL byte and write elsewhere.
void check_path(const std::string& path) {
  if (path.find('\0') != std::string::npos) throw std::invalid_argument("path contains a NUL byte: refused");
}

int64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page_bytes = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_bytes <= 0) return std::numeric_limits<int64_t>::max();  // unknown: no bound
  return static_cast<int64_t>(pages) > std::numeric_limits<int64_t>::max() / page_bytes
             ? std::numeric_limits<int64_t>::max()
             : static_cast<int64_t>(pages) * page_bytes;
}

// Writes through stdio and hashes every byte it writes.
class SnapshotWriter {
 public:
  SnapshotWriter(const std::string& path) : path_(path), file_(std::fopen(path.c_str(), "wb")) {
    if (file_ == nullptr) throw FileError(errno, errno_text("cannot create", path));
  }
  ~SnapshotWriter() {
    if (file_ != nullptr) std::fclose(file_);
  }
  void bytes(const void* data, size_t n) {
    if (n == 0) return;
    checksum_.update(data, n);
    if (std::fwrite(data, 1, n, file_) != n) throw FileError(errno, errno_text("cannot write", path_));
  }
  template <typename T>
  void value(T v) {
    bytes(&v, sizeof(v));
  }
  // Writes the checksum of everything so far as a value (it is hashed in turn).
  void checkpoint_digest() { value<uint64_t>(checksum_.digest()); }
  // Writes the checksum, flushes to the disk, closes.
  void finish() {
    const uint64_t digest = checksum_.digest();
    if (std::fwrite(&digest, 1, sizeof(digest), file_) != sizeof(digest) || std::fflush(file_) != 0 ||
        ::fsync(::fileno(file_)) != 0)
      throw FileError(errno, errno_text("cannot write", path_));
    FILE* f = file_;
    file_ = nullptr;
    if (std::fclose(f) != 0) throw FileError(errno, errno_text("cannot close", path_));
  }

 private:
  std::string path_;
  FILE* file_;
  Checksum checksum_;
};

class SnapshotReader {
 public:
  // Opens without blocking (a FIFO would otherwise wait for a writer forever) and
  // refuses anything but a regular file before reading a byte.
  explicit SnapshotReader(const std::string& path) : path_(path), file_(nullptr) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw FileError(errno, errno_text("cannot open", path));
    struct stat info;
    if (::fstat(fd, &info) != 0) {
      const int error = errno;
      ::close(fd);
      throw FileError(error, "cannot stat '" + path + "': " + std::strerror(error));
    }
    if (!S_ISREG(info.st_mode)) {
      ::close(fd);
      if (S_ISDIR(info.st_mode)) throw FileError(EISDIR, "cannot read '" + path + "': " + std::strerror(EISDIR));
      throw FormatError("'" + path + "' is not a regular file, so not a replay memory snapshot");
    }
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0 || (file_ = ::fdopen(fd, "rb")) == nullptr) {
      const int error = errno;
      ::close(fd);
      throw FileError(error, "cannot open '" + path + "': " + std::strerror(error));
    }
    size_ = static_cast<uint64_t>(info.st_size);
  }
  ~SnapshotReader() { std::fclose(file_); }
  uint64_t file_size() const { return size_; }
  void bytes(void* data, size_t n) {
    if (n == 0) return;
    if (std::fread(data, 1, n, file_) != n) {
      if (std::ferror(file_)) throw FileError(errno, errno_text("cannot read", path_));
      throw truncated();
    }
    checksum_.update(data, n);
  }
  template <typename T>
  T value() {
    T v;
    bytes(&v, sizeof(v));
    return v;
  }
  void verify_header_checksum() {
    const uint64_t expected = checksum_.digest();
    if (value<uint64_t>() != expected) throw corrupt("header checksum mismatch");
  }
  void verify_checksum() {
    const uint64_t expected = checksum_.digest();
    uint64_t stored;
    if (std::fread(&stored, 1, sizeof(stored), file_) != sizeof(stored)) throw truncated(" (no checksum)");
    if (stored != expected) throw corrupt("checksum mismatch");
  }
  const std::string& path() const { return path_; }
  std::string where() const { return "replay snapshot '" + path_ + "'"; }
  FormatError truncated(const std::string& detail = "") const { return FormatError(where() + " is truncated" + detail); }
  FormatError corrupt(const std::string& why) const { return FormatError(where() + " is corrupt: " + why); }
  FormatError not_a_snapshot() const { return FormatError("'" + path_ + "' is not a replay memory snapshot"); }

 private:
  std::string path_;
  FILE* file_;
  uint64_t size_ = 0;
  Checksum checksum_;
};

}  // namespace

void MemoryConfig::validate() const {
  const std::string shape = "(" + std::to_string(height) + ", " + std::to_string(width) + ")";
  if (height < 1 || width < 1) throw std::invalid_argument("frame_shape must be positive, got " + shape);
  if (height > kMaxFrameBytes / width)  // height * width without computing an overflowing product
    throw std::invalid_argument("frame_shape " + shape + " is too large: a frame must be at most 2^32 bytes");
  if (capacity > kMaxCapacity)
    throw std::invalid_argument("capacity " + std::to_string(capacity) + " is too large: at most 2^40 transitions");
  if (stack < 1 || stack > kMaxStack)
    throw std::invalid_argument("stack must be in [1, 255], got " + std::to_string(stack));
  if (n_step < 1 || n_step > kMaxNStep)
    throw std::invalid_argument("n_step must be in [1, 1000], got " + std::to_string(n_step));
  if (!(gamma >= 0.0 && gamma <= 1.0)) throw std::invalid_argument("gamma must be in [0, 1], got " + std::to_string(gamma));
  if (capacity < stack + n_step)
    throw std::invalid_argument("capacity " + std::to_string(capacity) +
                                " is too small for one stacked transition: it must be at least stack + n_step = " +
                                std::to_string(stack + n_step));
  if (streams < 1 || streams > kMaxStreams)
    throw std::invalid_argument("streams must be in [1, " + std::to_string(kMaxStreams) + "], got " +
                                std::to_string(streams));
  if (prioritized) {
    if (!(alpha >= 0.0) || !std::isfinite(alpha))
      throw std::invalid_argument("alpha must be finite and >= 0, got " + std::to_string(alpha));
    if (!(eps > 0.0) || !std::isfinite(eps))
      throw std::invalid_argument("eps must be finite and > 0, got " + std::to_string(eps));
    // The smallest stored priority, eps^alpha, must neither underflow to 0 (a total
    // of 0 could not be sampled) nor exceed the largest leaf (see the header).
    const double floor = std::pow(eps, alpha);
    const double max_leaf = std::numeric_limits<double>::max() / (2.0 * static_cast<double>(capacity));
    if (!(floor >= std::numeric_limits<double>::min() && floor <= max_leaf)) {
      char text[256];
      std::snprintf(text, sizeof(text), "eps ** alpha = %g ** %g = %g must be in [%g, %g] (priorities that neither "
                    "underflow to 0 nor overflow the total)", eps, alpha, floor, std::numeric_limits<double>::min(), max_leaf);
      throw std::invalid_argument(text);
    }
  }
}

int64_t MemoryConfig::slot_bytes() const {
  // obs_frame_ action_ reward_ flags_ history_ stream_ next_, and the two trees' leaves and nodes.
  return static_cast<int64_t>(sizeof(int64_t) + sizeof(int32_t) + sizeof(float) + 2 * sizeof(uint8_t) +
                              sizeof(uint16_t) + sizeof(int64_t) +
                              (prioritized ? 2 * sizeof(double) + 2 * sizeof(double) : 0));
}

ReplayMemory::ReplayMemory(const MemoryConfig& config)
    : config_((config.validate(), config)),
      rng_(config.seed),
      obs_frame_(static_cast<size_t>(config.capacity), 0),
      action_(static_cast<size_t>(config.capacity), 0),
      reward_(static_cast<size_t>(config.capacity), 0.0f),
      flags_(static_cast<size_t>(config.capacity), 0),
      history_(static_cast<size_t>(config.capacity), 0),
      stream_(static_cast<size_t>(config.capacity), 0),
      next_(static_cast<size_t>(config.capacity), -1) {
  // The frame stores share one chunk budget, so the memory the streams keep
  // beyond their live frames (a partial chunk at each end, spares) stays that
  // of a single store however many streams there are.
  const size_t chunk_bytes = FrameStore::kDefaultChunkBytes / static_cast<size_t>(config_.streams);
  for (int64_t s = 0; s < config_.streams; ++s) {
    streams_.emplace_back(static_cast<size_t>(config_.frame_bytes()), chunk_bytes);
    streams_.back().pending.reserve(static_cast<size_t>(config_.n_step - 1));
  }
  if (config_.prioritized) {
    sum_tree_ = std::make_unique<FenwickTree>(config_.capacity);
    min_tree_ = std::make_unique<MinTree>(config_.capacity);
  }
}

std::string ReplayMemory::on_stream(int64_t stream) const {
  return config_.streams == 1 ? std::string() : " on stream " + std::to_string(stream);
}

void ReplayMemory::check_stream(int64_t stream) const {
  if (stream < 0 || stream >= config_.streams)
    throw std::out_of_range("stream must be in [0, " + std::to_string(config_.streams) + "), got " +
                            std::to_string(stream));
}

void ReplayMemory::check_can_append(int64_t action, double reward, int64_t stream, int64_t frames) const {
  if (action < 0 || action > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("action must be in [0, 2^31), got " + std::to_string(action));
  if (!(std::fabs(reward) <= std::numeric_limits<float>::max()))
    throw std::invalid_argument("reward must be finite (as a float32), got " + std::to_string(reward));
  const Stream& st = streams_[static_cast<size_t>(stream)];
  if (!st.episode_open)
    throw std::invalid_argument(st.have_obs ? "append after the episode ended" + on_stream(stream) +
                                                  ": call start_episode(frame) first"
                                            : "append before start_episode" + on_stream(stream) +
                                                  ": call start_episode(frame) with the observation after reset first");
  check_frame_numbers_left(st, frames);
}

void ReplayMemory::check_has_observation(int64_t stream) const {
  if (!streams_[static_cast<size_t>(stream)].have_obs)
    throw std::invalid_argument("no observation yet" + on_stream(stream) + ": call start_episode(frame) first");
}

bool ReplayMemory::is_pending(int64_t id) const {
  if (pending_ == 0) return false;
  return streams_[stream_[static_cast<size_t>(slot(id))]].pending.contains(id);
}

int64_t ReplayMemory::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return appended_ - live_lo() - pending_;
}

int64_t ReplayMemory::transitions_appended() const {
  std::lock_guard<std::mutex> lock(mu_);
  return appended_;
}

void ReplayMemory::set_leaf(int64_t id, double value) {
  const int64_t s = slot(id);
  sum_tree_->set(s, value);
  min_tree_->set(s, value > 0.0 ? value : kInfinity);
}

void ReplayMemory::make_sampleable(int64_t id) {
  if (sum_tree_) set_leaf(id, std::pow(max_priority_, config_.alpha));
}

void ReplayMemory::end_episode(Stream& st) {
  st.episode_open = false;
  for (size_t i = 0; i < st.pending.size(); ++i) make_sampleable(st.pending.at(i));  // oldest first
  pending_ -= static_cast<int64_t>(st.pending.size());
  st.pending.clear();
}

void ReplayMemory::release_frames(int64_t stream) {
  Stream& st = streams_[static_cast<size_t>(stream)];
  int64_t keep = st.have_obs ? st.cur_frame - st.cur_history : st.frames.end();
  if (st.oldest_id >= 0) {
    const size_t s = static_cast<size_t>(slot(st.oldest_id));
    keep = std::min(keep, obs_frame_[s] - history_[s]);
  }
  st.frames.release_before(keep);
}

void ReplayMemory::check_frame_numbers_left(const Stream& st, int64_t frames) const {
  if (st.frames.end() >= kMaxCount - frames)
    throw std::overflow_error("replay memory has used up its 2^62 frame numbers");
}

void ReplayMemory::evict_oldest() {
  // Called by append before it reuses the slot of id appended_ - capacity, the
  // oldest live id; all later ids stay live, so its stream's next one is live too.
  const int64_t id = appended_ - config_.capacity;
  const size_t s = static_cast<size_t>(slot(id));
  Stream& st = streams_[stream_[s]];
  st.oldest_id = next_[s];
  if (st.newest_id == id) st.newest_id = -1;
  if (!st.pending.empty() && st.pending.front() == id) {
    st.pending.pop_front();
    --pending_;
  }
}

void ReplayMemory::start_episode(const uint8_t* frame, int64_t stream) {
  check_stream(stream);
  std::lock_guard<std::mutex> lock(mu_);
  check_frame_numbers_left(streams_[static_cast<size_t>(stream)], 1);
  start_episode_locked(frame, stream);
}

void ReplayMemory::start_episode_locked(const uint8_t* frame, int64_t stream) {
  Stream& st = streams_[static_cast<size_t>(stream)];
  // The only step that can throw (allocation) comes first; nothing below throws.
  const int64_t first_frame = st.frames.push(frame);
  if (st.episode_open && st.episode_steps > 0) {
    // The episode in progress is cut off: its last step becomes a truncation, so
    // its pending n-step transitions bootstrap from its true last observation.
    if (st.newest_id >= 0) flags_[static_cast<size_t>(slot(st.newest_id))] |= kTruncated;
    end_episode(st);
  }
  st.cur_frame = first_frame;
  st.cur_history = 0;
  st.episode_steps = 0;
  st.episode_open = true;
  st.have_obs = true;
  release_frames(stream);
}

void ReplayMemory::append(int64_t action, double reward, const uint8_t* frame, bool terminated, bool truncated,
                          int64_t stream) {
  check_stream(stream);
  std::lock_guard<std::mutex> lock(mu_);
  check_can_append(action, reward, stream, 1);
  append_locked(action, static_cast<float>(reward), frame, terminated, truncated, stream);
}

void ReplayMemory::append_batch(const int64_t* actions, const float* rewards, const uint8_t* frames,
                                const uint8_t* terminated, const uint8_t* truncated, const uint8_t* reset_frames) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int64_t i = 0; i < config_.streams; ++i) {
    const bool reset = reset_frames != nullptr && (terminated[i] != 0 || truncated[i] != 0);
    try {
      check_can_append(actions[i], rewards[i], i, reset ? 2 : 1);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("append_batch row " + std::to_string(i) + ": " + e.what());
    }
  }
  const size_t frame_bytes = static_cast<size_t>(config_.frame_bytes());
  for (int64_t i = 0; i < config_.streams; ++i) {
    const size_t row = static_cast<size_t>(i) * frame_bytes;
    const bool ended = terminated[i] != 0 || truncated[i] != 0;
    append_locked(actions[i], rewards[i], frames + row, terminated[i] != 0, truncated[i] != 0, i);
    if (ended && reset_frames != nullptr) start_episode_locked(reset_frames + row, i);
  }
}

void ReplayMemory::append_locked(int64_t action, float reward, const uint8_t* frame, bool terminated, bool truncated,
                                 int64_t stream) {
  Stream& st = streams_[static_cast<size_t>(stream)];
  // The frame push (allocation) is the only step that can throw; nothing after it does.
  const int64_t next_frame = st.frames.push(frame);
  const int64_t id = appended_;
  const size_t s = static_cast<size_t>(slot(id));
  const int64_t evicted_stream = id >= config_.capacity ? stream_[s] : -1;
  if (evicted_stream >= 0) evict_oldest();
  obs_frame_[s] = st.cur_frame;
  history_[s] = static_cast<uint8_t>(st.cur_history);
  action_[s] = static_cast<int32_t>(action);
  reward_[s] = static_cast<float>(reward);
  flags_[s] = static_cast<uint8_t>((terminated ? kTerminated : 0) | (truncated ? kTruncated : 0));
  stream_[s] = static_cast<uint16_t>(stream);
  next_[s] = -1;
  if (st.newest_id >= 0) next_[static_cast<size_t>(slot(st.newest_id))] = id;
  if (st.oldest_id < 0) st.oldest_id = id;
  st.newest_id = id;
  st.cur_frame = next_frame;
  st.cur_history = std::min(st.cur_history + 1, config_.stack - 1);
  ++st.episode_steps;
  // Priorities: the slot still holds the evicted id's; it gets the max priority if
  // the new id is sampleable at once, else 0 (one tree update, not two).
  if (terminated || truncated) {
    end_episode(st);
    make_sampleable(id);
  } else if (config_.n_step == 1) {
    make_sampleable(id);
  } else {
    if (sum_tree_) set_leaf(id, 0.0);
    // The list holds the newest min(n - 1, steps) of the episode, less evicted ones
    // (always its oldest): when it is full, its front now has its n - 1 later steps.
    int64_t ready = -1;
    if (st.pending.size() == st.pending.capacity()) {
      ready = st.pending.front();
      st.pending.pop_front();
      --pending_;
    }
    st.pending.push_back(id);
    ++pending_;
    if (ready >= 0) make_sampleable(ready);
  }
  ++appended_;
  release_frames(stream);
  if (evicted_stream >= 0 && evicted_stream != stream) release_frames(evicted_stream);
}

void ReplayMemory::write_state(const FrameStore& frames, int64_t frame, int64_t history, uint8_t* out) const {
  const size_t bytes = frames.frame_bytes();
  for (int64_t k = 0; k < config_.stack; ++k) {
    const int64_t back = std::min(config_.stack - 1 - k, history);
    std::memcpy(out + static_cast<size_t>(k) * bytes, frames.get(frame - back), bytes);
  }
}

void ReplayMemory::current_state(uint8_t* out, int64_t stream) const {
  check_stream(stream);
  std::lock_guard<std::mutex> lock(mu_);
  check_has_observation(stream);
  const Stream& st = streams_[static_cast<size_t>(stream)];
  write_state(st.frames, st.cur_frame, st.cur_history, out);
}

void ReplayMemory::current_states(uint8_t* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (int64_t i = 0; i < config_.streams; ++i) check_has_observation(i);
  const size_t state_bytes = static_cast<size_t>(config_.stack * config_.frame_bytes());
  for (int64_t i = 0; i < config_.streams; ++i) {
    const Stream& st = streams_[static_cast<size_t>(i)];
    write_state(st.frames, st.cur_frame, st.cur_history, out + static_cast<size_t>(i) * state_bytes);
  }
}

void ReplayMemory::fill_item(int64_t id, int64_t b, const BatchView& out) const {
  const int64_t s = slot(id);
  const FrameStore& frames = streams_[stream_[static_cast<size_t>(s)]].frames;
  const size_t frame_bytes = frames.frame_bytes();
  const size_t state_bytes = static_cast<size_t>(config_.stack) * frame_bytes;
  out.ids[b] = id;
  out.actions[b] = action_[s];
  if (out.next_states == nullptr) {  // shared layout, n_step == 1 (see BatchView)
    uint8_t* row = out.states + static_cast<size_t>(b) * (state_bytes + frame_bytes);
    write_state(frames, obs_frame_[s], history_[s], row);
    std::memcpy(row + state_bytes, frames.get(obs_frame_[s] + 1), frame_bytes);
    const bool terminated = flags_[s] & kTerminated;
    out.rewards[b] = reward_[s];
    out.dones[b] = terminated ? 1.0f : 0.0f;
    out.discounts[b] = terminated ? 0.0f : static_cast<float>(config_.gamma);
    return;
  }
  write_state(frames, obs_frame_[s], history_[s], out.states + static_cast<size_t>(b) * state_bytes);

  // Follows the stream's links: t_0 = id, t_{k+1} = next_[t_k] (see the header).
  double ret = 0.0, discount = 1.0;
  bool terminated = false;
  int64_t last = id;
  for (int64_t k = 0; k < config_.n_step; ++k) {
    if (k > 0) last = next_[static_cast<size_t>(slot(last))];
    const int64_t sl = slot(last);
    ret += discount * static_cast<double>(reward_[sl]);
    discount *= config_.gamma;
    if (flags_[sl] & kTerminated) {
      terminated = true;
      break;
    }
    if (flags_[sl] & kTruncated) break;
  }
  const int64_t sl = slot(last);
  write_state(frames, obs_frame_[sl] + 1, std::min<int64_t>(history_[sl] + 1, config_.stack - 1),
              out.next_states + static_cast<size_t>(b) * state_bytes);
  out.rewards[b] = static_cast<float>(ret);
  out.dones[b] = terminated ? 1.0f : 0.0f;
  out.discounts[b] = terminated ? 0.0f : static_cast<float>(discount);
}

void ReplayMemory::sample(int64_t batch, double beta, const BatchView& out) {
  if (batch < 1) throw std::invalid_argument("batch_size must be >= 1, got " + std::to_string(batch));
  if (config_.prioritized && (!(beta >= 0.0) || !std::isfinite(beta)))
    throw std::invalid_argument("beta must be finite and >= 0, got " + std::to_string(beta));
  if (out.next_states == nullptr && config_.n_step != 1)
    throw std::invalid_argument("the shared frame layout needs n_step == 1");
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t lo = live_lo();
  const int64_t count = appended_ - lo - pending_;
  if (count == 0)
    throw std::out_of_range("cannot sample from an empty replay memory (" + std::to_string(appended_) +
                            " transitions appended, none sampleable yet)");
  // First choose every id, then copy: the copy of item b runs while the frames
  // of item b + 1 are being prefetched, which hides most of the DRAM latency of
  // reading frames scattered across the store.
  if (!sum_tree_) {
    // The k-th live id that is not pending: step over the pending ids at or below it.
    sorted_pending_.clear();
    for (const Stream& st : streams_) {
      for (size_t i = 0; i < st.pending.size(); ++i) sorted_pending_.push_back(st.pending.at(i));
    }
    std::sort(sorted_pending_.begin(), sorted_pending_.end());
    for (int64_t b = 0; b < batch; ++b) {
      int64_t id = lo + static_cast<int64_t>(rng_.below(static_cast<uint64_t>(count)));
      for (int64_t p : sorted_pending_) {
        if (p > id) break;
        ++id;
      }
      out.ids[b] = id;
    }
  } else {
    // Stratified: one draw in each of `batch` equal segments of the total mass.
    // The leaf bounds (see the header) make the total finite and positive; rebuild
    // once if rounding says otherwise, and never sample from a broken tree.
    double total = sum_tree_->total();
    if (!(total > 0.0 && total <= std::numeric_limits<double>::max())) {
      sum_tree_->rebuild();
      total = sum_tree_->total();
      if (!(total > 0.0 && total <= std::numeric_limits<double>::max()))
        throw std::logic_error("replay memory invariant broken: priority total is " + std::to_string(total));
    }
    const double segment = total / static_cast<double>(batch);
    const double lowest = min_tree_->min();
    const int64_t capacity = config_.capacity;
    for (int64_t b = 0; b < batch; ++b) {
      const double mass = (static_cast<double>(b) + rng_.uniform()) * segment;
      int64_t leaf = std::min(sum_tree_->find(mass), capacity - 1);
      // Rounding can land past the last positive leaf or on a zero (pending) one;
      // step back to the nearest positive leaf. Some leaf is positive since count > 0,
      // so this ends within capacity steps; the bound only guards a broken invariant.
      for (int64_t steps = 0; !(sum_tree_->get(leaf) > 0.0); ++steps) {
        if (steps == capacity) throw std::logic_error("replay memory invariant broken: no positive priority");
        leaf = leaf == 0 ? capacity - 1 : leaf - 1;
      }
      out.ids[b] = lo + (leaf - slot(lo) + capacity) % capacity;
      // w_i = (N P(i))^-beta / max_j (N P(j))^-beta = (p_i / p_min)^-beta
      out.weights[b] = static_cast<float>(std::pow(sum_tree_->get(leaf) / lowest, -beta));
    }
  }
  constexpr int64_t kPrefetchItems = 1;  // items ahead; 2 and 4 measured no better
  for (int64_t b = 0; b < std::min(batch, kPrefetchItems); ++b) prefetch_item(out.ids[b]);
  for (int64_t b = 0; b < batch; ++b) {
    if (b + kPrefetchItems < batch) prefetch_item(out.ids[b + kPrefetchItems]);
    fill_item(out.ids[b], b, out);
  }
}

void ReplayMemory::prefetch_item(int64_t id) const {
  // The state's frames and the next observation: frames obs - history .. obs + 1.
  const int64_t s = slot(id);
  const FrameStore& frames = streams_[stream_[static_cast<size_t>(s)]].frames;
  const size_t bytes = frames.frame_bytes();
  for (int64_t g = obs_frame_[s] - history_[s]; g <= obs_frame_[s] + 1; ++g) {
    const char* frame = reinterpret_cast<const char*>(frames.get(g));
    for (size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(frame + offset);
  }
}

void ReplayMemory::update_priorities(const int64_t* ids, const double* priorities, int64_t count) {
  if (!sum_tree_) throw std::invalid_argument("update_priorities needs a prioritized memory");
  // Validate every item (the derived p^alpha included), then commit: an error changes nothing.
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(priorities[i]) || priorities[i] < 0.0)
      throw std::invalid_argument("priorities must be finite and >= 0; item " + std::to_string(i) + " is " +
                                  std::to_string(priorities[i]));
    const double leaf = std::pow(priorities[i] + config_.eps, config_.alpha);
    if (!leaf_in_range(leaf)) {
      char text[256];
      std::snprintf(text, sizeof(text), "priority item %lld is %g: (p + eps) ** alpha = %g is above %g, where %lld "
                    "of them could overflow the total", static_cast<long long>(i), priorities[i], leaf,
                    sum_tree_->max_leaf(), static_cast<long long>(config_.capacity));
      throw std::invalid_argument(text);
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (int64_t i = 0; i < count; ++i) {
    if (ids[i] < 0 || ids[i] >= appended_)
      throw std::out_of_range("id " + std::to_string(ids[i]) + " was never appended (" + std::to_string(appended_) +
                              " transitions appended)");
  }
  const int64_t lo = live_lo();
  for (int64_t i = 0; i < count; ++i) {
    if (ids[i] < lo || is_pending(ids[i])) continue;  // overwritten since sampled, or still pending
    const double p = priorities[i] + config_.eps;
    max_priority_ = std::max(max_priority_, p);
    set_leaf(ids[i], std::pow(p, config_.alpha));  // in range: checked above, and pow is deterministic
  }
}

double ReplayMemory::priority_of(int64_t id) const {
  if (!sum_tree_) throw std::invalid_argument("priority_of needs a prioritized memory");
  std::lock_guard<std::mutex> lock(mu_);
  if (id < live_lo() || id >= appended_)
    throw std::out_of_range("id " + std::to_string(id) + " is not in the memory");
  return sum_tree_->get(slot(id));
}

double ReplayMemory::max_priority() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_priority_;
}

void ReplayMemory::reseed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(mu_);
  rng_.reseed(seed);
}

size_t ReplayMemory::bytes_allocated() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t per_stream = 0;  // frames and the pending-id rings
  for (const Stream& st : streams_) per_stream += st.frames.bytes_allocated() + st.pending.capacity() * sizeof(int64_t);
  return per_stream + static_cast<size_t>(config_.slot_bytes() * config_.capacity);
}

void ReplayMemory::rebuild_stream_links() {
  // Every live id in order: link it to its stream's previous one. The last
  // min(n - 1, episode steps) live ids of an open episode are pending.
  pending_ = 0;
  for (Stream& st : streams_) {
    st.oldest_id = st.newest_id = -1;
    st.pending.clear();
  }
  for (int64_t id = live_lo(); id < appended_; ++id) {
    const size_t s = static_cast<size_t>(slot(id));
    Stream& st = streams_[stream_[s]];
    next_[s] = -1;
    if (st.newest_id >= 0) next_[static_cast<size_t>(slot(st.newest_id))] = id;
    if (st.oldest_id < 0) st.oldest_id = id;
    st.newest_id = id;
    if (st.pending.capacity() == 0) continue;
    if (st.pending.size() == st.pending.capacity()) st.pending.pop_front();
    st.pending.push_back(id);
  }
  for (Stream& st : streams_) {
    const int64_t pending = st.episode_open ? std::min(config_.n_step - 1, st.episode_steps) : 0;
    while (static_cast<int64_t>(st.pending.size()) > pending) st.pending.pop_front();
    pending_ += static_cast<int64_t>(st.pending.size());
  }
}

void ReplayMemory::check_invariants() const {
  std::lock_guard<std::mutex> lock(mu_);
  auto fail = [](const std::string& what) { throw std::logic_error("replay memory invariant broken: " + what); };
  const int64_t live_lo_id = live_lo();
  // Counters first, so that the frame arithmetic below cannot overflow.
  if (appended_ < 0 || appended_ >= kMaxCount || pending_ < 0) fail("counters out of range");
  // Each stream's live ids in order, rebuilt from stream_ alone.
  std::vector<std::vector<int64_t>> chains(streams_.size());
  for (int64_t id = live_lo_id; id < appended_; ++id) {
    const size_t s = static_cast<size_t>(slot(id));
    if (stream_[s] >= streams_.size()) fail("stream out of range at id " + std::to_string(id));
    chains[stream_[s]].push_back(id);
  }
  int64_t pending_total = 0;
  for (size_t i = 0; i < streams_.size(); ++i) {
    const Stream& st = streams_[i];
    const std::vector<int64_t>& chain = chains[i];
    const std::string where = " (stream " + std::to_string(i) + ")";
    if (st.frames.begin() < 0 || st.frames.end() < st.frames.begin() || st.frames.end() >= kMaxCount)
      fail("frame counters out of range" + where);
    if (static_cast<int64_t>(chain.size()) > st.frames.end()) fail("more transitions than frames" + where);
    if (!st.have_obs && (!chain.empty() || st.frames.end() != 0 || st.episode_open))
      fail("transitions without an observation" + where);
    if (st.have_obs && st.cur_frame != st.frames.end() - 1) fail("newest observation is not the newest frame" + where);
    if (st.cur_history < 0 || st.cur_history > config_.stack - 1) fail("history of the newest observation out of range" + where);
    if (st.have_obs && st.cur_frame - st.cur_history < st.frames.begin()) fail("frames of the newest state released" + where);
    if (st.episode_steps < 0 || st.episode_steps > appended_) fail("episode steps out of range" + where);
    if (st.cur_history != std::min(st.episode_steps, config_.stack - 1))
      fail("newest history disagrees with the episode's steps" + where);
    if (st.oldest_id != (chain.empty() ? -1 : chain.front()) || st.newest_id != (chain.empty() ? -1 : chain.back()))
      fail("oldest or newest live id wrong" + where);
    // The episode in progress is the stream's last episode_steps transitions: the live
    // ones among them end no episode, and the one before them (if live) ends one.
    const int64_t open_steps = st.episode_open ? st.episode_steps : 0;
    const int64_t first_open = static_cast<int64_t>(chain.size()) - open_steps;  // index into chain
    for (size_t k = 0; k < chain.size(); ++k) {
      const int64_t id = chain[k];
      const size_t s = static_cast<size_t>(slot(id));
      if (history_[s] > config_.stack - 1) fail("history out of range at id " + std::to_string(id));
      if (obs_frame_[s] < st.frames.begin() + history_[s]) fail("state frames released for live id " + std::to_string(id));
      if (obs_frame_[s] >= st.frames.end() - 1) fail("next frame missing for id " + std::to_string(id));
      if (flags_[s] & ~(kTerminated | kTruncated)) fail("unknown flag bits at id " + std::to_string(id));
      if (action_[s] < 0) fail("negative action at id " + std::to_string(id));
      if (!std::isfinite(reward_[s])) fail("reward not finite at id " + std::to_string(id));
      const bool ended = flags_[s] & (kTerminated | kTruncated);
      const int64_t index = static_cast<int64_t>(k);
      if (index >= first_open && ended) fail("episode in progress holds an ended transition at id " + std::to_string(id));
      if (index == first_open - 1 && !ended)
        fail("the transition before the episode in progress does not end an episode at id " + std::to_string(id));
      const int64_t after = k + 1 < chain.size() ? chain[k + 1] : -1;
      if (next_[s] != after) fail("link to the stream's next id wrong at id " + std::to_string(id));
      // Its successor observation: the next transition's, or (newest id) the stream's newest.
      if (!ended) {
        const int64_t frame = after >= 0 ? obs_frame_[static_cast<size_t>(slot(after))] : st.cur_frame;
        const int64_t history = after >= 0 ? history_[static_cast<size_t>(slot(after))] : st.cur_history;
        if (frame != obs_frame_[s] + 1)
          fail(after >= 0 ? "episode frames not consecutive at id " + std::to_string(id)
                          : "the newest transition does not lead to the newest observation" + where);
        if (history != std::min<int64_t>(history_[s] + 1, config_.stack - 1))
          fail("history does not grow by one at id " + std::to_string(id));
      }
      if (ended && after >= 0 && (obs_frame_[static_cast<size_t>(slot(after))] <= obs_frame_[s] + 1 ||
                                  history_[static_cast<size_t>(slot(after))] != 0))
        fail("episode after id " + std::to_string(id) + " does not start afresh");
    }
    // Pending: the newest min(n - 1, episode steps) ids of an open episode that are still live.
    const size_t expected = std::min(chain.size(), static_cast<size_t>(
        st.episode_open ? std::min(config_.n_step - 1, st.episode_steps) : 0));
    bool pending_ok = st.pending.size() == expected;
    for (size_t k = 0; pending_ok && k < expected; ++k) pending_ok = st.pending.at(k) == chain[chain.size() - expected + k];
    if (!pending_ok) fail("pending ids wrong" + where);
    pending_total += static_cast<int64_t>(expected);
  }
  if (pending_total != pending_) fail("pending count wrong");
  if (sum_tree_) {
    for (int64_t id = live_lo_id; id < appended_; ++id) {
      const int64_t s = slot(id);
      const bool can_sample = !is_pending(id);
      const double leaf = sum_tree_->get(s);
      if (can_sample != (leaf > 0.0)) fail("priority of id " + std::to_string(id) + " disagrees with sampleability");
      if (leaf > 0.0 && !leaf_in_range(leaf)) fail("priority of id " + std::to_string(id) + " out of range");
      if (min_tree_->get(s) != (leaf > 0.0 ? leaf : kInfinity)) fail("min tree leaf differs at id " + std::to_string(id));
    }
  }
  if (sum_tree_) {
    if (!(max_priority_ > 0.0) || !leaf_in_range(std::pow(max_priority_, config_.alpha))) fail("max priority out of range");
    for (int64_t id = appended_; id < config_.capacity; ++id) {
      if (sum_tree_->get(id) != 0.0 || min_tree_->get(id) != kInfinity) fail("empty slot holds a priority");
    }
    sum_tree_->check_invariants();
    min_tree_->check_invariants();
  }
}

// Everything save and load know about a snapshot file (layout at the top of this file).
struct ReplayMemory::Snapshot {
  // <stream>: what a snapshot keeps of one stream (flags as i64 0 or 1).
  struct StreamHeader {
    int64_t frames_begin = 0, frames_end = 0, episode_open = 0, have_obs = 0, cur_frame = -1, cur_history = 0,
            episode_steps = 0;
  };
  // Everything between the prologue and the header checksum.
  struct Header {
    uint32_t version = kSnapshotOneStream;
    MemoryConfig options;
    std::string bad_flag;  // load: a bool option stored as neither 0 nor 1 (refused after the checksum)
    int64_t appended = 0;
    double max_priority = 1.0;
    std::array<uint64_t, 4> rng{};
    std::vector<StreamHeader> streams;  // one per stream, version 1 included
  };
  struct PriorityLeaves {};  // the sum tree's leaves, p^alpha per slot

  // An option's type on disk: a bool is an int64 0 or 1, every other option is stored as it is.
  template <typename T>
  using Stored = std::conditional_t<std::is_same_v<T, bool>, int64_t, T>;

  // The one statement of the header's order and types. Io is HeaderWriter (save),
  // HeaderReader (load) or HeaderSize (counts the bytes); H is Header or const Header.
  template <typename Io, typename S>
  static void walk_stream(Io& io, S& s) {
    io.field(s.frames_begin);
    io.field(s.frames_end);
    io.field(s.episode_open);
    io.field(s.have_obs);
    io.field(s.cur_frame);
    io.field(s.cur_history);
    io.field(s.episode_steps);
  }
  template <typename Io, typename H>
  static void walk_header(Io& io, H& h) {
    MemoryConfig::for_each_option([&](const char* name, auto member, uint32_t since) {
      if (h.version >= since) io.option(name, h.options.*member);
    });
    io.streams(h.streams, h.options.streams);  // load: checks the count, then allocates
    io.field(h.appended);
    if (h.version == kSnapshotOneStream) walk_stream(io, h.streams[0]);
    io.field(h.max_priority);
    for (auto& word : h.rng) io.field(word);
    if (h.version != kSnapshotOneStream) {
      for (auto& s : h.streams) walk_stream(io, s);
    }
  }

  struct HeaderWriter {
    SnapshotWriter& out;
    template <typename T>
    void field(const T& value) { out.value<T>(value); }
    template <typename T>
    void option(const char*, const T& value) {
      static_assert(std::is_same_v<T, int64_t> || std::is_same_v<T, uint64_t> || std::is_same_v<T, double> ||
                        std::is_same_v<T, bool>,
                    "an option's type must have the same size on every machine (see REPLAY_MEMORY_OPTIONS)");
      out.value<Stored<T>>(static_cast<Stored<T>>(value));
    }
    void streams(const std::vector<StreamHeader>&, int64_t) {}
  };
  struct HeaderReader {
    SnapshotReader& in;
    std::string& bad_flag;
    template <typename T>
    void field(T& value) { value = in.value<T>(); }
    template <typename T>
    void option(const char* name, T& value) {
      const auto stored = in.value<Stored<T>>();
      if constexpr (std::is_same_v<T, bool>) {
        if (stored != 0 && stored != 1 && bad_flag.empty()) bad_flag = name;
      }
      value = static_cast<T>(stored);
    }
    void streams(std::vector<StreamHeader>& streams, int64_t count) {
      // Bound the per-stream headers by the file itself before allocating them.
      if (count < 1 || count > kMaxStreams || static_cast<uint64_t>(count) > in.file_size() / stream_header_bytes())
        throw in.corrupt("impossible number of streams " + std::to_string(count));
      streams.resize(static_cast<size_t>(count));
    }
  };
  struct HeaderSize {
    size_t bytes = 0;
    template <typename T>
    void field(const T&) { bytes += sizeof(T); }
    template <typename T>
    void option(const char*, const T&) { bytes += sizeof(Stored<T>); }
    void streams(const std::vector<StreamHeader>&, int64_t) {}
  };
  static size_t stream_header_bytes() {
    const StreamHeader any;
    HeaderSize size;
    walk_stream(size, any);
    return size.bytes;
  }
  // Bytes from the start of the file through the header checksum.
  static size_t header_bytes(const Header& h) {
    HeaderSize size;
    walk_header(size, h);
    return kPrologueBytes + size.bytes + sizeof(uint64_t);
  }

  // The per-transition arrays in file order, each one value per live id: calls visit with
  // a pointer to the member array, or with PriorityLeaves.
  template <typename Visit>
  static void for_each_array(uint32_t version, bool prioritized, Visit&& visit) {
    visit(&ReplayMemory::obs_frame_);
    visit(&ReplayMemory::action_);
    visit(&ReplayMemory::reward_);
    visit(&ReplayMemory::flags_);
    visit(&ReplayMemory::history_);
    if (version != kSnapshotOneStream) visit(&ReplayMemory::stream_);  // version 1: every id is on stream 0
    if (prioritized) visit(PriorityLeaves{});
  }
  template <typename T>
  static constexpr size_t value_bytes(std::vector<T> ReplayMemory::*) { return sizeof(T); }
  static constexpr size_t value_bytes(PriorityLeaves) { return sizeof(double); }
  template <typename Array>
  static constexpr bool is_leaves = std::is_same_v<Array, PriorityLeaves>;

  // Calls f(first slot, slots) for the runs of slots holding the live ids, in id order: at
  // most two, [slot(lo), capacity) and [0, slot(appended)), when the live ids wrap.
  template <typename F>
  static void for_each_live_run(const ReplayMemory& m, F&& f) {
    for (int64_t id = m.live_lo(); id < m.appended_;) {
      const int64_t s = m.slot(id);
      const int64_t n = std::min(m.appended_ - id, m.config_.capacity - s);
      f(static_cast<size_t>(s), static_cast<size_t>(n));
      id += n;
    }
  }

  static Header header_of(const ReplayMemory& m);
  static void write(const ReplayMemory& m, SnapshotWriter& w);
  // load's steps, in order. Nothing is allocated for the memory until read_header,
  // check_header and check_file_size have passed; the memory is then built and seen by
  // no one until load returns it, so any throw discards it whole.
  static Header read_header(SnapshotReader& in);
  static void check_header(const SnapshotReader& in, const Header& h);
  static void check_file_size(const SnapshotReader& in, const Header& h);
  static std::vector<double> read_body(SnapshotReader& in, const Header& h, ReplayMemory& m);
  static void restore_state(const SnapshotReader& in, const Header& h, const std::vector<double>& leaves,
                            ReplayMemory& m);
  static void check_structure(const SnapshotReader& in, const Header& h, ReplayMemory& m);
};

ReplayMemory::Snapshot::Header ReplayMemory::Snapshot::header_of(const ReplayMemory& m) {
  Header h;
  h.version = m.config_.streams == 1 ? kSnapshotOneStream : kSnapshotStreams;  // one stream: what it always was
  h.options = m.config_;
  h.appended = m.appended_;
  h.max_priority = m.max_priority_;
  h.rng = m.rng_.state();
  for (const Stream& st : m.streams_) {
    h.streams.push_back({st.frames.begin(), st.frames.end(), st.episode_open ? 1 : 0, st.have_obs ? 1 : 0,
                         st.cur_frame, st.cur_history, st.episode_steps});
  }
  return h;
}

void ReplayMemory::Snapshot::write(const ReplayMemory& m, SnapshotWriter& w) {
  const Header h = header_of(m);
  w.bytes(kMagic, sizeof(kMagic));
  w.value<uint32_t>(h.version);
  w.value<uint32_t>(kEndianMark);
  HeaderWriter header{w};
  walk_header(header, h);
  w.checkpoint_digest();
  for_each_array(h.version, h.options.prioritized, [&](auto array) {
    for_each_live_run(m, [&](size_t s, size_t n) {
      if constexpr (is_leaves<decltype(array)>) {
        for (size_t i = s; i < s + n; ++i) w.value<double>(m.sum_tree_->get(static_cast<int64_t>(i)));
      } else {
        w.bytes(&(m.*array)[s], n * value_bytes(array));
      }
    });
  });
  for (const Stream& st : m.streams_) {
    for (int64_t g = st.frames.begin(); g < st.frames.end(); ++g) w.bytes(st.frames.get(g), st.frames.frame_bytes());
  }
}

void ReplayMemory::save(const std::string& path) const {
  check_path(path);
  std::lock_guard<std::mutex> lock(mu_);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    SnapshotWriter w(tmp);
    Snapshot::write(*this, w);
    w.finish();
    if (std::rename(tmp.c_str(), path.c_str()) != 0) throw FileError(errno, errno_text("cannot rename onto", path));
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

std::unique_ptr<ReplayMemory> ReplayMemory::load(const std::string& path) {
  check_path(path);
  SnapshotReader in(path);
  const Snapshot::Header header = Snapshot::read_header(in);
  Snapshot::check_header(in, header);
  Snapshot::check_file_size(in, header);
  auto memory = std::make_unique<ReplayMemory>(header.options);
  const std::vector<double> leaves = Snapshot::read_body(in, header, *memory);
  Snapshot::restore_state(in, header, leaves, *memory);
  Snapshot::check_structure(in, header, *memory);
  return memory;
}

// The prologue and the header, through its checksum.
ReplayMemory::Snapshot::Header ReplayMemory::Snapshot::read_header(SnapshotReader& in) {
  Header smallest;  // a version 1 header: one stream
  smallest.streams.resize(1);
  const bool too_short = in.file_size() < header_bytes(smallest) + sizeof(uint64_t);
  char magic[sizeof(kMagic)] = {};
  if (in.file_size() >= sizeof(kMagic)) in.bytes(magic, sizeof(magic));
  if (in.file_size() < sizeof(kMagic) || std::memcmp(magic, kMagic, sizeof(kMagic)) != 0) throw in.not_a_snapshot();
  if (too_short) throw in.truncated();
  Header h;
  h.version = in.value<uint32_t>();
  if (h.version != kSnapshotOneStream && h.version != kSnapshotStreams)
    throw FormatError(in.where() + " has format version " + std::to_string(h.version) + "; this build reads versions " +
                      std::to_string(kSnapshotOneStream) + " and " + std::to_string(kSnapshotStreams));
  if (in.value<uint32_t>() != kEndianMark) throw FormatError(in.where() + " was written with another byte order");
  HeaderReader reader{in, h.bad_flag};
  walk_header(reader, h);
  in.verify_header_checksum();
  return h;
}

// Every header value in range before anything is allocated: counts below kMaxCount (so no
// later arithmetic overflows) and options the constructor would take.
void ReplayMemory::Snapshot::check_header(const SnapshotReader& in, const Header& h) {
  if (!h.bad_flag.empty()) throw in.corrupt("bad " + h.bad_flag + " flag");
  if (h.appended < 0 || h.appended >= kMaxCount) throw in.corrupt("impossible header values");
  for (const StreamHeader& s : h.streams) {
    if (s.frames_begin < 0 || s.frames_end < s.frames_begin || s.frames_end >= kMaxCount ||
        (s.episode_open != 0 && s.episode_open != 1) || (s.have_obs != 0 && s.have_obs != 1) || s.episode_steps < 0 ||
        s.episode_steps > h.appended || s.cur_history < 0 || s.cur_history > kMaxStack || s.cur_frame < -1 ||
        s.cur_frame >= kMaxCount)
      throw in.corrupt("impossible header values");
  }
  try {
    h.options.validate();
  } catch (const std::invalid_argument& e) {
    throw in.corrupt(e.what());
  }
}

// Sizes bounded by the machine (the memory's arrays) and by the file, which must hold
// exactly the arrays and frames the header describes.
void ReplayMemory::Snapshot::check_file_size(const SnapshotReader& in, const Header& h) {
  const MemoryConfig& config = h.options;
  const uint64_t file_bytes = in.file_size(), frame_bytes = static_cast<uint64_t>(config.frame_bytes());
  uint64_t frames = 0;
  for (const StreamHeader& s : h.streams) {
    frames += static_cast<uint64_t>(s.frames_end - s.frames_begin);
    if (frames > file_bytes / frame_bytes) throw in.truncated();
  }
  if (config.capacity > physical_memory_bytes() / config.slot_bytes())
    throw in.corrupt("capacity " + std::to_string(config.capacity) + " needs " +
                     std::to_string(config.capacity * config.slot_bytes()) + " bytes, more than this machine's " +
                     std::to_string(physical_memory_bytes()) + " bytes of memory");
  uint64_t bytes_per_id = 0;
  for_each_array(h.version, config.prioritized, [&](auto array) { bytes_per_id += value_bytes(array); });
  const uint64_t live = static_cast<uint64_t>(std::min(h.appended, config.capacity));
  if (live > file_bytes / bytes_per_id) throw in.truncated();
  const uint64_t expected = header_bytes(h) + live * bytes_per_id + frames * frame_bytes + sizeof(uint64_t);
  if (file_bytes < expected)
    throw in.truncated(": " + std::to_string(file_bytes) + " bytes, expected " + std::to_string(expected));
  if (file_bytes > expected) throw in.corrupt(std::to_string(file_bytes - expected) + " unexpected bytes after the data");
}

// The arrays and frames, through the file's checksum; returns the priority leaves
// (empty for a uniform memory), which restore_state checks before the trees take them.
std::vector<double> ReplayMemory::Snapshot::read_body(SnapshotReader& in, const Header& h, ReplayMemory& m) {
  m.appended_ = h.appended;  // first: the live runs below follow it
  std::vector<double> leaves(h.options.prioritized ? static_cast<size_t>(h.options.capacity) : 0, 0.0);
  for_each_array(h.version, h.options.prioritized, [&](auto array) {
    for_each_live_run(m, [&](size_t s, size_t n) {
      if constexpr (is_leaves<decltype(array)>) {
        in.bytes(&leaves[s], n * value_bytes(array));
      } else {
        in.bytes(&(m.*array)[s], n * value_bytes(array));
      }
    });
  });
  for (size_t i = 0; i < h.streams.size(); ++i) {
    FrameStore& store = m.streams_[i].frames;
    store.reset_to(h.streams[i].frames_begin);
    for (int64_t g = h.streams[i].frames_begin; g < h.streams[i].frames_end; ++g)
      in.bytes(store.push_uninitialized(), store.frame_bytes());
  }
  in.verify_checksum();
  return leaves;
}

// The streams' state, the RNG and the priorities (each leaf checked by the trees).
void ReplayMemory::Snapshot::restore_state(const SnapshotReader& in, const Header& h,
                                           const std::vector<double>& leaves, ReplayMemory& m) {
  for (size_t i = 0; i < h.streams.size(); ++i) {
    Stream& st = m.streams_[i];
    st.episode_open = h.streams[i].episode_open == 1;
    st.have_obs = h.streams[i].have_obs == 1;
    st.cur_frame = h.streams[i].cur_frame;
    st.cur_history = h.streams[i].cur_history;
    st.episode_steps = h.streams[i].episode_steps;
  }
  m.rng_.set_state(h.rng);
  m.max_priority_ = h.max_priority;
  if (!h.options.prioritized) return;
  const double top = h.max_priority;
  if (!(top > 0.0) || !std::isfinite(top) || !m.leaf_in_range(std::pow(top, h.options.alpha)))
    throw in.corrupt("bad max priority");
  try {
    for (int64_t s = 0; s < h.options.capacity; ++s) {
      if (leaves[static_cast<size_t>(s)] > 0.0) m.set_leaf(s, leaves[static_cast<size_t>(s)]);
    }
  } catch (const std::invalid_argument&) {
    throw in.corrupt("bad priority values");
  }
  m.sum_tree_->rebuild();
}

// Structural checks last: a file can pass the checksum yet come from a broken writer.
// Then the links that are not stored, and every invariant.
void ReplayMemory::Snapshot::check_structure(const SnapshotReader& in, const Header& h, ReplayMemory& m) {
  for (size_t i = 0; i < h.streams.size(); ++i) {
    const Stream& st = m.streams_[i];
    if (st.have_obs && (st.cur_frame != h.streams[i].frames_end - 1 || st.cur_history >= h.options.stack))
      throw in.corrupt("newest observation does not match the frames");
  }
  for (int64_t id = m.live_lo(); id < m.appended_; ++id) {
    if (m.stream_[static_cast<size_t>(m.slot(id))] >= h.options.streams) throw in.corrupt("stream out of range");
  }
  m.rebuild_stream_links();
  try {
    m.check_invariants();
  } catch (const std::logic_error& e) {
    throw in.corrupt(e.what());
  }
}

TransitionLog ReplayMemory::export_log() const {
  std::lock_guard<std::mutex> lock(mu_);
  TransitionLog log;
  log.first_id = live_lo();
  const size_t count = static_cast<size_t>(appended_ - log.first_id);
  log.actions.resize(count);
  log.rewards.resize(count);
  log.terminated.resize(count);
  log.truncated.resize(count);
  log.episode_start.resize(count);
  log.streams.resize(count);
  std::vector<int64_t> previous(streams_.size(), -1);  // per stream: entry k of its latest live id so far
  for (size_t k = 0; k < count; ++k) {
    const int64_t s = slot(log.first_id + static_cast<int64_t>(k));
    const uint16_t stream = stream_[static_cast<size_t>(s)];
    log.actions[k] = action_[s];
    log.rewards[k] = reward_[s];
    log.terminated[k] = (flags_[s] & kTerminated) ? 1 : 0;
    log.truncated[k] = (flags_[s] & kTruncated) ? 1 : 0;
    log.streams[k] = stream;
    if (previous[stream] >= 0) {  // the previous transition of the same stream
      const size_t before = static_cast<size_t>(previous[stream]);
      log.episode_start[k] = (log.terminated[before] || log.truncated[before]) ? 1 : 0;
    } else {  // the stream's predecessor is gone: only the state's history tells (see TransitionLog)
      log.episode_start[k] = (history_[s] == 0 && (config_.stack > 1 || log.first_id == 0)) ? 1 : 0;
    }
    previous[stream] = static_cast<int64_t>(k);
  }
  return log;
}

}  // namespace replay
