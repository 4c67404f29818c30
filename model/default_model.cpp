#include "model/default_model.hpp"

#include <cstdlib>

namespace troupe {

std::filesystem::path default_model_path() {
  const char* model_dir = std::getenv("TROUPE_MODEL_DIR");
  std::filesystem::path directory;
  if (model_dir && *model_dir) {
    directory = model_dir;
  } else {
    const char* cache = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    if (cache && *cache)
      directory = cache;
    else
      directory = std::filesystem::path(home && *home ? home : ".") / ".cache";
    directory /= "troupe/models";
  }
  return directory / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace troupe
