#pragma once
// Report output shared by every suite: aligned text tables for people, JSON and CSV files
// for machines. Not thread-safe; build a report on one thread.
// Writing a file that cannot be opened or written throws std::runtime_error naming the path.

#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe {

enum class Align { Left, Right };

struct Column {
  std::string header;
  Align align = Align::Right;
};

// A table printed with every column padded to its widest cell, two spaces between columns.
class TextTable {
 public:
  explicit TextTable(std::vector<Column> columns);
  // Throws std::invalid_argument unless the row has one cell per column.
  void add_row(std::vector<std::string> cells);
  void print(std::ostream& out) const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// One CSV line (RFC 4180): fields holding a comma, quote or line break are quoted.
std::string csv_line(const std::vector<std::string>& fields);

// Writes a header line and one line per row.
void write_csv_file(const std::filesystem::path& path, const std::vector<std::string>& header,
                    const std::vector<std::vector<std::string>>& rows);

// Writes the document pretty-printed (2-space indent), NaN and infinity as null.
void write_json_file(const std::filesystem::path& path, const nlohmann::json& document);

// Three significant digits with an SI suffix: "27.3 M", "812 k", "9.50"; "-" for NaN.
std::string format_si(double value);
// Nanoseconds, three significant digits: "850 ns", "12.3 us", "4.56 ms", "1.2 s"; "-" for NaN.
std::string format_duration_ns(double nanoseconds);
// Fixed decimals; "-" for NaN.
std::string format_fixed(double value, int decimals);

}  // namespace troupe
