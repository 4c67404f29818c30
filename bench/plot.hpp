#pragma once
// Plots for --plot FILE.svg: panels side by side sharing one x axis (batch size, thread
// count), one line per series (a combination or sync mode), drawn by gnuplot into an SVG.
// The gnuplot script, data inline, is kept next to the picture as FILE.svg.gp so that it can
// be edited and re-run. Throws std::runtime_error when the files cannot be written or
// gnuplot is missing or fails (the message says how to install it). Not thread-safe.

#include <filesystem>
#include <string>
#include <vector>

namespace troupe {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;  // same length; NaN points are left out
};

struct PlotPanel {
  std::string title;
  std::string y_label;
  std::vector<PlotSeries> series;
};

struct PlotSpec {
  std::string title;
  std::string x_label;
  bool log2_x = false;  // thread counts and batch sizes double
  std::vector<PlotPanel> panels;
};

// The gnuplot script that draws spec into svg_path. Panels and series without a finite point
// are left out; throws std::runtime_error when nothing is left.
std::string gnuplot_script(const PlotSpec& spec, const std::filesystem::path& svg_path);
void write_plot_svg(const PlotSpec& spec, const std::filesystem::path& svg_path);

}  // namespace troupe
