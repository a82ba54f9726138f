#include "demo/page.h"

namespace weft::demo {
namespace {

std::string decodeEntities(std::string_view s) {
  static constexpr std::pair<std::string_view, char> kEntities[] = {
      {"&amp;", '&'},  {"&lt;", '<'},   {"&gt;", '>'},
      {"&quot;", '"'}, {"&#39;", '\''}, {"&#x27;", '\''}};
  std::string out;
  for (size_t i = 0; i < s.size();) {
    bool done = false;
    if (s[i] == '&')
      for (const auto& [name, c] : kEntities)
        if (s.substr(i, name.size()) == name) {
          out += c;
          i += name.size();
          done = true;
          break;
        }
    if (!done) out += s[i++];
  }
  return out;
}

std::string trimmed(std::string s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string paragraph(std::string_view html, std::string_view id) {
  std::string open = "<p id=\"" + std::string(id) + "\"";
  size_t at = html.find(open);
  if (at == std::string_view::npos) return "";
  size_t gt = html.find('>', at);
  if (gt == std::string_view::npos) return "";
  size_t end = html.find("</p>", gt);
  if (end == std::string_view::npos) return "";
  return trimmed(decodeEntities(html.substr(gt + 1, end - gt - 1)));
}

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

PageLines parsePage(std::string_view html) {
  return PageLines{paragraph(html, "frontend"), paragraph(html, "nodejs"),
                   paragraph(html, "crystal")};
}

bool pageComplete(const PageLines& p) { return pageProblems(p).empty(); }

std::string pageProblems(const PageLines& p) {
  std::string out;
  auto check = [&](std::string_view name, const std::string& line, std::string_view want) {
    if (startsWith(line, want)) return;
    if (!out.empty()) out += "; ";
    out += std::string(name) + ": " + (line.empty() ? std::string("missing") : line);
  };
  check("frontend", p.frontend, "Rails frontend:");
  check("nodejs", p.nodejs, "Node.js backend:");
  check("crystal", p.crystal, "Crystal backend:");
  return out;
}

std::string lineAddress(std::string_view line) {
  size_t from = line.find(" from ");
  if (from == std::string_view::npos) return "";
  std::string_view rest = line.substr(from + 6);
  size_t sp = rest.find(' ');
  return std::string(rest.substr(0, sp));
}

}  // namespace weft::demo
