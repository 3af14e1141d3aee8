# tests/require_tools.sh — sourced by the shell tests: what to do when a tool a test needs is
# missing, the same rule as the C++ fixtures (tests/fixtures/redis_server.h, FG_MISSING_TOOL).
#
#   require_tools COMMAND:PACKAGE ...
#
# For each missing command: under CI (CI set to anything but "", "0" or "false") the test fails
# (exit 1), since ctest counts a skip as a pass and a CI run without Redis or HAProxy must not be
# green; locally it is skipped (exit 77, which tests/CMakeLists.txt declares as SKIP_RETURN_CODE)
# with the Debian package to install named.

fg_under_ci() {
  case ${CI:-} in "" | 0 | false | FALSE | False) return 1 ;; *) return 0 ;; esac
}

require_tools() {
  local spec missing=()
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec%%:*} (apt-get install ${spec#*:})")
  done
  ((${#missing[@]} == 0)) && return 0
  if fg_under_ci; then
    echo "FAIL: not installed: ${missing[*]}; CI is set: a missing test dependency fails" >&2
    exit 1
  fi
  echo "SKIP: not installed: ${missing[*]}" >&2
  exit 77
}
