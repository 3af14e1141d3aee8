// wire.h — HTTP/1.1 on the wire (RFC 9112): the framing a request must have to be read at all,
// the bytes of a response, and the answers to requests that could not be read. The session
// (server.cc) reads and writes with these; what to answer is handler.h's.
//
// Thread safety: pure functions over values. Failure: none.
#pragma once

#include <string>

#include "http/handler.h"
#include "http/rate_limit_headers.h"

namespace fg::http {

// The bytes of `response` on the wire: status line, fields in order, then `extra` in order,
// blank line, body. finish()/prepare() has set Content-Length, so the body is never chunked.
// One contiguous buffer, so one write.
std::string serialize_response(const Response& response, const HeaderFields& extra = {});
// The same bytes in `out` (replacing what it held), whose capacity a connection keeps from one
// answer to the next.
void serialize_response(std::string& out, const Response& response, const HeaderFields& extra);
// The same bytes but the body, in `out`: for a body written from the response itself, not copied
// (an upstream's large body is then held once).
void serialize_response_head(std::string& out, const Response& response, const HeaderFields& extra);

// Whether a request header's Transfer-Encoding frames its body unambiguously (RFC 9112 §6.1,
// §6.3): no Transfer-Encoding field, or exactly one, whose value is a list of coding names
// (tokens; no parameters) ending with the only "chunked". Anything else is answered 400 before
// the body is read: a coding after chunked, a value that is not a token list ("chunked\xf3 gzip"),
// several fields (which readers join or pick differently). Beast's parser judges only the last
// field and stops reading a list at its first bad byte, so on its own it takes
// "Transfer-Encoding: x" + "Transfer-Encoding: chunked\xf3 gzip" as chunked; a proxy in front
// may not. The session also requires the parser to agree (parser.chunked()).
bool transfer_encoding_acceptable(const Request::header_type& header);

// The status and short reason for a request that could not be read: 400 malformed, 413 body
// too large, 431 header section too large, 408 too slow. Closes the connection.
Response read_error_response(int status);

}  // namespace fg::http
