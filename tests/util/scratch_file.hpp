// ScratchFile: a uniquely named temporary file (under $TMPDIR, else /dev/shm when writable,
// else /tmp) holding given bytes,
// removed when the object is destroyed. For tests that need a path (mmap readers).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace troupe::test {

class ScratchFile {
 public:
  explicit ScratchFile(std::span<const uint8_t> bytes = {});
  ~ScratchFile();
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  const std::string& path() const { return path_; }
  // Replaces the file's contents.
  void write(std::span<const uint8_t> bytes) const;

 private:
  std::string path_;
};


}  // namespace troupe::test
