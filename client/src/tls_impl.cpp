// The one translation unit of jim that compiles Asio's SSL part (BOOST_ASIO_SEPARATE_COMPILATION
// comes with jim_asio, whose own unit leaves SSL out: not every program links OpenSSL).
#include <boost/asio/ssl/impl/src.hpp>
