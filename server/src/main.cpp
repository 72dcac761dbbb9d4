#include "logging.hpp"
#include "options.hpp"
#include "server.hpp"

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  using namespace jim::server;
  auto parsed = parse_options(argc, argv);
  if (auto* out = std::get_if<print_and_exit>(&parsed)) {
    (out->exit_code == 0 ? std::cout : std::cerr) << out->text;
    return out->exit_code;
  }
  auto& cfg = std::get<run_daemon>(parsed).cfg;
  try {
    setup_logging(cfg);
  } catch (std::exception const& e) {
    std::cerr << "jimd: cannot set up logging in '" << cfg.log_dir << "': " << e.what() << "\n";
    return 1;
  }
  try {
    server s(cfg);
    return s.run();
  } catch (std::exception const& e) {
    spdlog::critical("fatal: {}", e.what());
    spdlog::shutdown();
    return 1;
  }
}
