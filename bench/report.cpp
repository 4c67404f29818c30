#include "bench/report.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <ostream>
#include <stdexcept>

#include <fmt/format.h>

namespace troupe {
namespace {

std::ofstream open_for_writing(const std::filesystem::path& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot open '" + path.string() + "' for writing");
  return out;
}

void finish_writing(std::ofstream& out, const std::filesystem::path& path) {
  out.flush();
  if (!out) throw std::runtime_error("failed writing '" + path.string() + "'");
}

// Replaces NaN and infinities, which JSON cannot represent, by null.
nlohmann::json without_non_finite(const nlohmann::json& value) {
  if (value.is_number_float() && !std::isfinite(value.get<double>())) return nullptr;
  if (value.is_object()) {
    nlohmann::json copy = nlohmann::json::object();
    for (const auto& [key, element] : value.items()) copy[key] = without_non_finite(element);
    return copy;
  }
  if (value.is_array()) {
    nlohmann::json copy = nlohmann::json::array();
    for (const auto& element : value) copy.push_back(without_non_finite(element));
    return copy;
  }
  return value;
}

}  // namespace

TextTable::TextTable(std::vector<Column> columns) : columns_(std::move(columns)) {}

void TextTable::add_row(std::vector<std::string> cells) {
  if (cells.size() != columns_.size())
    throw std::invalid_argument(fmt::format("table row has {} cells for {} columns",
                                            cells.size(), columns_.size()));
  rows_.push_back(std::move(cells));
}

void TextTable::print(std::ostream& out) const {
  std::vector<std::size_t> widths;
  for (const Column& column : columns_) widths.push_back(column.header.size());
  for (const auto& row : rows_)
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());

  auto print_line = [&](auto&& cell_of) {
    std::string line;
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      const std::string& cell = cell_of(i);
      const std::string padding(widths[i] - cell.size(), ' ');
      if (i > 0) line += "  ";
      line += columns_[i].align == Align::Left ? cell + padding : padding + cell;
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out << line << '\n';
  };
  print_line([&](std::size_t i) -> const std::string& { return columns_[i].header; });
  for (const auto& row : rows_)
    print_line([&](std::size_t i) -> const std::string& { return row[i]; });
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string line;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) line += ',';
    const std::string& field = fields[i];
    if (field.find_first_of(",\"\r\n") == std::string::npos) {
      line += field;
      continue;
    }
    line += '"';
    for (char c : field) {
      if (c == '"') line += '"';
      line += c;
    }
    line += '"';
  }
  return line;
}

void write_csv_file(const std::filesystem::path& path, const std::vector<std::string>& header,
                    const std::vector<std::vector<std::string>>& rows) {
  std::ofstream out = open_for_writing(path);
  out << csv_line(header) << '\n';
  for (const auto& row : rows) out << csv_line(row) << '\n';
  finish_writing(out, path);
}

void write_json_file(const std::filesystem::path& path, const nlohmann::json& document) {
  std::ofstream out = open_for_writing(path);
  out << without_non_finite(document).dump(2) << '\n';
  finish_writing(out, path);
}

std::string format_si(double value) {
  if (std::isnan(value)) return "-";
  const double magnitude = std::fabs(value);
  const char* suffix = "";
  double scaled = value;
  if (magnitude >= 1e9) {
    scaled = value / 1e9, suffix = " G";
  } else if (magnitude >= 1e6) {
    scaled = value / 1e6, suffix = " M";
  } else if (magnitude >= 1e3) {
    scaled = value / 1e3, suffix = " k";
  }
  const double scaled_magnitude = std::fabs(scaled);
  const int decimals = scaled_magnitude >= 100 ? 0 : scaled_magnitude >= 10 ? 1 : 2;
  return fmt::format("{:.{}f}{}", scaled, decimals, suffix);
}

std::string format_duration_ns(double nanoseconds) {
  if (std::isnan(nanoseconds)) return "-";
  const double magnitude = std::fabs(nanoseconds);
  if (magnitude < 1e3) return fmt::format("{:.0f} ns", nanoseconds);
  if (magnitude < 1e6) return fmt::format("{:.3g} us", nanoseconds / 1e3);
  if (magnitude < 1e9) return fmt::format("{:.3g} ms", nanoseconds / 1e6);
  return fmt::format("{:.3g} s", nanoseconds / 1e9);
}

std::string format_fixed(double value, int decimals) {
  if (std::isnan(value)) return "-";
  return fmt::format("{:.{}f}", value, decimals);
}

}  // namespace troupe
