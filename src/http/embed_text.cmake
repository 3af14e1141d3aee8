# Turns a text file into a C++ header holding it as a raw string literal in namespace fg::http.
#   cmake -DINPUT=dashboard.html -DOUTPUT=dashboard_html.h -DNAME=kDashboardHtml -P embed_text.cmake
# The header is rewritten only when its content changes, so an unchanged file rebuilds nothing.
file(READ "${INPUT}" content)
set(delimiter "fg_page")
string(FIND "${content}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains ')${delimiter}\"', which would end the raw string")
endif()
set(text "// Generated from ${INPUT} by src/http/embed_text.cmake: do not edit.\n")
string(APPEND text "#pragma once\n\n#include <string_view>\n\nnamespace fg::http {\n\n")
string(APPEND text "inline constexpr std::string_view ${NAME} = R\"${delimiter}(${content})${delimiter}\";\n")
string(APPEND text "\n}  // namespace fg::http\n")
file(WRITE "${OUTPUT}.tmp" "${text}")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
