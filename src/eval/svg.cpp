#include "eval/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace specq::eval {

SvgWriter::SvgWriter(double width, double height) : width_(width), height_(height) {}

void SvgWriter::rect(double x, double y, double w, double h, std::string_view fill) {
  body_ += fmt::format("  <rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"/>\n", x, y, w,
                       h, xml_escape(fill));
}

void SvgWriter::line(double x1, double y1, double x2, double y2, std::string_view stroke, bool dashed) {
  body_ += fmt::format("  <line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\"{}/>\n", x1, y1,
                       x2, y2, xml_escape(stroke), dashed ? " stroke-dasharray=\"5,4\"" : "");
}

void SvgWriter::text(double x, double y, std::string_view content, double size, std::string_view anchor, bool bold,
                     double rotate) {
  const std::string turn = rotate != 0.0 ? fmt::format(" transform=\"rotate({:.0f} {:.1f} {:.1f})\"", rotate, x, y) : "";
  body_ += fmt::format("  <text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{:.0f}\" text-anchor=\"{}\"{}{}>{}</text>\n", x,
                       y, size, anchor, bold ? " font-weight=\"bold\"" : "", turn, xml_escape(content));
}

std::string SvgWriter::str() const {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0:.0f}\" height=\"{1:.0f}\" viewBox=\"0 0 {0:.0f} {1:.0f}\" "
      "font-family=\"sans-serif\">\n  <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{2}</svg>\n",
      width_, height_, body_);
}

std::string xml_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string bar_chart_svg(const std::string& title, const std::string& y_label, const std::vector<Bar>& bars,
                          double reference) {
  constexpr double kLeft = 70, kRight = 20, kTop = 50, kBottom = 110, kPlotHeight = 300, kSlot = 90;
  const double width = kLeft + kRight + kSlot * double(std::max<size_t>(bars.size(), 1));
  const double height = kTop + kPlotHeight + kBottom;
  double top_value = reference;
  for (const Bar& b : bars)
    if (std::isfinite(b.value)) top_value = std::max(top_value, b.value);
  // A round axis maximum a little above the tallest bar, ticks every half or whole unit.
  const double axis_max = std::max(1.0, std::ceil(top_value * 1.15 * 2.0) / 2.0);
  const double tick = axis_max > 5 ? 1.0 : 0.5;
  auto y_of = [&](double v) { return kTop + kPlotHeight * (1.0 - v / axis_max); };

  SvgWriter svg(width, height);
  svg.text(width / 2, 24, title, 15, "middle", true);
  for (double v = 0; v <= axis_max + 1e-9; v += tick) {
    svg.line(kLeft, y_of(v), width - kRight, y_of(v), "#e4e4e4");
    svg.text(kLeft - 8, y_of(v) + 4, fmt::format("{:.1f}", v), 11, "end");
  }
  svg.text(20, kTop + kPlotHeight / 2, y_label, 12, "middle", false, -90);
  static constexpr const char* kColors[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
                                            "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  for (size_t i = 0; i < bars.size(); ++i) {
    const double x = kLeft + kSlot * double(i) + kSlot * 0.2;
    const double w = kSlot * 0.6;
    const double v = std::isfinite(bars[i].value) ? std::max(0.0, bars[i].value) : 0.0;
    svg.rect(x, y_of(v), w, y_of(0) - y_of(v), kColors[i % std::size(kColors)]);
    svg.text(x + w / 2, y_of(v) - 5, std::isfinite(bars[i].value) ? fmt::format("{:.2f}x", bars[i].value) : "n/a",
             11, "middle", true);
    // Long labels wrap onto a second line at a separator.
    const std::string& label = bars[i].label;
    const size_t split = label.size() > 14 ? label.find_first_of("-_ /", label.size() / 3) : std::string::npos;
    if (split == std::string::npos) {
      svg.text(x + w / 2, y_of(0) + 18, label, 11);
    } else {
      svg.text(x + w / 2, y_of(0) + 18, label.substr(0, split + 1), 11);
      svg.text(x + w / 2, y_of(0) + 32, label.substr(split + 1), 11);
    }
  }
  svg.line(kLeft, y_of(reference), width - kRight, y_of(reference), "#333333", true);
  svg.line(kLeft, y_of(0), width - kRight, y_of(0), "#333333");
  return svg.str();
}

}  // namespace specq::eval
