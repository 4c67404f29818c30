#include "model/gguf.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <sstream>
#include <unordered_set>
#include <utility>

namespace troupe {
namespace {

template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

std::optional<GgufType> gguf_type_from(uint32_t number) {
  if (number > static_cast<uint32_t>(GgufType::F64)) return std::nullopt;
  return static_cast<GgufType>(number);
}

// Bytes of one packed element; 0 for strings and arrays.
uint64_t packed_size(GgufType type) {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    case GgufType::String: case GgufType::Array: return 0;
  }
  return 0;
}

// The fewest bytes one element of this type can occupy in a file.
uint64_t min_encoded_size(GgufType type) {
  if (type == GgufType::String) return 8;       // length
  if (type == GgufType::Array) return 4 + 8;    // element type + count
  return packed_size(type);
}

template <class T>
T load_le(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));  // the build targets little-endian x86-64
  return value;
}

// Decodes one packed element into the variant's storage types.
GgufValue::Storage decode_packed(GgufType type, const uint8_t* p) {
  switch (type) {
    case GgufType::U8: return uint64_t{load_le<uint8_t>(p)};
    case GgufType::I8: return int64_t{load_le<int8_t>(p)};
    case GgufType::U16: return uint64_t{load_le<uint16_t>(p)};
    case GgufType::I16: return int64_t{load_le<int16_t>(p)};
    case GgufType::U32: return uint64_t{load_le<uint32_t>(p)};
    case GgufType::I32: return int64_t{load_le<int32_t>(p)};
    case GgufType::U64: return load_le<uint64_t>(p);
    case GgufType::I64: return load_le<int64_t>(p);
    case GgufType::F32: return double{load_le<float>(p)};
    case GgufType::F64: return load_le<double>(p);
    case GgufType::Bool: return load_le<uint8_t>(p) != 0;
    case GgufType::String: case GgufType::Array: break;
  }
  return uint64_t{0};
}

std::optional<uint64_t> storage_u64(const GgufValue::Storage& s) {
  if (auto u = std::get_if<uint64_t>(&s)) return *u;
  if (auto i = std::get_if<int64_t>(&s); i && *i >= 0) return static_cast<uint64_t>(*i);
  return std::nullopt;
}

std::optional<int64_t> storage_i64(const GgufValue::Storage& s) {
  if (auto i = std::get_if<int64_t>(&s)) return *i;
  if (auto u = std::get_if<uint64_t>(&s);
      u && *u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return static_cast<int64_t>(*u);
  return std::nullopt;
}

std::optional<double> storage_f64(const GgufValue::Storage& s) {
  if (auto d = std::get_if<double>(&s)) return *d;
  if (auto u = std::get_if<uint64_t>(&s)) return static_cast<double>(*u);
  if (auto i = std::get_if<int64_t>(&s)) return static_cast<double>(*i);
  return std::nullopt;
}

bool is_numeric(GgufType type) {
  return type != GgufType::String && type != GgufType::Array && type != GgufType::Bool;
}

// A bounds-checked cursor over the mapping. `section` names what is being read, for errors.
class Cursor {
 public:
  Cursor(const uint8_t* base, uint64_t size, const std::string& path)
      : base_(base), size_(size), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  const uint8_t* here() const { return base_ + pos_; }
  std::string section = "header";

  [[noreturn]] void fail(const std::string& what) const {
    throw GgufError(cat(path_, ": ", section, ": ", what));
  }

  void need(uint64_t n, std::string_view what) const {
    if (n > remaining())
      fail(cat("file truncated: ", what, " needs ", n, " bytes at offset ", pos_,
               " but the file ends at ", size_));
  }

  template <class T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T value = load_le<T>(here());
    pos_ += sizeof(T);
    return value;
  }

  std::string_view read_string(std::string_view what) {
    const uint64_t length = read<uint64_t>(cat(what, " length"));
    if (length > remaining())
      fail(cat(what, " length ", length, " exceeds the ", remaining(),
               " bytes left in the file (offset ", pos_, ")"));
    std::string_view text(reinterpret_cast<const char*>(here()), length);
    pos_ += length;
    return text;
  }

  const uint8_t* skip(uint64_t n, std::string_view what) {
    need(n, what);
    const uint8_t* start = here();
    pos_ += n;
    return start;
  }

 private:
  const uint8_t* base_;
  uint64_t size_;
  const std::string& path_;
  uint64_t pos_ = 0;
};

