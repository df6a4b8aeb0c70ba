#include "sum_tree.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace replay {

namespace {
// Rebuild once the total falls below this fraction of its peak (see sum_tree.h).
constexpr double kCancellationRatio = 1.0 / 65536.0;

// Checks a tree size before anything is allocated for it.
int64_t checked_size(int64_t size, const char* tree) {
  if (size < 1) throw std::invalid_argument(std::string(tree) + " size must be >= 1, got " + std::to_string(size));
  return size;
}

int64_t highest_power_of_two_at_most(int64_t n) {
  int64_t p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}
}  // namespace

FenwickTree::FenwickTree(int64_t size, int64_t rebuild_every)
    : size_(checked_size(size, "FenwickTree")),
      max_leaf_(std::numeric_limits<double>::max() / (2.0 * static_cast<double>(size))),
      rebuild_every_(rebuild_every > 0 ? rebuild_every : std::max<int64_t>(size, 1024)),
      leaves_(static_cast<size_t>(size), 0.0),
      tree_(static_cast<size_t>(size) + 1, 0.0) {}

void FenwickTree::set(int64_t i, double value) {
  if (i < 0 || i >= size_) throw std::out_of_range("FenwickTree index out of range");
  if (!(value >= 0.0 && value <= max_leaf_))
    throw std::invalid_argument("FenwickTree value must be in [0, " + std::to_string(max_leaf_) + "] (finite sums), got " +
                                std::to_string(value));
  const double delta = value - leaves_[static_cast<size_t>(i)];
  leaves_[static_cast<size_t>(i)] = value;
  running_total_ += delta;
  peak_total_ = std::max(peak_total_, running_total_);
  if (++sets_since_rebuild_ >= rebuild_every_ || running_total_ < peak_total_ * kCancellationRatio) {
    rebuild();
    return;
  }
  for (int64_t k = i + 1; k <= size_; k += k & -k) tree_[static_cast<size_t>(k)] += delta;
}

double FenwickTree::prefix(int64_t i) const {
  double sum = 0.0;
  for (int64_t k = std::min(i, size_); k > 0; k -= k & -k) sum += tree_[static_cast<size_t>(k)];
  return sum;
}

int64_t FenwickTree::find(double mass) const {
  int64_t pos = 0;
  for (int64_t step = highest_power_of_two_at_most(size_); step > 0; step /= 2) {
    const int64_t next = pos + step;
    if (next <= size_ && tree_[static_cast<size_t>(next)] <= mass) {
      pos = next;
      mass -= tree_[static_cast<size_t>(next)];
    }
  }
  return pos;  // leaves [0, pos) hold mass <= the query; leaf pos crosses it
}

void FenwickTree::rebuild() {
  // Linear-time construction: each node pushes its sum into its Fenwick parent.
  for (int64_t k = 1; k <= size_; ++k) tree_[static_cast<size_t>(k)] = leaves_[static_cast<size_t>(k - 1)];
  for (int64_t k = 1; k <= size_; ++k) {
    const int64_t parent = k + (k & -k);
    if (parent <= size_) tree_[static_cast<size_t>(parent)] += tree_[static_cast<size_t>(k)];
  }
  sets_since_rebuild_ = 0;
  running_total_ = total();
  peak_total_ = running_total_;
}

void FenwickTree::check_invariants() const {
  // Reference prefix sums by Neumaier's compensated summation (error ~ 2 eps).
  double exact = 0.0, compensation = 0.0;
  const double levels = std::ceil(std::log2(static_cast<double>(size_) + 1.0)) + 1.0;
  const double bound = (static_cast<double>(size_) + 2.0 * (static_cast<double>(sets_since_rebuild_) + 1.0) * levels) *
                       std::numeric_limits<double>::epsilon() * peak_total_;
  for (int64_t i = 0; i <= size_; ++i) {
    const double got = prefix(i);
    if (std::fabs(got - (exact + compensation)) > bound) {
      throw std::logic_error("FenwickTree prefix(" + std::to_string(i) + ") drifted: " + std::to_string(got) +
                             " vs " + std::to_string(exact + compensation));
    }
    if (i == size_) break;
    const double leaf = leaves_[static_cast<size_t>(i)];
    if (!(leaf >= 0.0) || !std::isfinite(leaf)) throw std::logic_error("FenwickTree leaf is negative or not finite");
    const double t = exact + leaf;
    compensation += std::fabs(exact) >= std::fabs(leaf) ? (exact - t) + leaf : (leaf - t) + exact;
    exact = t;
  }
}

MinTree::MinTree(int64_t size)
    : size_(checked_size(size, "MinTree")),
      nodes_(2 * static_cast<size_t>(size_), std::numeric_limits<double>::infinity()) {}

void MinTree::set(int64_t i, double value) {
  if (i < 0 || i >= size_) throw std::out_of_range("MinTree index out of range");
  if (std::isnan(value)) throw std::invalid_argument("MinTree value must not be NaN");
  int64_t p = size_ + i;
  nodes_[static_cast<size_t>(p)] = value;
  for (p /= 2; p >= 1; p /= 2)
    nodes_[static_cast<size_t>(p)] = std::min(nodes_[static_cast<size_t>(2 * p)], nodes_[static_cast<size_t>(2 * p + 1)]);
}

void MinTree::check_invariants() const {
  double lowest = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < size_; ++i) lowest = std::min(lowest, get(i));
  if (min() != lowest) throw std::logic_error("MinTree root is not the minimum of its leaves");
  for (int64_t p = size_ - 1; p >= 1; --p) {
    if (nodes_[static_cast<size_t>(p)] !=
        std::min(nodes_[static_cast<size_t>(2 * p)], nodes_[static_cast<size_t>(2 * p + 1)]))
      throw std::logic_error("MinTree node is not the minimum of its children");
  }
}

}  // namespace replay
