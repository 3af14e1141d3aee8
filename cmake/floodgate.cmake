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
