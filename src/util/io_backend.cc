#include "util/io_backend.h"

#include <cstring>

#if defined(BOOST_ASIO_HAS_IO_URING) && defined(BOOST_ASIO_DISABLE_EPOLL)
#include <liburing.h>
#endif

namespace fg::util {

std::string io_backend_unavailable() {
#if defined(BOOST_ASIO_HAS_IO_URING) && defined(BOOST_ASIO_DISABLE_EPOLL)
  io_uring ring{};
  const int result = ::io_uring_queue_init(1, &ring, 0);
  if (result == 0) {
    ::io_uring_queue_exit(&ring);
    return {};
  }
  return std::string(
             "this floodgate is built on io_uring (FG_IO_URING=ON), and this machine "
             "refuses it: io_uring_setup: ") +
         std::strerror(-result) +
         ". Allow io_uring (the sysctl kernel.io_uring_disabled; a container's seccomp profile) or "
         "run a build with FG_IO_URING=OFF, on epoll";
#else
  return {};
#endif
}

}  // namespace fg::util
