// Priority trees for proportional prioritized replay.
//
// FenwickTree: a binary indexed tree over n non-negative leaves. set() is O(log n),
// total() is O(log n), find() descends in O(log n) to the leaf whose cumulative
// mass interval [prefix(i), prefix(i + 1)) contains a given mass.
//
// Drift invariant: internal nodes are updated by adding (new - old) deltas, which
// accumulates rounding error. All sums are double, and every `rebuild_every`
// set() calls (default max(n, 1024)) the tree is rebuilt from its leaves in O(n),
// so with K sets since the last rebuild and S the largest total since then,
//   |prefix(i) - exact sum of leaves [0, i)| <= (n + 2 (K + 1) (log2 n + 2)) * 2^-52 * S.
// check_invariants() tests exactly this bound. The rebuild costs O(1) amortised per set().
//
// Finite sums: set() refuses a leaf above max_leaf() = DBL_MAX / (2 n), so no sum
// of leaves, partial or total, can overflow to infinity.
// Cancellation: the bound scales with the largest total S since the last rebuild,
// so after a huge leaf is set back to a small value the deltas could leave
// internal nodes near 0 (or below) while the leaves still hold mass. set()
// therefore also rebuilds as soon as the total falls below S * 2^-16, which keeps
// the drift within 2^16 * (the bound above) of the current total and the total
// positive whenever some leaf is. This costs O(n) only after the total fell by
// that factor, which needs priorities spanning five orders of magnitude.
//
// MinTree: a bottom-up segment tree (2n doubles) whose node 1 is the minimum of
// all leaves; empty leaves hold +infinity. Used for the smallest priority, which
// gives the largest importance weight.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace replay {

class FenwickTree {
 public:
  explicit FenwickTree(int64_t size, int64_t rebuild_every = 0);

  int64_t size() const { return size_; }
  // The largest leaf set() accepts: size() of them still sum to a finite double.
  double max_leaf() const { return max_leaf_; }
  // Sets leaf i (0 <= i < size) to value (in [0, max_leaf()]). Throws on bad input
  // (std::out_of_range, std::invalid_argument) before changing anything.
  void set(int64_t i, double value);
  // Requires 0 <= i < size(): unchecked, it is on the sampler's hot path (the
  // Python binding checks the index).
  double get(int64_t i) const { return leaves_[static_cast<size_t>(i)]; }
  // Sum of leaves [0, i), for 0 <= i <= size() (outside: clamped).
  double prefix(int64_t i) const;
  double total() const { return prefix(size_); }
  // Smallest i with prefix(i + 1) > mass, skipping zero leaves; returns size()
  // when mass >= total() (callers clamp).
  int64_t find(double mass) const;
  // Recomputes every internal node from the leaves.
  void rebuild();
  // Throws std::logic_error when a prefix sum differs from the exact sum of its
  // leaves by more than the drift bound above. For tests: O(n log n).
  void check_invariants() const;
  int64_t sets_since_rebuild() const { return sets_since_rebuild_; }

 private:
  int64_t size_;
  double max_leaf_;
  int64_t rebuild_every_;
  int64_t sets_since_rebuild_ = 0;
  double running_total_ = 0.0;  // total kept by deltas, only to track peak_total_
  double peak_total_ = 0.0;     // largest total since the last rebuild (the drift bound's scale)
  std::vector<double> leaves_;
  std::vector<double> tree_;  // 1-based Fenwick array, tree_[0] unused
};

class MinTree {
 public:
  explicit MinTree(int64_t size);
  int64_t size() const { return size_; }
  // Sets leaf i (0 <= i < size) to value (not NaN); +infinity marks an empty leaf.
  // Throws on bad input before changing anything.
  void set(int64_t i, double value);
  double min() const { return nodes_[1]; }
  // Requires 0 <= i < size() (unchecked; the Python binding checks it).
  double get(int64_t i) const { return nodes_[static_cast<size_t>(size_ + i)]; }
  void check_invariants() const;

 private:
  int64_t size_;
  std::vector<double> nodes_;  // leaves at [size_, 2 size_), node p = min(2p, 2p + 1)
};

}  // namespace replay
