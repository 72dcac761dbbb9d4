// Placeholder for the interactive client (issue 5).
#include <iostream>
#include <string_view>

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--version" || a == "-V") { std::cout << "jim 0.1.0\n"; return 0; }
    if (a == "--help" || a == "-h") { std::cout << "Usage: jim [-a ADDR] [-p PORT] [-u NAME] | jim ADDR PORT\n"; return 0; }
  }
  std::cerr << "jim: not implemented yet\n";
  return 1;
}
