// GGUF reader: maps a GGUF v2/v3 little-endian file read-only and exposes its metadata and
// tensor table. Every count, length, offset and size is checked against the file before it
// is used, so a truncated or hostile file yields a GgufError (naming the file, the section
// and what is wrong), never a crash or an allocation larger than a small multiple of the
// file size.
// Ownership: GgufFile owns the mapping (move-only, unmapped in the destructor). Every
// string_view, GgufValue, GgufTensor::data and GgufTensor pointer obtained from it points
// into the file object or the mapping and stays valid until it is destroyed (moving the
// file keeps them valid). Thread safety: all const members may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "model/ggml_types.hpp"

namespace troupe {

class GgufError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Value types as GGUF numbers them.
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};

std::string_view gguf_type_name(GgufType type);

class GgufValue;

// An array value. Numeric and bool elements stay packed in the mapping (read them with the
// *_at accessors); strings and nested arrays are indexed once at load.
struct GgufArray {
  GgufType elem_type = GgufType::U8;
  uint64_t size = 0;
  const uint8_t* packed = nullptr;         // numeric/bool elements, little-endian, unaligned
  std::vector<std::string_view> strings;   // elem_type == String
  std::vector<GgufValue> arrays;           // elem_type == Array

  // Element i as a number, with GgufValue's conversion rules (nullopt for bools, strings,
  // arrays and values that do not fit). Precondition: i < size.
  std::optional<uint64_t> u64_at(uint64_t i) const;
  std::optional<int64_t> i64_at(uint64_t i) const;
  std::optional<double> f64_at(uint64_t i) const;
  std::optional<bool> bool_at(uint64_t i) const;
};

// One metadata value: a scalar, a string (a view into the mapping) or an array.
class GgufValue {
 public:
  using Storage = std::variant<uint64_t, int64_t, double, bool, std::string_view,
                               std::shared_ptr<const GgufArray>>;

  GgufValue(GgufType type, Storage storage) : type_(type), storage_(std::move(storage)) {}

  GgufType type() const { return type_; }
  // Unsigned/signed integers that fit the requested type; f64 accepts every numeric type.
  // Bools and strings are not numbers here.
  std::optional<uint64_t> as_u64() const;
  std::optional<int64_t> as_i64() const;
  std::optional<double> as_f64() const;
  std::optional<bool> as_bool() const;
  std::optional<std::string_view> as_string() const;
  const GgufArray* as_array() const;  // nullptr unless type() == Array

 private:
  GgufType type_;
  Storage storage_;
};

struct GgufKV {
  std::string key;
  GgufValue value;
};

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<uint64_t> dims;  // dims[0] = row length (contiguous); 1 to 4 dimensions
  uint64_t n_elements = 0;
  uint64_t offset = 0;         // from the start of the data section
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;

  uint64_t rows() const { return dims.empty() || dims[0] == 0 ? 0 : n_elements / dims[0]; }
  uint64_t row_bytes() const { return dims.empty() ? 0 : ggml_row_bytes(type, dims[0]); }
};

class GgufFile {
 public:
  static constexpr uint32_t kDefaultAlignment = 32;
  static constexpr uint32_t kMaxTensorDims = 4;
  static constexpr uint32_t kMaxArrayDepth = 8;

  // Maps and validates the file; throws GgufError.
  static GgufFile open(const std::string& path);

  GgufFile(GgufFile&& other) noexcept;
  GgufFile& operator=(GgufFile&& other) noexcept;
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;
  ~GgufFile();

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  std::size_t file_size() const { return size_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the data section

  const std::vector<GgufKV>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;

  // nullopt when the key is absent; GgufError naming the key when it holds another type or
  // a value that does not fit.
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<uint64_t> get_u64(std::string_view key) const;
  std::optional<int64_t> get_i64(std::string_view key) const;
  std::optional<double> get_f64(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  // Empty when the key is absent; GgufError naming the key on another type or an element
  // that does not fit. String views point into the mapping.
  std::vector<std::string_view> get_string_array(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;
  std::vector<int32_t> get_i32_array(std::string_view key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* tensor(std::string_view name) const;

 private:
  GgufFile() = default;
  void parse();
  [[noreturn]] void fail_key(std::string_view key, std::string_view expected) const;

  std::string path_;
  const uint8_t* base_ = nullptr;
  std::size_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<GgufKV> metadata_;
  std::vector<GgufTensor> tensors_;
};

}  // namespace troupe
