#pragma once
/// \file
/// The web client's files, embedded into the binary at build time from web/ (see
/// server/embed_web.cmake): the daemon needs nothing next to it at run time.

#include <span>
#include <string_view>

namespace jim::server {

struct web_asset {
  std::string_view path;          ///< "/index.html", "/app.js", ...
  std::string_view content_type;  ///< from the file's extension
  std::string_view body;
};

std::span<web_asset const> web_assets();

}  // namespace jim::server
