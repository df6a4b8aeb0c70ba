#include "frame_store.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace replay {

namespace {
constexpr size_t kMaxSpareChunks = 2;
constexpr size_t kMinChunkFrames = 16;
}  // namespace

namespace {
// log2 of the largest power of two <= max(16, chunk_bytes / frame_bytes).
int chunk_shift_for(size_t frame_bytes, size_t chunk_bytes) {
  const size_t frames = std::max<size_t>(kMinChunkFrames, chunk_bytes / std::max<size_t>(frame_bytes, 1));
  int shift = 0;
  while ((size_t{2} << shift) <= frames) ++shift;
  return shift;
}
}  // namespace

FrameStore::FrameStore(size_t frame_bytes, size_t chunk_bytes)
    : frame_bytes_(frame_bytes), chunk_shift_(chunk_shift_for(frame_bytes, chunk_bytes)), chunk_frames_(int64_t{1} << chunk_shift_) {
  if (frame_bytes == 0) throw std::invalid_argument("frame size must be > 0 bytes");
}

uint8_t* FrameStore::push_uninitialized() {
  if (chunks_.empty()) first_chunk_ = end_ >> chunk_shift_;
  if (end_ >= (first_chunk_ + static_cast<int64_t>(chunks_.size())) * chunk_frames_) {
    // Strong guarantee: if an allocation throws, the store is as it was (no leak).
    std::unique_ptr<uint8_t[]> chunk;
    if (!spare_.empty()) {
      chunk = std::move(spare_.back());
      spare_.pop_back();
    } else {
      chunk.reset(new uint8_t[static_cast<size_t>(chunk_frames_) * frame_bytes_]);
    }
    chunks_.push_back(std::move(chunk));
  }
  uint8_t* slot = const_cast<uint8_t*>(get(end_));
  ++end_;
  return slot;
}

int64_t FrameStore::push(const uint8_t* frame) {
  uint8_t* slot = push_uninitialized();
  std::memcpy(slot, frame, frame_bytes_);
  return end_ - 1;
}

void FrameStore::release_before(int64_t g) {
  begin_ = std::max(begin_, std::min(g, end_));
  while (!chunks_.empty() && (first_chunk_ + 1) * chunk_frames_ <= begin_) {
    if (spare_.size() < kMaxSpareChunks) spare_.push_back(std::move(chunks_.front()));
    chunks_.pop_front();
    ++first_chunk_;
  }
}

void FrameStore::reset_to(int64_t g) {
  if (end_ != 0 || !chunks_.empty()) throw std::logic_error("FrameStore::reset_to on a store in use");
  begin_ = end_ = g;
  first_chunk_ = g >> chunk_shift_;
}

}  // namespace replay
