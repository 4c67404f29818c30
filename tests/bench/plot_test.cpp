#include "bench/plot.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <gtest/gtest.h>

#include "tests/util/scratch_file.hpp"

namespace troupe {
namespace {

PlotSpec two_series() {
  PlotSpec spec;
  spec.title = "throughput \"quoted\"";
  spec.x_label = "threads";
  spec.log2_x = true;
  spec.panels = {
      {"ops/s",
       "ops/s",
       {{"std", {1, 2, 4}, {10, 20, 40}}, {"parking", {1, 2, 4}, {11, std::nan(""), 44}}}},
      {"p99", "ms", {}}};
  return spec;
}

TEST(Plot, ScriptHoldsEveryFinitePointAndOneLinePerSeries) {
  const std::string script = gnuplot_script(two_series(), "out.svg");
  EXPECT_NE(script.find("set output \"out.svg\""), std::string::npos);
  EXPECT_NE(script.find("$p0s0 << EOD\n1 10\n2 20\n4 40\nEOD\n"), std::string::npos) << script;
  EXPECT_NE(script.find("$p0s1 << EOD\n1 11\n4 44\nEOD\n"), std::string::npos) << script;
  EXPECT_NE(script.find("title \"std\""), std::string::npos);
  EXPECT_NE(script.find("title \"parking\""), std::string::npos);
  EXPECT_NE(script.find("throughput \\\"quoted\\\""), std::string::npos);
  EXPECT_NE(script.find("set logscale x 2"), std::string::npos);
  EXPECT_EQ(script.find("\"p99\""), std::string::npos);  // the empty panel is left out
  EXPECT_NE(script.find("set terminal svg size 560,"), std::string::npos);
}

TEST(Plot, NothingToPlotIsAnError) {
  PlotSpec spec;
  spec.panels = {{"empty", "ms", {{"nan only", {1}, {std::nan("")}}}}};
  EXPECT_THROW(gnuplot_script(spec, "out.svg"), std::runtime_error);
}

TEST(Plot, GnuplotWritesAnSvg) {
  test::ScratchFile svg;
  write_plot_svg(two_series(), svg.path());
  std::ifstream in(svg.path());
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NE(text.str().find("<svg"), std::string::npos);
  EXPECT_NE(text.str().find("parking"), std::string::npos);
  std::filesystem::remove(svg.path() + ".gp");
}

}  // namespace
}  // namespace troupe
