// empty_reads.h — counts the socket reads of this process that found nothing to read (EAGAIN):
// its recv and recvmsg stand in for the C library's, so every call of the code linked into the
// test executable (Asio's reads among them) reaches them. Include it in exactly one file of an
// executable.
#pragma once

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace fg::test {

inline std::atomic<long> g_empty_reads{0};

inline ssize_t count_empty_read(long result) {
  if (result < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    g_empty_reads.fetch_add(1, std::memory_order_relaxed);
  }
  return static_cast<ssize_t>(result);
}

}  // namespace fg::test

extern "C" ssize_t recv(int fd, void* buf, size_t len, int flags) {
  return fg::test::count_empty_read(syscall(SYS_recvfrom, fd, buf, len, flags, nullptr, nullptr));
}

extern "C" ssize_t recvmsg(int fd, struct msghdr* msg, int flags) {
  return fg::test::count_empty_read(syscall(SYS_recvmsg, fd, msg, flags));
}
