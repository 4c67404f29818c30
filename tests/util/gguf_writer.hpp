// GgufWriter: builds GGUF v3 (or v2) files in memory for tests: metadata of every value type
// (nested arrays included), tensors of any type from raw bytes, and the byte offsets of each
// part (Layout) so a test can truncate or patch the result into a corrupt file. The writer
// never validates: it writes what it is given, which is how hostile files are made.
// Not thread-safe; values are plain data.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/ggml_types.hpp"
#include "model/gguf.hpp"

namespace troupe::test {

// One encoded metadata value: its GGUF type and the bytes that follow the type tag.
struct GgufMeta {
  GgufType type;
  std::vector<uint8_t> payload;
};

GgufMeta meta_u8(uint8_t v);
GgufMeta meta_i8(int8_t v);
GgufMeta meta_u16(uint16_t v);
GgufMeta meta_i16(int16_t v);
GgufMeta meta_u32(uint32_t v);
GgufMeta meta_i32(int32_t v);
GgufMeta meta_u64(uint64_t v);
GgufMeta meta_i64(int64_t v);
GgufMeta meta_f32(float v);
GgufMeta meta_f64(double v);
GgufMeta meta_bool(bool v);
GgufMeta meta_string(std::string_view v);
// An array of `elements`, which should all have type `elem_type` (not checked).
GgufMeta meta_array(GgufType elem_type, const std::vector<GgufMeta>& elements);
GgufMeta meta_string_array(const std::vector<std::string>& v);
GgufMeta meta_f32_array(std::span<const float> v);
GgufMeta meta_i32_array(std::span<const int32_t> v);

class GgufWriter {
 public:
  // Byte offsets in the serialized file.
  struct Layout {
    uint64_t tensor_count_offset = 0;           // the u64 tensor count in the header
    uint64_t kv_count_offset = 0;               // the u64 metadata count in the header
    std::vector<uint64_t> kv_offsets;           // start of each key/value record
    std::vector<uint64_t> tensor_info_offsets;  // start of each tensor info record
    uint64_t data_offset = 0;                   // start of the data section
    std::vector<uint64_t> tensor_data_offsets;  // absolute offset of each tensor's data
  };

  void set_version(uint32_t version) { version_ = version; }
  // Emits general.alignment (u32) and lays the data out with it (default 32, not emitted).
  void set_alignment(uint32_t alignment);
  GgufWriter& add(std::string key, GgufMeta value);          // appends (duplicates allowed)
  GgufWriter& set(const std::string& key, GgufMeta value);   // replaces in place, or appends
  GgufWriter& remove(const std::string& key);
  // Data is written as given; its offset is the next multiple of the alignment.
  GgufWriter& add_tensor(std::string name, GgmlType type, std::vector<uint64_t> dims,
                         std::vector<uint8_t> data);
  GgufWriter& add_tensor_raw_type(std::string name, uint32_t type, std::vector<uint64_t> dims,
                                  std::vector<uint8_t> data);
  // Replaces the tensor of that name in place (same position), or appends it.
  GgufWriter& set_tensor(const std::string& name, GgmlType type, std::vector<uint64_t> dims,
                         std::vector<uint8_t> data);
  GgufWriter& remove_tensor(const std::string& name);

  std::vector<uint8_t> bytes(Layout* layout = nullptr) const;
  void write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> data;
  };
  uint32_t version_ = 3;
  uint32_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufMeta>> metadata_;
  std::vector<Tensor> tensors_;
};

// Little-endian patching helpers for corrupting serialized files (std::out_of_range past
// the end).
void put_u32(std::vector<uint8_t>& bytes, uint64_t offset, uint32_t value);
void put_u64(std::vector<uint8_t>& bytes, uint64_t offset, uint64_t value);
void write_file(const std::string& path, std::span<const uint8_t> bytes);

}  // namespace troupe::test
