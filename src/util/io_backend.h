#pragma once
// The I/O backend this build runs on: Asio's epoll reactor by default; built with
// -DFG_IO_URING=ON (CMakeLists.txt), io_uring for every socket and timer. The choice is made when
// floodgate is compiled, for the whole program: Asio has no way to pick one when it runs.

#include <string>
#include <string_view>

namespace fg::util {

#if defined(BOOST_ASIO_HAS_IO_URING) && defined(BOOST_ASIO_DISABLE_EPOLL)
inline constexpr bool kIoUring = true;
#else
inline constexpr bool kIoUring = false;
#endif

inline constexpr std::string_view kIoBackend = kIoUring ? "io_uring" : "epoll";

// Empty when this build's backend works on this machine. Otherwise why it does not, and what to
// do, for the operator: a kernel can refuse io_uring (the sysctl kernel.io_uring_disabled), and
// so can a seccomp profile (the default profiles of Docker and containerd refuse io_uring_setup).
// Asio would throw from the first io_context instead, with no hint of either.
std::string io_backend_unavailable();

}  // namespace fg::util