GgufType read_type(Cursor& in, std::string_view what) {
  const uint32_t number = in.read<uint32_t>(what);
  auto type = gguf_type_from(number);
  if (!type) in.fail(cat("unknown ", what, " ", number, " (GGUF defines 0 to 12)"));
  return *type;
}

GgufValue read_value(Cursor& in, GgufType type, uint32_t depth) {
  if (type == GgufType::String) return {type, in.read_string("string")};
  if (type != GgufType::Array)
    return {type, decode_packed(type, in.skip(packed_size(type), gguf_type_name(type)))};

  if (depth >= GgufFile::kMaxArrayDepth)
    in.fail(cat("arrays nested deeper than ", GgufFile::kMaxArrayDepth, " levels"));
  auto array = std::make_shared<GgufArray>();
  array->elem_type = read_type(in, "array element type");
  array->size = in.read<uint64_t>("array length");
  const uint64_t min_size = min_encoded_size(array->elem_type);
  if (array->size > in.remaining() / min_size)
    in.fail(cat("array of ", array->size, " ", gguf_type_name(array->elem_type),
                " elements cannot fit in the ", in.remaining(), " bytes left (offset ",
                in.pos(), ")"));
  switch (array->elem_type) {
    case GgufType::String:
      array->strings.reserve(array->size);
      for (uint64_t i = 0; i < array->size; ++i)
        array->strings.push_back(in.read_string("string"));
      break;
    case GgufType::Array:
      array->arrays.reserve(array->size);
      for (uint64_t i = 0; i < array->size; ++i)
        array->arrays.push_back(read_value(in, GgufType::Array, depth + 1));
      break;
    default:
      array->packed = in.skip(array->size * min_size, "array data");
  }
  return {GgufType::Array, std::shared_ptr<const GgufArray>(std::move(array))};
}

std::string dims_text(const std::vector<uint64_t>& dims) {
  std::string text = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) text += cat(i ? "," : "", dims[i]);
  return text + "]";
}

std::string known_types_text() {
  std::string text;
  for (const auto& t : kGgmlTypes)
    text += cat(text.empty() ? "" : ", ", t.name, "=", static_cast<uint32_t>(t.type));
  return text;
}

}  // namespace

std::string_view gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::U8: return "u8";
    case GgufType::I8: return "i8";
    case GgufType::U16: return "u16";
    case GgufType::I16: return "i16";
    case GgufType::U32: return "u32";
    case GgufType::I32: return "i32";
    case GgufType::F32: return "f32";
    case GgufType::Bool: return "bool";
    case GgufType::String: return "string";
    case GgufType::Array: return "array";
    case GgufType::U64: return "u64";
    case GgufType::I64: return "i64";
    case GgufType::F64: return "f64";
  }
  return "unknown";
}

std::optional<uint64_t> GgufArray::u64_at(uint64_t i) const {
  if (!packed || !is_numeric(elem_type)) return std::nullopt;
  return storage_u64(decode_packed(elem_type, packed + i * packed_size(elem_type)));
}

std::optional<int64_t> GgufArray::i64_at(uint64_t i) const {
  if (!packed || !is_numeric(elem_type)) return std::nullopt;
  return storage_i64(decode_packed(elem_type, packed + i * packed_size(elem_type)));
}

std::optional<double> GgufArray::f64_at(uint64_t i) const {
  if (!packed || !is_numeric(elem_type)) return std::nullopt;
  return storage_f64(decode_packed(elem_type, packed + i * packed_size(elem_type)));
}

std::optional<bool> GgufArray::bool_at(uint64_t i) const {
  if (!packed || elem_type != GgufType::Bool) return std::nullopt;
  return packed[i] != 0;
}

