#include "tests/util/gguf_writer.hpp"

#include <cstring>
#include <fstream>
#include <stdexcept>
#include <utility>

namespace troupe::test {
namespace {

template <class T>
void append(std::vector<uint8_t>& out, T value) {
  const std::size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

void append_string(std::vector<uint8_t>& out, std::string_view text) {
  append<uint64_t>(out, text.size());
  out.insert(out.end(), text.begin(), text.end());
}

template <class T>
GgufMeta scalar(GgufType type, T v) {
  GgufMeta m{type, {}};
  append(m.payload, v);
  return m;
}

void pad_to(std::vector<uint8_t>& out, uint64_t alignment) {
  while (out.size() % alignment != 0) out.push_back(0);
}

}  // namespace

GgufMeta meta_u8(uint8_t v) { return scalar(GgufType::U8, v); }
GgufMeta meta_i8(int8_t v) { return scalar(GgufType::I8, v); }
GgufMeta meta_u16(uint16_t v) { return scalar(GgufType::U16, v); }
GgufMeta meta_i16(int16_t v) { return scalar(GgufType::I16, v); }
GgufMeta meta_u32(uint32_t v) { return scalar(GgufType::U32, v); }
GgufMeta meta_i32(int32_t v) { return scalar(GgufType::I32, v); }
GgufMeta meta_u64(uint64_t v) { return scalar(GgufType::U64, v); }
GgufMeta meta_i64(int64_t v) { return scalar(GgufType::I64, v); }
GgufMeta meta_f32(float v) { return scalar(GgufType::F32, v); }
GgufMeta meta_f64(double v) { return scalar(GgufType::F64, v); }
GgufMeta meta_bool(bool v) { return scalar(GgufType::Bool, static_cast<uint8_t>(v)); }

GgufMeta meta_string(std::string_view v) {
  GgufMeta m{GgufType::String, {}};
  append_string(m.payload, v);
  return m;
}

GgufMeta meta_array(GgufType elem_type, const std::vector<GgufMeta>& elements) {
  GgufMeta m{GgufType::Array, {}};
  append<uint32_t>(m.payload, static_cast<uint32_t>(elem_type));
  append<uint64_t>(m.payload, elements.size());
  for (const auto& e : elements) m.payload.insert(m.payload.end(), e.payload.begin(), e.payload.end());
  return m;
}

GgufMeta meta_string_array(const std::vector<std::string>& v) {
  GgufMeta m{GgufType::Array, {}};
  append<uint32_t>(m.payload, static_cast<uint32_t>(GgufType::String));
  append<uint64_t>(m.payload, v.size());
  for (const auto& s : v) append_string(m.payload, s);
  return m;
}

GgufMeta meta_f32_array(std::span<const float> v) {
  GgufMeta m{GgufType::Array, {}};
  append<uint32_t>(m.payload, static_cast<uint32_t>(GgufType::F32));
  append<uint64_t>(m.payload, v.size());
  for (float x : v) append(m.payload, x);
  return m;
}

GgufMeta meta_i32_array(std::span<const int32_t> v) {
  GgufMeta m{GgufType::Array, {}};
  append<uint32_t>(m.payload, static_cast<uint32_t>(GgufType::I32));
  append<uint64_t>(m.payload, v.size());
  for (int32_t x : v) append(m.payload, x);
  return m;
}

void GgufWriter::set_alignment(uint32_t alignment) {
  alignment_ = alignment;
  add("general.alignment", meta_u32(alignment));
}

GgufWriter& GgufWriter::add(std::string key, GgufMeta value) {
  metadata_.emplace_back(std::move(key), std::move(value));
  return *this;
}

GgufWriter& GgufWriter::set(const std::string& key, GgufMeta value) {
  for (auto& [existing, old] : metadata_)
    if (existing == key) {
      old = std::move(value);
      return *this;
    }
  return add(key, std::move(value));
}

GgufWriter& GgufWriter::remove(const std::string& key) {
  std::erase_if(metadata_, [&](const auto& kv) { return kv.first == key; });
  return *this;
}

GgufWriter& GgufWriter::set_tensor(const std::string& name, GgmlType type,
                                   std::vector<uint64_t> dims, std::vector<uint8_t> data) {
  for (auto& t : tensors_)
    if (t.name == name) {
      t = {name, static_cast<uint32_t>(type), std::move(dims), std::move(data)};
      return *this;
    }
  return add_tensor(name, type, std::move(dims), std::move(data));
}

GgufWriter& GgufWriter::remove_tensor(const std::string& name) {
  std::erase_if(tensors_, [&](const Tensor& t) { return t.name == name; });
  return *this;
}

GgufWriter& GgufWriter::add_tensor(std::string name, GgmlType type, std::vector<uint64_t> dims,
                                   std::vector<uint8_t> data) {
  return add_tensor_raw_type(std::move(name), static_cast<uint32_t>(type), std::move(dims),
                             std::move(data));
}

GgufWriter& GgufWriter::add_tensor_raw_type(std::string name, uint32_t type,
                                            std::vector<uint64_t> dims,
                                            std::vector<uint8_t> data) {
  tensors_.push_back({std::move(name), type, std::move(dims), std::move(data)});
  return *this;
}

std::vector<uint8_t> GgufWriter::bytes(Layout* layout) const {
  // Valid alignments lay the data out; an invalid one (a test of the reader) falls back to 1.
  const uint64_t alignment =
      alignment_ != 0 && (alignment_ & (alignment_ - 1)) == 0 ? alignment_ : 1;
  Layout l;
  std::vector<uint8_t> out{'G', 'G', 'U', 'F', 0, 0, 0, 0};
  std::memcpy(out.data() + 4, &version_, sizeof version_);
  l.tensor_count_offset = out.size();
  append<uint64_t>(out, tensors_.size());
  l.kv_count_offset = out.size();
  append<uint64_t>(out, metadata_.size());
  for (const auto& [key, value] : metadata_) {
    l.kv_offsets.push_back(out.size());
    append_string(out, key);
    append<uint32_t>(out, static_cast<uint32_t>(value.type));
    out.insert(out.end(), value.payload.begin(), value.payload.end());
  }
  uint64_t relative = 0;
  std::vector<uint64_t> relative_offsets;
  for (const auto& t : tensors_) {
    l.tensor_info_offsets.push_back(out.size());
    append_string(out, t.name);
    append<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) append<uint64_t>(out, d);
    append<uint32_t>(out, t.type);
    append<uint64_t>(out, relative);
    relative_offsets.push_back(relative);
    relative = (relative + t.data.size() + alignment - 1) / alignment * alignment;
  }
  if (!tensors_.empty()) pad_to(out, alignment);
  l.data_offset = out.size();
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    l.tensor_data_offsets.push_back(l.data_offset + relative_offsets[i]);
    out.resize(l.data_offset + relative_offsets[i], 0);
    out.insert(out.end(), tensors_[i].data.begin(), tensors_[i].data.end());
  }
  if (layout) *layout = std::move(l);
  return out;
}

void GgufWriter::write(const std::string& path) const { write_file(path, bytes()); }

void put_u32(std::vector<uint8_t>& bytes, uint64_t offset, uint32_t value) {
  if (offset > bytes.size() || bytes.size() - offset < sizeof value) throw std::out_of_range("put_u32");
  std::memcpy(bytes.data() + offset, &value, sizeof value);
}

void put_u64(std::vector<uint8_t>& bytes, uint64_t offset, uint64_t value) {
  if (offset > bytes.size() || bytes.size() - offset < sizeof value) throw std::out_of_range("put_u64");
  std::memcpy(bytes.data() + offset, &value, sizeof value);
}

void write_file(const std::string& path, std::span<const uint8_t> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace troupe::test
