#include "bench/plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

namespace troupe {
namespace {

std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + '"';
}

std::string shell_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

bool has_point(const PlotSeries& series) {
  for (std::size_t i = 0; i < series.x.size() && i < series.y.size(); ++i)
    if (std::isfinite(series.x[i]) && std::isfinite(series.y[i])) return true;
  return false;
}

}  // namespace

std::string gnuplot_script(const PlotSpec& spec, const std::filesystem::path& svg_path) {
  std::vector<const PlotPanel*> panels;
  for (const PlotPanel& panel : spec.panels)
    if (std::any_of(panel.series.begin(), panel.series.end(), has_point)) panels.push_back(&panel);
  if (panels.empty()) throw std::runtime_error("nothing to plot: no finite point in any panel");
  std::string script = fmt::format(
      "set terminal svg size {},480 dynamic enhanced font 'sans,11' background rgb 'white'\n"
      "set output {}\nset key below\nset grid\nset format y '%g'\n"
      "set offsets graph 0.04, graph 0.04, 0, 0\nset xlabel {}\n",
      panels.size() * 560, quoted(svg_path.string()), quoted(spec.x_label));
  if (spec.log2_x) script += "set logscale x 2\n";
  for (std::size_t p = 0; p < panels.size(); ++p)
    for (std::size_t s = 0; s < panels[p]->series.size(); ++s) {
      const PlotSeries& series = panels[p]->series[s];
      script += fmt::format("$p{}s{} << EOD\n", p, s);
      for (std::size_t i = 0; i < series.x.size() && i < series.y.size(); ++i)
        if (std::isfinite(series.x[i]) && std::isfinite(series.y[i]))
          script += fmt::format("{:.9g} {:.9g}\n", series.x[i], series.y[i]);
      script += "EOD\n";
    }
  script += fmt::format("set multiplot layout 1,{} title {}\n", panels.size(), quoted(spec.title));
  for (std::size_t p = 0; p < panels.size(); ++p) {
    script += fmt::format("set title {}\nset ylabel {}\nset yrange [0:*]\nplot ",
                          quoted(panels[p]->title), quoted(panels[p]->y_label));
    bool first = true;
    for (std::size_t s = 0; s < panels[p]->series.size(); ++s) {
      if (!has_point(panels[p]->series[s])) continue;
      script += fmt::format("{}$p{}s{} using 1:2 with linespoints lw 2 title {}",
                            first ? "" : ", \\\n     ", p, s, quoted(panels[p]->series[s].name));
      first = false;
    }
    script += "\n";
  }
  script += "unset multiplot\n";
  return script;
}

void write_plot_svg(const PlotSpec& spec, const std::filesystem::path& svg_path) {
  const std::filesystem::path script_path = svg_path.string() + ".gp";
  {
    std::ofstream out(script_path, std::ios::trunc);
    if (!out) throw std::runtime_error("cannot open '" + script_path.string() + "' for writing");
    out << gnuplot_script(spec, svg_path);
    out.flush();
    if (!out) throw std::runtime_error("failed writing '" + script_path.string() + "'");
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    throw std::runtime_error(
        "--plot needs gnuplot (apt-get install gnuplot-nox, or "
        "scripts/setup); the script is in '" +
        script_path.string() + "'");
  const std::string command = "gnuplot " + shell_quoted(script_path.string()) + " 2>&1";
  if (std::system(command.c_str()) != 0)
    throw std::runtime_error("gnuplot failed on '" + script_path.string() + "'");
}

}  // namespace troupe
