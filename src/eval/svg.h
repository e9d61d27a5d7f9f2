// A small SVG writer (rectangles, lines, text) and the report's bar chart.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace specq::eval {

class SvgWriter {
 public:
  SvgWriter(double width, double height);
  void rect(double x, double y, double w, double h, std::string_view fill);
  void line(double x1, double y1, double x2, double y2, std::string_view stroke, bool dashed = false);
  // anchor: "start", "middle" or "end"; `rotate` turns the text (degrees) about (x, y).
  void text(double x, double y, std::string_view content, double size = 12, std::string_view anchor = "middle",
            bool bold = false, double rotate = 0.0);
  std::string str() const;

 private:
  double width_, height_;
  std::string body_;
};

// XML-escapes &, <, >, " and '.
std::string xml_escape(std::string_view text);

struct Bar {
  std::string label;
  double value = 0.0;
};

// Vertical bars with their values printed on top, a dashed line at y = `reference` (1.0 for speedups).
std::string bar_chart_svg(const std::string& title, const std::string& y_label, const std::vector<Bar>& bars,
                          double reference);

}  // namespace specq::eval
