#include "model/bpe_byte_map.hpp"

#include <array>
#include <string>

#include "model/unicode.hpp"

namespace troupe {
namespace {

bool stands_for_itself(int byte) {
  return (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
}

struct ByteMap {
  std::array<char32_t, 256> symbol_of_byte{};
  std::array<std::string, 256> utf8_of_byte;
  std::array<int16_t, 512> byte_of_symbol{};  // stand-ins are all below U+0200

  ByteMap() {
    byte_of_symbol.fill(-1);
    char32_t next_extra = 256;
    for (int byte = 0; byte < 256; ++byte) {
      const char32_t symbol = stands_for_itself(byte) ? static_cast<char32_t>(byte) : next_extra++;
      symbol_of_byte[byte] = symbol;
      append_utf8(utf8_of_byte[byte], symbol);
      byte_of_symbol[symbol] = static_cast<int16_t>(byte);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

std::string_view bpe_symbol_of_byte(uint8_t byte) { return byte_map().utf8_of_byte[byte]; }

int bpe_byte_of_symbol(char32_t cpt) {
  return cpt < byte_map().byte_of_symbol.size() ? byte_map().byte_of_symbol[cpt] : -1;
}

}  // namespace troupe
