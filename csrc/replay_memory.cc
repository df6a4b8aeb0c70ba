#include "replay_memory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

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

// Snapshot layout (native little-endian; the endian mark rejects foreign byte order).
// Version 1 (one stream; what every build before streams wrote, and still writes
// for streams == 1):
//   magic[8] version:u32 endian_mark:u32
//   config: capacity height width stack n_step:i64 gamma:f64 prioritized:i64 alpha eps:f64 seed:u64
//   state:  appended:i64 <stream> max_priority:f64 rng[4]:u64
//   header_checksum:u64 of the bytes above (checked before anything is allocated)
//   for live ids [appended - live, appended), array by array:
//           obs_frame:i64[] action:i32[] reward:f32[] flags:u8[] history:u8[] (priority:f64[])
//   frames [frames_begin, frames_end): height*width bytes each
//   checksum:u64 of every byte before it
// where <stream> = frames_begin frames_end episode_open have_obs cur_frame cur_history
// episode_steps:i64. Version 2 (streams > 1) differs in three places: config ends
// with streams:i64; state is appended:i64 max_priority:f64 rng[4]:u64 then
// <stream> for every stream; after history:u8[] comes stream:u16[]; the frames are
// those of stream 0, then stream 1, ... The links between a stream's transitions
// and its pending ids are not stored: load rebuilds them from stream:u16[].
constexpr char kMagic[8] = {'A', 'T', 'D', 'Q', 'N', 'R', 'P', 'M'};
constexpr uint32_t kVersionOneStream = 1;
constexpr uint32_t kVersionStreams = 2;
constexpr uint32_t kEndianMark = 0x01020304;
constexpr size_t kStreamHeaderBytes = 7 * 8;
constexpr size_t kHeaderBytesOneStream = 8 + 4 + 4 + 5 * 8 + 8 + 8 + 8 + 8 + 8 + 8 + kStreamHeaderBytes + 8 + 4 * 8 + 8;
constexpr size_t kHeaderBytesStreams = 8 + 4 + 4 + 5 * 8 + 8 + 8 + 8 + 8 + 8 + 8 + 8 + 8 + 4 * 8 + 8;  // + streams x <stream>

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
      throw FormatError("replay snapshot '" + path_ + "' is truncated");
    }
    checksum_.update(data, n);
  }
  template <typename T>
  T value() {
    T v;
    bytes(&v, sizeof(v));
    return v;
  }
  void verify_header_checksum(const std::string& where) {
    const uint64_t expected = checksum_.digest();
    if (value<uint64_t>() != expected) throw FormatError(where + " is corrupt: header checksum mismatch");
  }
  void verify_checksum() {
    const uint64_t expected = checksum_.digest();
    uint64_t stored;
    if (std::fread(&stored, 1, sizeof(stored), file_) != sizeof(stored))
      throw FormatError("replay snapshot '" + path_ + "' is truncated (no checksum)");
    if (stored != expected) throw FormatError("replay snapshot '" + path_ + "' is corrupt: checksum mismatch");
  }

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

