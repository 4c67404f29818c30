// The byte-level BPE alphabet of GPT-2 vocabularies: every byte value has a printable
// stand-in codepoint (bytes that are visible Latin-1 characters stand for themselves, the
// others map to U+0100 and up, in byte order), and token texts are spelled in stand-ins.
// Constant tables: safe from any thread.
#pragma once

#include <cstdint>
#include <string_view>

namespace troupe {

// UTF-8 of the stand-in for `byte` (1 or 2 bytes).
std::string_view bpe_symbol_of_byte(uint8_t byte);

// The byte a stand-in codepoint stands for; -1 when cpt is not a stand-in.
int bpe_byte_of_symbol(char32_t cpt);

}  // namespace troupe
