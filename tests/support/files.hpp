#pragma once
/// \file
/// Whole-file helpers for tests that check what the daemon leaves on disk.

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace jim::test {

inline std::string read_bytes(std::filesystem::path const& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_bytes(std::filesystem::path const& p, std::string const& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

}  // namespace jim::test
