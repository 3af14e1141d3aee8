#include "http/wire.h"

#include <algorithm>
#include <boost/beast/http/field.hpp>
#include <charconv>

#include "util/text.h"

namespace fg::http {
namespace {

namespace beast_http = boost::beast::http;

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

// What every response says in Server.
constexpr std::string_view kServerName = "floodgate";

}  // namespace

namespace {

// The status line, fields and blank line, in `out`, with room for `room` bytes more.
void append_head(std::string& out, const Response& r, const HeaderFields& extra, std::size_t room) {
  const std::string_view reason = sv(r.reason());
  std::size_t size = 32 + reason.size() + room + extra.wire().size();
  for (const auto& f : r) size += f.name_string().size() + f.value().size() + 4;
  out.clear();
  out.reserve(size);
  out += r.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  char status[10];  // Beast holds a status of three digits
  const auto end = std::to_chars(status, status + sizeof status, r.result_int()).ptr;
  out.append(status, end);
  out += ' ';
  out += reason;
  out += "\r\n";
  for (const auto& f : r) {
    out += sv(f.name_string());
    out += ": ";
    out += sv(f.value());
    out += "\r\n";
  }
  out += extra.wire();
  out += "\r\n";
}

}  // namespace

void serialize_response(std::string& out, const Response& r, const HeaderFields& extra) {
  append_head(out, r, extra, r.body().size());
  out += r.body();
}

void serialize_response_head(std::string& out, const Response& r, const HeaderFields& extra) {
  append_head(out, r, extra, 0);
}

std::string serialize_response(const Response& r, const HeaderFields& extra) {
  std::string out;
  serialize_response(out, r, extra);
  return out;
}

bool transfer_encoding_acceptable(const Request::header_type& header) {
  auto [it, end] = header.equal_range(beast_http::field::transfer_encoding);
  if (it == end) return true;
  if (std::next(it) != end) return false;  // readers join or pick fields differently
  // 1#transfer-coding, without parameters (no registered coding has one that matters here):
  // tokens separated by commas and optional spaces, empty elements allowed (RFC 9110 §5.6.1).
  std::string_view v = sv(it->value());
  std::size_t chunked = 0;
  bool last_chunked = false;
  bool any = false;
  while (!v.empty()) {
    const std::size_t comma = v.find(',');
    const std::string_view element = util::trim_ows(v.substr(0, comma));
    v.remove_prefix(comma == std::string_view::npos ? v.size() : comma + 1);
    if (element.empty()) continue;
    if (!std::all_of(element.begin(), element.end(), util::is_tchar)) return false;
    any = true;
    last_chunked = util::iequals(element, "chunked");
    chunked += last_chunked ? 1 : 0;
  }
  return any && last_chunked && chunked == 1;
}

Response read_error_response(int status) {
  std::string detail;
  switch (status) {
    case 408:
      detail = "the request took too long to arrive";
      break;
    case 413:
      detail = "the request body is too large";
      break;
    case 431:
      detail = "the request header section is too large";
      break;
    case 503:
      detail =
          "the server holds as many request bodies as it may (server.max_body_memory); retry "
          "shortly";
      break;
    default:
      detail = "the request could not be parsed as HTTP/1.1";
      break;
  }
  Response r = problem_response(11, status, detail);
  r.set(beast_http::field::server,
        boost::beast::string_view(kServerName.data(), kServerName.size()));
  if (status == 503) r.set(beast_http::field::retry_after, "1");
  r.keep_alive(false);
  r.prepare_payload();
  return r;
}

}  // namespace fg::http