std::optional<uint64_t> GgufValue::as_u64() const {
  return is_numeric(type_) ? storage_u64(storage_) : std::nullopt;
}
std::optional<int64_t> GgufValue::as_i64() const {
  return is_numeric(type_) ? storage_i64(storage_) : std::nullopt;
}
std::optional<double> GgufValue::as_f64() const {
  return is_numeric(type_) ? storage_f64(storage_) : std::nullopt;
}
std::optional<bool> GgufValue::as_bool() const {
  if (auto b = std::get_if<bool>(&storage_)) return *b;
  return std::nullopt;
}
std::optional<std::string_view> GgufValue::as_string() const {
  if (auto s = std::get_if<std::string_view>(&storage_)) return *s;
  return std::nullopt;
}
const GgufArray* GgufValue::as_array() const {
  if (auto a = std::get_if<std::shared_ptr<const GgufArray>>(&storage_)) return a->get();
  return nullptr;
}

GgufFile GgufFile::open(const std::string& path) {
  GgufFile file;
  file.path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw GgufError(cat(path, ": cannot open: ", std::strerror(errno)));
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int error = errno;
    ::close(fd);
    throw GgufError(cat(path, ": cannot stat: ", std::strerror(error)));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    throw GgufError(cat(path, ": not a regular file"));
  }
  if (info.st_size == 0) {
    ::close(fd);
    throw GgufError(cat(path, ": header: empty file (0 bytes), not a GGUF model"));
  }
  void* map = ::mmap(nullptr, static_cast<std::size_t>(info.st_size), PROT_READ, MAP_PRIVATE,
                     fd, 0);
  const int error = errno;
  ::close(fd);
  if (map == MAP_FAILED) throw GgufError(cat(path, ": cannot map: ", std::strerror(error)));
  file.base_ = static_cast<const uint8_t*>(map);
  file.size_ = static_cast<std::size_t>(info.st_size);
  file.parse();  // on a throw, file's destructor unmaps
  return file;
}

GgufFile::GgufFile(GgufFile&& other) noexcept
    : path_(std::move(other.path_)),
      base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      version_(other.version_),
      alignment_(other.alignment_),
      data_offset_(other.data_offset_),
      metadata_(std::move(other.metadata_)),
      tensors_(std::move(other.tensors_)) {}

GgufFile& GgufFile::operator=(GgufFile&& other) noexcept {
  if (this != &other) {
    if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
    path_ = std::move(other.path_);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    version_ = other.version_;
    alignment_ = other.alignment_;
    data_offset_ = other.data_offset_;
    metadata_ = std::move(other.metadata_);
    tensors_ = std::move(other.tensors_);
  }
  return *this;
}

GgufFile::~GgufFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

