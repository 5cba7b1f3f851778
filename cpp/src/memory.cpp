// The block cache behind rnncore/memory.hpp.
#include "rnncore/memory.hpp"

#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>

#include "tuning.hpp"

namespace rnncore {

namespace {

constexpr std::size_t kAlignment = 64;
constexpr std::size_t kHeader = kAlignment;          // each block starts with its capacity, then the user's bytes
constexpr std::size_t kSmallestCached = detail::tuning::kSmallestCachedBlock;  // below: malloc keeps its own pages
constexpr std::size_t kDefaultLimit = detail::tuning::kDefaultCacheLimit;

/// Freed large blocks by capacity. A request takes the smallest idle block that fits and wastes at most a quarter.
class BlockCache {
 public:
  void* acquire(std::size_t bytes) {
    const std::size_t capacity = round_up(bytes, bytes >= kSmallestCached ? 4096 : kAlignment);
    if (capacity >= kSmallestCached) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = idle_.lower_bound(capacity);
      if (it != idle_.end() && it->first <= capacity + capacity / detail::tuning::kMaxBlockWasteDivisor) {
        void* user = it->second;
        idle_bytes_ -= it->first;
        idle_.erase(it);
        return user;
      }
    }
    void* base = std::aligned_alloc(kAlignment, kHeader + capacity);
    if (!base) throw std::bad_alloc();
    *static_cast<std::size_t*>(base) = capacity;
    return static_cast<char*>(base) + kHeader;
  }

  void release(void* user) noexcept {
    if (!user) return;
    void* base = static_cast<char*>(user) - kHeader;
    const std::size_t capacity = *static_cast<std::size_t*>(base);
    if (capacity >= kSmallestCached) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (idle_bytes_ + capacity <= limit_) {
        idle_.emplace(capacity, user);
        idle_bytes_ += capacity;
        return;
      }
    }
    std::free(base);
  }

  MemoryCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return MemoryCacheStats{idle_bytes_, idle_.size(), limit_};
  }

  std::size_t empty() {
    std::multimap<std::size_t, void*> idle;
    std::size_t released;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      idle.swap(idle_);
      released = idle_bytes_;
      idle_bytes_ = 0;
    }
    for (auto& [capacity, user] : idle) std::free(static_cast<char*>(user) - kHeader);
    return released;
  }

  void set_limit(std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      limit_ = bytes;
      if (idle_bytes_ <= limit_) return;
    }
    empty();
  }

 private:
  static std::size_t round_up(std::size_t v, std::size_t to) { return (v + to - 1) / to * to; }

  std::mutex mutex_;
  std::multimap<std::size_t, void*> idle_;
  std::size_t idle_bytes_ = 0;
  std::size_t limit_ = kDefaultLimit;
};

/// Never destroyed: numpy arrays that own blocks may be freed during interpreter shutdown, after static destructors.
BlockCache& cache() {
  static BlockCache* instance = new BlockCache();
  return *instance;
}

}  // namespace

void* acquire_block(std::size_t bytes) { return cache().acquire(bytes); }
void release_block(void* block) noexcept { cache().release(block); }
MemoryCacheStats memory_cache_stats() { return cache().stats(); }
std::size_t empty_memory_cache() { return cache().empty(); }
void set_memory_cache_limit(std::size_t bytes) { cache().set_limit(bytes); }

}  // namespace rnncore
