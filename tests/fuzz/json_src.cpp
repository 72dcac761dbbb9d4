// Boost.JSON compiled into the fuzzer (header-only mode), so that its parser is instrumented
// for coverage too: the framer's behaviour depends on the parser's states.
#include <boost/json/src.hpp>
