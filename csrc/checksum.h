// Streaming 64-bit checksum for snapshot files: four independent multiply-rotate
// lanes over 32-byte blocks (the structure of xxHash64; not byte-compatible with
// it). Fast enough to hash a 7 GB snapshot at memory speed, and any flipped or
// missing byte changes the digest with overwhelming probability.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace replay {

class Checksum {
 public:
  void update(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    total_ += n;
    if (buffered_ > 0) {
      const size_t take = n < kBlock - buffered_ ? n : kBlock - buffered_;
      std::memcpy(buffer_ + buffered_, p, take);
      buffered_ += take;
      p += take;
      n -= take;
      if (buffered_ < kBlock) return;
      block(buffer_);
      buffered_ = 0;
    }
    for (; n >= kBlock; p += kBlock, n -= kBlock) block(p);
    std::memcpy(buffer_, p, n);
    buffered_ = n;
  }

  uint64_t digest() const {
    uint64_t h = rotl(lanes_[0], 1) + rotl(lanes_[1], 7) + rotl(lanes_[2], 12) + rotl(lanes_[3], 18);
    h += total_;
    for (size_t i = 0; i < buffered_; ++i) h = rotl(h ^ (buffer_[i] * kPrime5), 11) * kPrime1;
    h ^= h >> 33;
    h *= kPrime2;
    h ^= h >> 29;
    h *= kPrime3;
    h ^= h >> 32;
    return h;
  }

 private:
  static constexpr size_t kBlock = 32;
  static constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
  static constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
  static constexpr uint64_t kPrime3 = 0x165667B19E3779F9ULL;
  static constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ULL;
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t round(uint64_t acc, uint64_t input) { return rotl(acc + input * kPrime2, 31) * kPrime1; }
  void block(const uint8_t* p) {
    for (int lane = 0; lane < 4; ++lane) {
      uint64_t word;
      std::memcpy(&word, p + 8 * lane, 8);
      lanes_[lane] = round(lanes_[lane], word);
    }
  }

  uint64_t lanes_[4] = {kPrime1 + kPrime2, kPrime2, 0, 0 - kPrime1};
  uint8_t buffer_[kBlock] = {};
  size_t buffered_ = 0;
  uint64_t total_ = 0;
};

}  // namespace replay
