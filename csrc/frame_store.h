// FrameStore: every observation frame stored exactly once, in write order.
//
// Frames get consecutive global numbers 0, 1, 2, ... as they are pushed. The
// store keeps the frames [begin(), end()) in chunks of 2^k frames (about
// chunk_bytes, 1 MiB unless the owner splits that budget over several stores);
// the owner calls release_before(g) when no live transition needs a frame older
// than g, and whole chunks below that point go back to a small spare list, so
// resident memory follows the frames actually needed and a steady-state ring
// allocates nothing.
//
//   chunk:   [ first_chunk_ ][ first_chunk_+1 ] ... [ last ]
//   frames:     begin() ... (released ones may sit in the first chunk) ... end()-1
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

namespace replay {

class FrameStore {
 public:
  static constexpr size_t kDefaultChunkBytes = size_t{1} << 20;
  explicit FrameStore(size_t frame_bytes, size_t chunk_bytes = kDefaultChunkBytes);

  size_t frame_bytes() const { return frame_bytes_; }
  int64_t begin() const { return begin_; }  // oldest frame still readable
  int64_t end() const { return end_; }      // number of frames ever pushed
  // Copies one frame in; returns its global number.
  int64_t push(const uint8_t* frame);
  // Reserves the next frame's bytes for the caller to fill (used by load).
  uint8_t* push_uninitialized();
  // Requires begin() <= g < end().
  const uint8_t* get(int64_t g) const {
    const int64_t offset = g - (first_chunk_ << chunk_shift_);
    return chunks_[static_cast<size_t>(offset >> chunk_shift_)].get() +
           static_cast<size_t>(offset & (chunk_frames_ - 1)) * frame_bytes_;
  }
  // Frames below g are no longer readable; whole chunks below g are recycled.
  void release_before(int64_t g);
  // Starts numbering at g (empty store only; used by load).
  void reset_to(int64_t g);
  size_t bytes_allocated() const { return (chunks_.size() + spare_.size()) * chunk_frames_ * frame_bytes_; }

 private:
  size_t frame_bytes_;
  int chunk_shift_;        // a chunk holds 2^chunk_shift_ frames
  int64_t chunk_frames_;
  int64_t first_chunk_ = 0;  // global chunk number of chunks_.front()
  int64_t begin_ = 0;
  int64_t end_ = 0;
  std::deque<std::unique_ptr<uint8_t[]>> chunks_;
  std::vector<std::unique_ptr<uint8_t[]>> spare_;
};

}  // namespace replay
