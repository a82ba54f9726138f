#pragma once
// The reference scenario's page, as the frontend renders it (examples/crossvpc/apps/README.md):
// three paragraphs <p id="frontend">, <p id="nodejs"> and <p id="crystal">. `weft demo` reads
// it through the gateway to tell when the scenario works and to print a sample.

#include <string>
#include <string_view>
#include <vector>

namespace weft::demo {

struct PageLines {
  std::string frontend;  // "Rails frontend: Hello! from 198.18.1.10 in us-west-2a"
  std::string nodejs;    // "Node.js backend: Hello! from ..." or "no backend found"
  std::string crystal;   // "Crystal backend: Hello! from ..." or "no backend found"
};

// The text of each paragraph (HTML entities decoded, surrounding space trimmed); "" when the
// paragraph is missing.
PageLines parsePage(std::string_view html);

// Every line answered by its app: the frontend's, and both backends' (not "no backend found").
bool pageComplete(const PageLines& p);

// What is still missing, for progress lines: "nodejs: no backend found; crystal: missing".
// "" when complete.
std::string pageProblems(const PageLines& p);

// The address in "... Hello! from <IP> in <AZ>", or "".
std::string lineAddress(std::string_view line);

}  // namespace weft::demo