void ReplayMemory::save(const std::string& path) const {
  check_path(path);
  std::lock_guard<std::mutex> lock(mu_);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  // One stream writes version 1, byte for byte what a single-stream build wrote.
  const bool single = config_.streams == 1;
  try {
    SnapshotWriter w(tmp);
    auto write_stream = [&](const Stream& st) {
      w.value<int64_t>(st.frames.begin());
      w.value<int64_t>(st.frames.end());
      w.value<int64_t>(st.episode_open ? 1 : 0);
      w.value<int64_t>(st.have_obs ? 1 : 0);
      w.value<int64_t>(st.cur_frame);
      w.value<int64_t>(st.cur_history);
      w.value<int64_t>(st.episode_steps);
    };
    w.bytes(kMagic, sizeof(kMagic));
    w.value<uint32_t>(single ? kVersionOneStream : kVersionStreams);
    w.value<uint32_t>(kEndianMark);
    w.value<int64_t>(config_.capacity);
    w.value<int64_t>(config_.height);
    w.value<int64_t>(config_.width);
    w.value<int64_t>(config_.stack);
    w.value<int64_t>(config_.n_step);
    w.value<double>(config_.gamma);
    w.value<int64_t>(config_.prioritized ? 1 : 0);
    w.value<double>(config_.alpha);
    w.value<double>(config_.eps);
    w.value<uint64_t>(config_.seed);
    if (!single) w.value<int64_t>(config_.streams);
    w.value<int64_t>(appended_);
    if (single) write_stream(streams_[0]);
    w.value<double>(max_priority_);
    for (uint64_t word : rng_.state()) w.value<uint64_t>(word);
    if (!single) {
      for (const Stream& st : streams_) write_stream(st);
    }
    w.checkpoint_digest();
    // Live ids occupy at most two runs of slots: [slot(lo), end) and [0, slot(appended)).
    const int64_t lo = live_lo();
    auto runs = [&](auto write_run) {
      int64_t id = lo;
      while (id < appended_) {
        const int64_t s = slot(id);
        const int64_t n = std::min(appended_ - id, config_.capacity - s);
        write_run(static_cast<size_t>(s), static_cast<size_t>(n));
        id += n;
      }
    };
    runs([&](size_t s, size_t n) { w.bytes(&obs_frame_[s], n * sizeof(int64_t)); });
    runs([&](size_t s, size_t n) { w.bytes(&action_[s], n * sizeof(int32_t)); });
    runs([&](size_t s, size_t n) { w.bytes(&reward_[s], n * sizeof(float)); });
    runs([&](size_t s, size_t n) { w.bytes(&flags_[s], n); });
    runs([&](size_t s, size_t n) { w.bytes(&history_[s], n); });
    if (!single) runs([&](size_t s, size_t n) { w.bytes(&stream_[s], n * sizeof(uint16_t)); });
    if (sum_tree_) {
      runs([&](size_t s, size_t n) {
        for (size_t i = s; i < s + n; ++i) w.value<double>(sum_tree_->get(static_cast<int64_t>(i)));
      });
    }
    for (const Stream& st : streams_) {
      for (int64_t g = st.frames.begin(); g < st.frames.end(); ++g) w.bytes(st.frames.get(g), st.frames.frame_bytes());
    }
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
  const std::string where = "replay snapshot '" + path + "'";
  if (in.file_size() < kHeaderBytesOneStream + sizeof(uint64_t)) {
    char magic[sizeof(kMagic)] = {};
    if (in.file_size() >= sizeof(kMagic)) in.bytes(magic, sizeof(magic));
    if (in.file_size() < sizeof(kMagic) || std::memcmp(magic, kMagic, sizeof(kMagic)) != 0)
      throw FormatError("'" + path + "' is not a replay memory snapshot");
    throw FormatError(where + " is truncated");
  }
  char magic[sizeof(kMagic)];
  in.bytes(magic, sizeof(magic));
  if (std::memcmp(magic, kMagic, sizeof(kMagic)) != 0) throw FormatError("'" + path + "' is not a replay memory snapshot");
  const auto version = in.value<uint32_t>();
  if (version != kVersionOneStream && version != kVersionStreams)
    throw FormatError(where + " has format version " + std::to_string(version) + "; this build reads versions " +
                      std::to_string(kVersionOneStream) + " and " + std::to_string(kVersionStreams));
  const bool single = version == kVersionOneStream;
  if (in.value<uint32_t>() != kEndianMark) throw FormatError(where + " was written with another byte order");
  auto corrupt = [&](const std::string& why) { return FormatError(where + " is corrupt: " + why); };
  MemoryConfig config;
  config.capacity = in.value<int64_t>();
  config.height = in.value<int64_t>();
  config.width = in.value<int64_t>();
  config.stack = in.value<int64_t>();
  config.n_step = in.value<int64_t>();
  config.gamma = in.value<double>();
  const auto prioritized = in.value<int64_t>();
  config.prioritized = prioritized == 1;
  config.alpha = in.value<double>();
  config.eps = in.value<double>();
  config.seed = in.value<uint64_t>();
  config.streams = single ? 1 : in.value<int64_t>();
  // Bound the per-stream header by the file itself before reading it.
  if (config.streams < 1 || config.streams > kMaxStreams ||
      static_cast<uint64_t>(config.streams) > in.file_size() / kStreamHeaderBytes)
    throw corrupt("impossible number of streams " + std::to_string(config.streams));
  struct StreamHeader {
    int64_t frames_begin, frames_end, episode_open, have_obs, cur_frame, cur_history, episode_steps;
  };
  auto read_stream = [&]() {
    StreamHeader h;
    h.frames_begin = in.value<int64_t>();
    h.frames_end = in.value<int64_t>();
    h.episode_open = in.value<int64_t>();
    h.have_obs = in.value<int64_t>();
    h.cur_frame = in.value<int64_t>();
    h.cur_history = in.value<int64_t>();
    h.episode_steps = in.value<int64_t>();
    return h;
  };
  std::vector<StreamHeader> stream_headers;
  const auto appended = in.value<int64_t>();
  if (single) stream_headers.push_back(read_stream());
  const auto max_priority = in.value<double>();
  std::array<uint64_t, 4> rng_state;
  for (auto& word : rng_state) word = in.value<uint64_t>();
  if (!single) {
    for (int64_t i = 0; i < config.streams; ++i) stream_headers.push_back(read_stream());
  }
  in.verify_header_checksum(where);

  if (prioritized != 0 && prioritized != 1) throw corrupt("bad prioritized flag");
  // Every header value in range before anything is allocated: counts below kMaxCount
  // (so no later arithmetic overflows), sizes bounded by the file or the machine.
  if (appended < 0 || appended >= kMaxCount) throw corrupt("impossible header values");
  for (const StreamHeader& h : stream_headers) {
    if (h.frames_begin < 0 || h.frames_end < h.frames_begin || h.frames_end >= kMaxCount ||
        (h.episode_open != 0 && h.episode_open != 1) || (h.have_obs != 0 && h.have_obs != 1) || h.episode_steps < 0 ||
        h.episode_steps > appended || h.cur_history < 0 || h.cur_history > kMaxStack || h.cur_frame < -1 ||
        h.cur_frame >= kMaxCount)
      throw corrupt("impossible header values");
  }
  try {
    config.validate();
  } catch (const std::invalid_argument& e) {
    throw corrupt(e.what());
  }
  uint64_t frames = 0;
  const uint64_t frame_bytes = static_cast<uint64_t>(config.frame_bytes());
  for (const StreamHeader& h : stream_headers) {
    frames += static_cast<uint64_t>(h.frames_end - h.frames_begin);
    if (frames > in.file_size() / frame_bytes) throw FormatError(where + " is truncated");
  }
  if (config.capacity > physical_memory_bytes() / config.slot_bytes())
    throw corrupt("capacity " + std::to_string(config.capacity) + " needs " +
                  std::to_string(config.capacity * config.slot_bytes()) + " bytes, more than this machine's " +
                  std::to_string(physical_memory_bytes()) + " bytes of memory");
  const uint64_t live = static_cast<uint64_t>(std::min(appended, config.capacity));
  const uint64_t per_id = sizeof(int64_t) + sizeof(int32_t) + sizeof(float) + 2 + (single ? 0 : sizeof(uint16_t)) +
                          (config.prioritized ? sizeof(double) : 0);
  if (frames > in.file_size() / frame_bytes || live > in.file_size() / per_id) throw FormatError(where + " is truncated");
  const uint64_t header_bytes = single ? kHeaderBytesOneStream
                                       : kHeaderBytesStreams + static_cast<uint64_t>(config.streams) * kStreamHeaderBytes;
  const uint64_t expected = header_bytes + live * per_id + frames * frame_bytes + sizeof(uint64_t);
  if (in.file_size() < expected)
    throw FormatError(where + " is truncated: " + std::to_string(in.file_size()) + " bytes, expected " +
                      std::to_string(expected));
  if (in.file_size() > expected)
    throw corrupt(std::to_string(in.file_size() - expected) + " unexpected bytes after the data");

  auto memory = std::make_unique<ReplayMemory>(config);
  ReplayMemory& m = *memory;
  m.appended_ = appended;
  for (size_t i = 0; i < stream_headers.size(); ++i) {
    const StreamHeader& h = stream_headers[i];
    Stream& st = m.streams_[i];
    st.episode_open = h.episode_open == 1;
    st.have_obs = h.have_obs == 1;
    st.cur_frame = h.cur_frame;
    st.cur_history = h.cur_history;
    st.episode_steps = h.episode_steps;
  }
  m.max_priority_ = max_priority;
  m.rng_.set_state(rng_state);
  const int64_t lo = m.live_lo();
  auto runs = [&](auto read_run) {
    int64_t id = lo;
    while (id < appended) {
      const int64_t s = m.slot(id);
      const int64_t n = std::min(appended - id, config.capacity - s);
      read_run(static_cast<size_t>(s), static_cast<size_t>(n));
      id += n;
    }
  };
  runs([&](size_t s, size_t n) { in.bytes(&m.obs_frame_[s], n * sizeof(int64_t)); });
  runs([&](size_t s, size_t n) { in.bytes(&m.action_[s], n * sizeof(int32_t)); });
  runs([&](size_t s, size_t n) { in.bytes(&m.reward_[s], n * sizeof(float)); });
  runs([&](size_t s, size_t n) { in.bytes(&m.flags_[s], n); });
  runs([&](size_t s, size_t n) { in.bytes(&m.history_[s], n); });
  if (!single) runs([&](size_t s, size_t n) { in.bytes(&m.stream_[s], n * sizeof(uint16_t)); });
  std::vector<double> leaves;
  if (config.prioritized) {
    leaves.resize(static_cast<size_t>(config.capacity), 0.0);
    runs([&](size_t s, size_t n) { in.bytes(&leaves[s], n * sizeof(double)); });
  }
  for (size_t i = 0; i < stream_headers.size(); ++i) {
    FrameStore& store = m.streams_[i].frames;
    store.reset_to(stream_headers[i].frames_begin);
    for (int64_t g = stream_headers[i].frames_begin; g < stream_headers[i].frames_end; ++g)
      in.bytes(store.push_uninitialized(), frame_bytes);
  }
  in.verify_checksum();

  if (config.prioritized) {
    if (!(max_priority > 0.0) || !std::isfinite(max_priority) || !m.leaf_in_range(std::pow(max_priority, config.alpha)))
      throw corrupt("bad max priority");
    try {
      for (int64_t s = 0; s < config.capacity; ++s) {
        if (leaves[static_cast<size_t>(s)] > 0.0) m.set_leaf(s, leaves[static_cast<size_t>(s)]);
      }
    } catch (const std::invalid_argument&) {
      throw corrupt("bad priority values");
    }
    m.sum_tree_->rebuild();
  }
  // Structural checks last: a file can pass the checksum yet come from a broken writer.
  for (size_t i = 0; i < stream_headers.size(); ++i) {
    const Stream& st = m.streams_[i];
    if (st.have_obs && (st.cur_frame != stream_headers[i].frames_end - 1 || st.cur_history < 0 ||
                        st.cur_history >= config.stack))
      throw corrupt("newest observation does not match the frames");
  }
  for (int64_t id = lo; id < appended; ++id) {
    if (m.stream_[static_cast<size_t>(m.slot(id))] >= config.streams) throw corrupt("stream out of range");
  }
  m.rebuild_stream_links();
  try {
    m.check_invariants();
  } catch (const std::logic_error& e) {
    throw corrupt(e.what());
  }
  return memory;
}

TransitionLog ReplayMemory::export_log() const {
  std::lock_guard<std::mutex> lock(mu_);
  TransitionLog log;
  log.first_id = std::max<int64_t>(0, appended_ - config_.capacity);
  const size_t count = static_cast<size_t>(appended_ - log.first_id);
  log.actions.resize(count);
  log.rewards.resize(count);
  log.terminated.resize(count);
  log.truncated.resize(count);
  log.episode_start.resize(count);
  log.streams.resize(count);
  // The flags of the last transition seen on each stream; -1 until its first one.
  std::vector<int> previous_flags(static_cast<size_t>(config_.streams), -1);
  // With stack 1 a history says nothing: a stream's oldest live id counts as a start
  // only if no id was evicted yet (then it is the stream's first transition ever).
  for (size_t k = 0; k < count; ++k) {
    const int64_t id = log.first_id + static_cast<int64_t>(k);
    const int64_t s = slot(id);
    const uint16_t stream = stream_[s];
    log.streams[k] = stream;
    log.actions[k] = action_[s];
    log.rewards[k] = reward_[s];
    log.terminated[k] = (flags_[s] & kTerminated) ? 1 : 0;
    log.truncated[k] = (flags_[s] & kTruncated) ? 1 : 0;
    int& previous = previous_flags[stream];
    if (previous >= 0) {
      log.episode_start[k] = (previous & (kTerminated | kTruncated)) ? 1 : 0;
    } else {  // its predecessor on the stream is gone: only the state's history tells
      log.episode_start[k] = (history_[s] == 0 && (config_.stack > 1 || log.first_id == 0)) ? 1 : 0;
    }
    previous = flags_[s];
  }
  return log;
}

}  // namespace replay
