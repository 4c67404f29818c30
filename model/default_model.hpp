// Where the default model lives: the path scripts/fetch-model prints.
// $TROUPE_MODEL_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/troupe/models, plus the file name of
// SmolLM2-135M-Instruct (GGUF, Q4_1). Reads the environment; safe from any thread.
#pragma once

#include <filesystem>

namespace troupe {

std::filesystem::path default_model_path();

}  // namespace troupe
