// replay_main.cc — runs a fuzz target over files, without libFuzzer: the g++ build links each
// target with this file, and ctest runs it over the target's seed corpus and regression inputs,
// so every input that once crashed stays a test in `make test` and `make test-asan`.
//
// Usage: fuzz_<target>_replay DIR_OR_FILE...   Directories are read (not recursively) in name
// order; names starting with '.' are skipped. A missing path, an unreadable file, or no input at
// all is a failure (exit 2): a replay that ran nothing proves nothing. A failed invariant aborts
// inside the target, after the name of the input was printed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

bool collect(const fs::path& p, std::vector<fs::path>& out) {
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) {
    out.push_back(p);
    return true;
  }
  if (!fs::is_directory(p, ec)) {
    std::fprintf(stderr, "replay: %s: no such file or directory\n", p.c_str());
    return false;
  }
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(p, ec)) {
    if (e.path().filename().string().starts_with(".")) continue;
    if (e.is_regular_file()) files.push_back(e.path());
  }
  if (ec) {
    std::fprintf(stderr, "replay: %s: %s\n", p.c_str(), ec.message().c_str());
    return false;
  }
  std::sort(files.begin(), files.end());
  out.insert(out.end(), files.begin(), files.end());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    if (!collect(argv[i], inputs)) return 2;
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "replay: no input (usage: %s DIR_OR_FILE...)\n", argv[0]);
    return 2;
  }
  for (const fs::path& p : inputs) {
    std::ifstream in(p, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
      return 2;
    }
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", p.c_str(), bytes.size());
    // A copy in a buffer of exactly its size, as libFuzzer passes it, so ASan sees any read past
    // the end.
    std::vector<std::uint8_t> data(bytes.begin(), bytes.end());
    LLVMFuzzerTestOneInput(data.empty() ? nullptr : data.data(), data.size());
  }
  std::fprintf(stderr, "replay: %zu input(s), all passed\n", inputs.size());
  return 0;
}