void GgufFile::parse() {
  Cursor in(base_, size_, path_);
  if (size_ < 4) in.fail(cat("too small to be a GGUF file (", size_, " bytes)"));
  if (std::memcmp(base_, "GGUF", 4) != 0) {
    std::string magic;
    for (int i = 0; i < 4; ++i) {
      const char c = static_cast<char>(base_[i]);
      static const char kHex[] = "0123456789abcdef";
      magic += (c >= 0x20 && c < 0x7f) ? std::string(1, c)
                                       : std::string{'\\', 'x', kHex[base_[i] >> 4], kHex[base_[i] & 15]};
    }
    in.fail(cat("not a GGUF file: magic is '", magic, "', expected 'GGUF'"));
  }
  in.skip(4, "magic");
  version_ = in.read<uint32_t>("version");
  if (version_ == 1)
    in.fail("GGUF version 1 is not supported (only 2 and 3); re-convert the model with a "
            "current llama.cpp");
  if (version_ != 2 && version_ != 3) {
    const uint32_t swapped = __builtin_bswap32(version_);
    if (swapped >= 1 && swapped <= 3)
      in.fail("big-endian GGUF file; only little-endian files are supported");
    in.fail(cat("unsupported GGUF version ", version_, " (only 2 and 3)"));
  }
  const uint64_t n_tensors = in.read<uint64_t>("tensor count");
  const uint64_t n_kv = in.read<uint64_t>("metadata count");
  constexpr uint64_t kMinKvBytes = 8 + 4 + 1;           // empty key, type, one-byte value
  constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, one dimension
  if (n_kv > in.remaining() / kMinKvBytes)
    in.fail(cat("metadata count ", n_kv, " cannot fit in the ", in.remaining(),
                " bytes left in the file"));
  if (n_tensors > in.remaining() / kMinTensorInfoBytes)
    in.fail(cat("tensor count ", n_tensors, " cannot fit in the ", in.remaining(),
                " bytes left in the file"));

  metadata_.reserve(n_kv);
  std::unordered_set<std::string_view> keys;
  for (uint64_t i = 0; i < n_kv; ++i) {
    in.section = cat("metadata #", i);
    const std::string_view key = in.read_string("key");
    in.section = cat("metadata '", key, "'");
    if (!keys.insert(key).second) in.fail("duplicate key");
    const GgufType type = read_type(in, "value type");
    metadata_.push_back({std::string(key), read_value(in, type, 0)});
  }

  in.section = "metadata 'general.alignment'";
  if (const GgufValue* value = find("general.alignment")) {
    const auto alignment = value->as_u64();
    if (!alignment || *alignment > (uint64_t{1} << 30))
      in.fail("must be an unsigned integer no larger than 2^30");
    if (*alignment == 0 || (*alignment & (*alignment - 1)) != 0)
      in.fail(cat("is ", *alignment, "; it must be a power of two"));
    alignment_ = static_cast<uint32_t>(*alignment);
  }

  tensors_.reserve(n_tensors);
  std::unordered_set<std::string_view> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    in.section = cat("tensor #", i);
    const std::string_view name = in.read_string("name");
    in.section = cat("tensor '", name, "'");
    if (!names.insert(name).second) in.fail("duplicate tensor name");
    GgufTensor t;
    t.name = std::string(name);
    const uint32_t n_dims = in.read<uint32_t>("dimension count");
    if (n_dims < 1 || n_dims > kMaxTensorDims)
      in.fail(cat("has ", n_dims, " dimensions; 1 to ", kMaxTensorDims, " are supported"));
    t.dims.resize(n_dims);
    for (auto& d : t.dims) d = in.read<uint64_t>("dimension");
    constexpr uint64_t kMaxElements = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    t.n_elements = 1;
    for (uint64_t d : t.dims) {
      if (d != 0 && t.n_elements > kMaxElements / d)
        in.fail(cat("dimensions ", dims_text(t.dims), " overflow the element count"));
      t.n_elements *= d;
    }
    const uint32_t type_number = in.read<uint32_t>("tensor type");
    const auto traits = ggml_type_traits(type_number);
    if (!traits)
      in.fail(cat("unknown tensor type ", type_number, " (this build reads ",
                  known_types_text(), ")"));
    t.type = traits->type;
    if (t.dims[0] % traits->block_elems != 0)
      in.fail(cat("row length ", t.dims[0], " (shape ", dims_text(t.dims),
                  ") is not a multiple of the ", traits->name, " block size ",
                  traits->block_elems));
    const uint64_t blocks = t.n_elements / traits->block_elems;
    if (blocks > std::numeric_limits<uint64_t>::max() / traits->block_bytes)
      in.fail(cat("byte size of shape ", dims_text(t.dims), " overflows"));
    t.n_bytes = blocks * traits->block_bytes;
    t.offset = in.read<uint64_t>("data offset");
    tensors_.push_back(std::move(t));
  }

  in.section = "data section";
  const uint64_t end_of_infos = in.pos();
  data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;
  const uint64_t file_size = size_;
  for (auto& t : tensors_) {
    in.section = cat("tensor '", t.name, "'");
    if (t.offset % alignment_ != 0)
      in.fail(cat("data offset ", t.offset, " is not a multiple of the alignment ",
                  alignment_));
    if (data_offset_ > file_size || t.offset > file_size - data_offset_ ||
        t.n_bytes > file_size - data_offset_ - t.offset)
      in.fail(cat("data [offset ", t.offset, ", size ", t.n_bytes,
                  "] beyond end of file (size ", file_size, ", data section at ",
                  data_offset_, ")"));
    t.data = base_ + data_offset_ + t.offset;
  }

  std::vector<const GgufTensor*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const auto& t : tensors_)
    if (t.n_bytes > 0) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensor& prev = *by_offset[i - 1];
    const GgufTensor& cur = *by_offset[i];
    if (prev.offset + prev.n_bytes > cur.offset) {
      in.section = cat("tensor '", cur.name, "'");
      in.fail(cat("data [offset ", cur.offset, ", size ", cur.n_bytes,
                  "] overlaps tensor '", prev.name, "' [offset ", prev.offset, ", size ",
                  prev.n_bytes, "]"));
    }
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const auto& kv : metadata_)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

