#include "logging.hpp"
#include "net/tls.hpp"
#include "options.hpp"
#include "server.hpp"

#include <filesystem>
#include <iostream>

namespace {
/// --check-config: what parse_options accepted, plus what the daemon would load before
/// listening (the TLS certificate and key). Prints "OK" (exit 0) or one line (exit 2).
int check_config(jim::server::config const& cfg) {
  using namespace jim::server;
  if (!cfg.tls_cert.empty()) {
    try {
      net::tls_manager tls(cfg.tls_cert, cfg.tls_key, cfg.tls_required);
    } catch (std::exception const& e) {
      std::cerr << "jimd: " << escape_for_people(plain_error(e)) << "\n";  // names the option
      return 2;
    }
  }
  std::cout << "OK\n";
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace jim::server;
  auto parsed = parse_options(argc, argv);
  if (auto* out = std::get_if<print_and_exit>(&parsed)) {
    if (out->exit_code == 0)
      std::cout << out->text;
    else  // one line that may quote a value from the command line or the config file
      std::cerr << escape_for_people(out->text.substr(0, out->text.find_last_not_of('\n') + 1))
                << "\n";
    return out->exit_code;
  }
  auto& cfg = std::get<run_daemon>(parsed).cfg;
  if (cfg.check_config) return check_config(cfg);
  try {
    setup_logging(cfg);
  } catch (std::filesystem::filesystem_error const& e) {
    std::cerr << "jimd: cannot use the log directory '" << escape_for_people(cfg.log_dir)
              << "' (--log-dir): " << escape_for_people(e.code().message()) << "\n";
    return 1;
  } catch (std::exception const& e) {
    std::cerr << "jimd: cannot write logs in '" << escape_for_people(cfg.log_dir)
              << "' (--log-dir): " << escape_for_people(plain_error(e)) << "\n";
    return 1;
  }
  try {
    server s(cfg);
    return s.run();
  } catch (std::exception const& e) {
    spdlog::critical("fatal: {}", plain_error(e));
    spdlog::shutdown();
    return 1;
  }
}
