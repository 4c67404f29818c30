#include "gpu/huge_pages.hpp"

#include <sys/mman.h>

#include <cstdint>
#include <new>

namespace troupe {

void HugePageRegion::Unmap::operator()(uint8_t* p) const { munmap(p, bytes); }

HugePageRegion::HugePageRegion(size_t bytes) {
  if (bytes > SIZE_MAX - 2 * kHugePage) throw std::bad_alloc();
  size_ = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  const size_t mapped = size_ + kHugePage;  // room to start on a 2 MiB boundary
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  mapping_ = std::unique_ptr<uint8_t, Unmap>(static_cast<uint8_t*>(p), Unmap{mapped});
  const auto address = reinterpret_cast<uintptr_t>(p);
  begin_ = reinterpret_cast<uint8_t*>((address + kHugePage - 1) / kHugePage * kHugePage);
  madvise(begin_, size_, MADV_HUGEPAGE);  // a hint: see the header
}

}  // namespace troupe
