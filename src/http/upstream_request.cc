// upstream_request.cc — see upstream_request.h.
#include "http/upstream_request.h"

#include <algorithm>
#include <array>
#include <boost/beast/core/string.hpp>
#include <boost/container/small_vector.hpp>
#include <charconv>
#include <string>
#include <utility>

#include "util/text.h"

namespace fg::http {
namespace {

namespace beast = boost::beast;

// RFC 9110 §7.6.1, plus Proxy-Authorization / Proxy-Authenticate, which are meant for this
// hop only (RFC 9110 §11.7.1-2) and must not leak to or from the upstream.
constexpr std::array<beast_http::field, 9> kHopByHopFields = {
    beast_http::field::connection,
    beast_http::field::keep_alive,
    beast_http::field::proxy_connection,
    beast_http::field::te,
    beast_http::field::trailer,
    beast_http::field::transfer_encoding,
    beast_http::field::upgrade,
    beast_http::field::proxy_authorization,
    beast_http::field::proxy_authenticate,
};

// Beast has no enumerator for it: compared by name.
constexpr std::string_view kXForwardedFor = "X-Forwarded-For";

// Held inline up to four: a message names one or two ("keep-alive", "close", "Upgrade").
using ConnectionTokens = boost::container::small_vector<std::string_view, 4>;

// The field names listed by every Connection field ("Connection: close, X-Private" names
// "close" and "X-Private"; naming "close" removes nothing, as no field is called that).
// The views point into the Connection fields' values: valid while those fields are (erasing
// other fields leaves them, as each field is allocated on its own). A template, as is_hop_by_hop:
// a request's fields (RequestFields, on the connection's arena) passed as beast_http::fields
// would be converted into a temporary copy, and the views would point into freed memory.
template <typename Fields>
ConnectionTokens connection_tokens(const Fields& fields) {
  ConnectionTokens tokens;
  for (auto [it, end] = fields.equal_range(beast_http::field::connection); it != end; ++it) {
    std::string_view value = it->value();
    while (!value.empty()) {
      const std::size_t comma = value.find(',');
      const std::string_view token = util::trim_ows(value.substr(0, comma));
      if (!token.empty()) tokens.push_back(token);
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  return tokens;
}

// A field of a request (Request's fields) or of a response (beast_http::fields).
template <typename Field>
bool is_hop_by_hop(const Field& f, const ConnectionTokens& named) {
  if (std::find(kHopByHopFields.begin(), kHopByHopFields.end(), f.name()) !=
      kHopByHopFields.end()) {
    return true;
  }
  return std::any_of(named.begin(), named.end(), [&](std::string_view token) {
    return beast::iequals(token, f.name_string());
  });
}

void strip_fields(beast_http::fields& fields) {
  // The names are views into the Connection fields' values: those fields are erased last, after
  // every field they name (erasing one field frees that field alone).
  const ConnectionTokens named = connection_tokens(fields);
  for (auto it = fields.begin(); it != fields.end();) {
    const bool erase = it->name() != beast_http::field::connection && is_hop_by_hop(*it, named);
    it = erase ? fields.erase(it) : std::next(it);
  }
  fields.erase(beast_http::field::connection);
}

}  // namespace

Request make_upstream_request(const Request& in, std::string_view client_ip,
                              const config::HostPort& target) {
  Request out;
  if (in.method() == beast_http::verb::unknown) {
    out.method_string(in.method_string());
  } else {
    out.method(in.method());
  }
  out.target(in.target());
  out.version(11);  // HTTP/1.1: keep-alive unless Connection: close, which is stripped

  const ConnectionTokens named = connection_tokens(in);
  std::string forwarded_for;
  bool has_host = false;
  for (const auto& f : in) {
    if (is_hop_by_hop(f, named)) continue;
    if (f.name() == beast_http::field::content_length) continue;  // recomputed below
    if (beast::iequals(f.name_string(), kXForwardedFor)) {
      const std::string_view value = util::trim_ows(f.value());
      if (value.empty()) continue;
      if (!forwarded_for.empty()) forwarded_for += ", ";
      forwarded_for += value;
      continue;
    }
    if (f.name() == beast_http::field::host) has_host = true;
    out.insert(f.name_string(), f.value());
  }
  if (!has_host) out.set(beast_http::field::host, config::to_string(target));
  if (!forwarded_for.empty()) forwarded_for += ", ";
  forwarded_for += client_ip;
  out.insert(kXForwardedFor, forwarded_for);

  out.body() = in.body();
  // Not prepare_payload(): it throws for a TRACE with a body. Content-Length: 0 is kept for the
  // methods that normally carry a body, as some servers refuse them without a length (411).
  const beast_http::verb method = out.method();
  const bool body_is_read = method == beast_http::verb::post || method == beast_http::verb::put ||
                            method == beast_http::verb::patch;
  if (!out.body().empty() || body_is_read) out.content_length(out.body().size());
  // A body on any method but the three whose bodies servers read (RFC 9110 §9.3 gives a body
  // no meaning on GET, HEAD and DELETE; OPTIONS is mostly answered by CORS handlers; extension
  // methods such as PURGE are often routed without a body parser): a server that ignores its
  // Content-Length reads the body as the next request on the connection (a "CL.0" desync),
  // which no policy counted. After Connection: close it reads no further request there
  // (RFC 9112 §9.6), and the connection is not pooled (exchange()).
  if (!out.body().empty() && !body_is_read) out.keep_alive(false);
  return out;
}

void strip_hop_by_hop(Response& response) { strip_fields(response); }

std::string_view serialize_request(std::string& head, const Request& r) {
  const std::string_view method = r.method_string();
  const std::string_view target = r.target();
  const bool chunked = r.chunked();
  std::size_t size = 32 + method.size() + target.size();
  for (const auto& f : r) size += f.name_string().size() + f.value().size() + 4;
  head.clear();
  head.reserve(size);
  head += method;
  head += ' ';
  head += target;
  const unsigned version = r.version();  // Beast's: major * 10 + minor, one digit each
  head += " HTTP/";
  head += static_cast<char>('0' + version / 10 % 10);
  head += '.';
  head += static_cast<char>('0' + version % 10);
  head += "\r\n";
  for (const auto& f : r) {
    head += std::string_view(f.name_string());
    head += ": ";
    head += std::string_view(f.value());
    head += "\r\n";
  }
  head += "\r\n";
  if (!chunked) return {};
  if (r.body().empty()) {
    head += "0\r\n\r\n";  // the last chunk alone
    return {};
  }
  char length[16];  // the chunk's size in hex
  const auto end = std::to_chars(length, length + sizeof length, r.body().size(), 16).ptr;
  head.append(length, end);
  head += "\r\n";
  return "\r\n0\r\n\r\n";  // the chunk's end, then the last chunk
}

}  // namespace fg::http