void GgufFile::fail_key(std::string_view key, std::string_view expected) const {
  const GgufValue* value = find(key);
  std::string found = value ? std::string(gguf_type_name(value->type())) : "nothing";
  if (value) {
    if (auto i = value->as_i64()) found += cat(" ", *i);
    else if (auto u = value->as_u64()) found += cat(" ", *u);
    else if (auto d = value->as_f64()) found += cat(" ", *d);
    else if (auto a = value->as_array()) found += cat(" of ", gguf_type_name(a->elem_type));
  }
  throw GgufError(cat(path_, ": metadata '", key, "': expected ", expected, ", found ", found));
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* value = find(key);
  if (!value) return std::nullopt;
  if (auto s = value->as_string()) return std::string(*s);
  fail_key(key, "a string");
}

std::optional<uint64_t> GgufFile::get_u64(std::string_view key) const {
  const GgufValue* value = find(key);
  if (!value) return std::nullopt;
  if (auto u = value->as_u64()) return u;
  fail_key(key, "a non-negative integer");
}

std::optional<int64_t> GgufFile::get_i64(std::string_view key) const {
  const GgufValue* value = find(key);
  if (!value) return std::nullopt;
  if (auto i = value->as_i64()) return i;
  fail_key(key, "an integer that fits in 64 signed bits");
}

std::optional<double> GgufFile::get_f64(std::string_view key) const {
  const GgufValue* value = find(key);
  if (!value) return std::nullopt;
  if (auto d = value->as_f64()) return d;
  fail_key(key, "a number");
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* value = find(key);
  if (!value) return std::nullopt;
  if (auto b = value->as_bool()) return b;
  fail_key(key, "a bool");
}

std::vector<std::string_view> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* value = find(key);
  if (!value) return {};
  const GgufArray* array = value->as_array();
  if (!array || array->elem_type != GgufType::String) fail_key(key, "an array of strings");
  return array->strings;
}

std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
  const GgufValue* value = find(key);
  if (!value) return {};
  const GgufArray* array = value->as_array();
  if (!array || !is_numeric(array->elem_type)) fail_key(key, "an array of numbers");
  std::vector<float> out(array->size);
  for (uint64_t i = 0; i < array->size; ++i) out[i] = static_cast<float>(*array->f64_at(i));
  return out;
}

std::vector<int32_t> GgufFile::get_i32_array(std::string_view key) const {
  const GgufValue* value = find(key);
  if (!value) return {};
  const GgufArray* array = value->as_array();
  if (!array || !is_numeric(array->elem_type) || array->elem_type == GgufType::F32 ||
      array->elem_type == GgufType::F64)
    fail_key(key, "an array of integers");
  std::vector<int32_t> out(array->size);
  for (uint64_t i = 0; i < array->size; ++i) {
    const auto element = array->i64_at(i);
    if (!element || *element < std::numeric_limits<int32_t>::min() ||
        *element > std::numeric_limits<int32_t>::max())
      fail_key(key, cat("32-bit integers (element ", i, " does not fit)"));
    out[i] = static_cast<int32_t>(*element);
  }
  return out;
}

const GgufTensor* GgufFile::tensor(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace troupe
