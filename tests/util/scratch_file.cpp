#include "tests/util/scratch_file.hpp"

#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "tests/util/gguf_writer.hpp"

namespace troupe::test {

ScratchFile::ScratchFile(std::span<const uint8_t> bytes) {
  const char* dir = std::getenv("TMPDIR");
  std::string base = dir && *dir ? dir : "/tmp";
  if (!(dir && *dir) && ::access("/dev/shm", W_OK) == 0) base = "/dev/shm";  // memory: fast
  std::string pattern = base + "/troupe-test-XXXXXX";
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  const int fd = ::mkstemp(name.data());
  if (fd < 0) throw std::runtime_error("cannot create a scratch file from " + pattern);
  ::close(fd);
  path_ = name.data();
  write(bytes);
}

ScratchFile::~ScratchFile() { ::unlink(path_.c_str()); }

void ScratchFile::write(std::span<const uint8_t> bytes) const { write_file(path_, bytes); }


}  // namespace troupe::test
