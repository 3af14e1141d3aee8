# Turns a Lua file into a C++ header holding it as a raw string literal.
#   cmake -DINPUT=decide.lua -DOUTPUT=decide_lua.h -DNAME=kDecideLuaSource -P embed_lua.cmake
# The header is rewritten only when its content changes, so an unchanged script rebuilds nothing.
file(READ "${INPUT}" content)
set(delimiter "fg_lua")
string(FIND "${content}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains ')${delimiter}\"', which would end the raw string")
endif()
set(text "// Generated from ${INPUT} by src/store/redis/embed_lua.cmake: do not edit.\n")
string(APPEND text "#pragma once\n\n#include <string_view>\n\nnamespace fg::redis {\n\n")
string(APPEND text "inline constexpr std::string_view ${NAME} = R\"${delimiter}(${content})${delimiter}\";\n")
string(APPEND text "\n}  // namespace fg::redis\n")
file(WRITE "${OUTPUT}.tmp" "${text}")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
