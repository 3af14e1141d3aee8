# Helpers shared by every directory: one warning set, one sanitizer switch, and small functions
# so each CMakeLists.txt says only what it builds.

set(FG_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
    -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough)
if(FG_WERROR)
  list(APPEND FG_WARNINGS -Werror)
endif()

if(FG_SANITIZE)
  add_compile_options(-fsanitize=${FG_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${FG_SANITIZE})
  if(FG_SANITIZE MATCHES "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # g++ warns that ThreadSanitizer does not model std::atomic_thread_fence, which Asio's
    # completion handlers use (std_fenced_block). Those fences only back up the scheduler's
    # mutex, which ThreadSanitizer does see; the warning would stop the -Werror build.
    add_compile_options(-Wno-tsan)
  endif()
endif()

# Asio keeps freed operation and coroutine-frame blocks per thread for reuse, by default 2 per
# purpose. A server thread has a read, a timer wait and two or three coroutine frames of
# several sizes in flight per connection, so 2 slots mostly missed, and every miss is an aligned
# heap allocation: bench/instructions.sh counted 17.3 allocations per request on one Redis with
# 2, 7.9 with 16 (4.5 against 6.0 on the memory store). With 16, sessions waiting on Redis
# together still missed for their frames (0.7 of the 0.8 left per request); with 64, 0.1
# (bench/instructions.sh, one run). The cache holds at most 64 blocks of at most 1,020 bytes for
# each of Asio's five purposes: under 320 KiB per thread. A larger block (a coroutine frame over
# 1,020 bytes) is never kept: src/http/server_frames_test.cc. Every translation unit must agree
# on the value (it sizes a per-thread array), hence one definition for the whole build.
# src/http/asio_recycling_test.cc fails with the default.
add_compile_definitions(BOOST_ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE=64)

# libFuzzer builds (fuzz/): every library instrumented for coverage and checked by ASan + UBSan;
# only the fuzz executables link libFuzzer's main (fuzz/CMakeLists.txt).
if(FG_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()

# fg_library(NAME SRCS a.cc b.cc DEPS x y)
function(fg_library name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SRCS})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE ${FG_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# fg_test(NAME SRCS a_test.cc DEPS x y [LABELS unit])
function(fg_test name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src
                             ${PROJECT_SOURCE_DIR}/tests)
  target_compile_options(${name} PRIVATE ${FG_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE FG_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                             FG_BINARY_DIR="${PROJECT_BINARY_DIR}")
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  gtest_discover_tests(${name} TEST_PREFIX "${name}." PROPERTIES LABELS "${ARG_LABELS}"
                       DISCOVERY_TIMEOUT 60)
endfunction()

# fg_bench(NAME SRCS a_bench.cc DEPS x y)
function(fg_bench name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE ${FG_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} benchmark::benchmark)
endfunction()
