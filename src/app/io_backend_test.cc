// The I/O backend of this build (util/io_backend.h), run as an operator runs the binary: on this
// machine, and on one that refuses io_uring as a container's seccomp profile does. The refusal is
// made here the same way: a seccomp filter that answers io_uring_setup with EPERM, installed in
// the child before it executes floodgate.
#include "util/io_backend.h"

#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <string>
#include <vector>

namespace {

#if defined(__x86_64__)
constexpr unsigned kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned kAuditArch = AUDIT_ARCH_AARCH64;
#else
constexpr unsigned kAuditArch = 0;  // the refusal cases are skipped
#endif

const std::string kFloodgate = FG_BINARY_DIR "/floodgate";

// In the child, between fork and exec: io_uring_setup fails with EPERM from now on, for this
// process and what it executes; every other system call is allowed.
bool refuse_io_uring() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

struct Outcome {
  int exit_code = -1;  // -1: killed by a signal
  std::string out, err;
};

std::string drain(int fd) {
  std::string text;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n > 0) {
      text.append(chunk, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      return text;
    }
  }
}

// floodgate ARGS, with io_uring refused when `refused`. Every command run here ends by itself.
Outcome run_floodgate(std::vector<std::string> args, bool refused) {
  int out[2], err[2];
  if (::pipe(out) != 0 || ::pipe(err) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::close(out[0]);
    ::close(err[0]);
    if (refused && !refuse_io_uring()) ::_exit(120);
    std::vector<char*> argv{const_cast<char*>(kFloodgate.c_str())};
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(kFloodgate.c_str(), argv.data());
    ::_exit(121);
  }
  ::close(out[1]);
  ::close(err[1]);
  Outcome run;
  // Small outputs: stdout, then stderr, cannot fill a pipe and stall the child.
  run.out = drain(out[0]);
  run.err = drain(err[0]);
  ::close(out[0]);
  ::close(err[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
  return run;
}

const std::vector<std::string> kCheck{"check", "--policy", "per-minute", "--key", "k"};

TEST(IoBackend, TheBuildsBackendRunsOnThisMachine) {
  EXPECT_EQ(fg::util::io_backend_unavailable(), "");
  const Outcome run = run_floodgate(kCheck, false);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("\"allowed\":true"), std::string::npos) << run.out;
}

TEST(IoBackend, AMachineThatRefusesIoUringIsToldSoByTheCommandsThatNeedIt) {
  if (kAuditArch == 0) GTEST_SKIP() << "no seccomp architecture known for this machine";
  const Outcome check = run_floodgate(kCheck, true);
  ASSERT_NE(check.exit_code, 120) << "the seccomp filter could not be installed";
  if (!fg::util::kIoUring) {
    // The epoll build never asks for io_uring: the refusal changes nothing.
    EXPECT_EQ(check.exit_code, 0) << check.err;
    EXPECT_NE(check.out.find("\"allowed\":true"), std::string::npos) << check.out;
    return;
  }
  // check: no decision (2), and why, rather than an exception from Asio's first io_context.
  EXPECT_EQ(check.exit_code, 2) << check.err;
  EXPECT_EQ(check.out, "");
  EXPECT_NE(check.err.find("io_uring_setup: Operation not permitted"), std::string::npos)
      << check.err;
  EXPECT_NE(check.err.find("FG_IO_URING=OFF"), std::string::npos) << check.err;
  // serve stops before it listens, with exit 1 and the same reason.
  const Outcome serve = run_floodgate({"serve", "--listen", "127.0.0.1:0"}, true);
  EXPECT_EQ(serve.exit_code, 1) << serve.err;
  EXPECT_NE(serve.err.find("io_uring_setup: Operation not permitted"), std::string::npos)
      << serve.err;
  // A command without an io_context still runs.
  const Outcome validate =
      run_floodgate({"validate", FG_SOURCE_DIR "/deploy/local/floodgate.yaml"}, true);
  EXPECT_EQ(validate.exit_code, 0) << validate.out << validate.err;
}

}  // namespace
