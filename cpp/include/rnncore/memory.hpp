// Large buffers come from a process-wide cache of recently freed blocks, so that a training loop, which asks for
// the same sizes at every step, does not pay the operating system's page faults and page zeroing each time
// (measured: 13-30% of an LSTM training step at H=128..512 with plain malloc). Blocks are 64-byte aligned.
// This cache is the library's only process-wide mutable state; it is guarded by a mutex.
#pragma once

#include <cstddef>
#include <utility>

#include "rnncore/contract.hpp"

namespace rnncore {

/// A 64-byte aligned block of at least `bytes` bytes (a cached one when a fitting block is idle). Never null.
void* acquire_block(std::size_t bytes);
/// Gives a block from acquire_block back (to the cache when it is large and the cache has room). Null is a no-op.
void release_block(void* block) noexcept;

struct MemoryCacheStats {
  std::size_t idle_bytes = 0;   ///< held by the cache, ready for reuse
  std::size_t idle_blocks = 0;
  std::size_t limit_bytes = 0;  ///< the most idle memory the cache keeps; beyond it blocks go back to the system
};
MemoryCacheStats memory_cache_stats();
/// Returns every idle block to the system; the number of bytes released.
std::size_t empty_memory_cache();
/// Sets the most idle memory kept (0 disables caching: every block goes straight back to the system).
void set_memory_cache_limit(std::size_t bytes);

/// A move-only array of `size` scalars in a block from acquire_block; contents are uninitialised.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(index_t size) { resize(size); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  ~Buffer() { release_block(data_); }

  /// Makes room for `size` scalars; the previous contents are not kept.
  void resize(index_t size) {
    if (size == size_) return;
    release_block(std::exchange(data_, nullptr));  // if the acquire below throws, nothing is freed twice
    size_ = 0;
    data_ = size > 0 ? static_cast<T*>(acquire_block(sizeof(T) * static_cast<std::size_t>(size))) : nullptr;
    size_ = size;
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  index_t size() const { return size_; }

 private:
  T* data_ = nullptr;
  index_t size_ = 0;
};

}  // namespace rnncore
