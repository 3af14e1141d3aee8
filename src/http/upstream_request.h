// upstream_request.h — the pure rewrites of proxy mode (upstream.h): the request sent to the
// upstream, built from the client's, its bytes on the wire, and the response brought back.
// Apart from the pool's coroutines, so that a fuzz target (fuzz/http_request.cc) can check what
// is forwarded for every request the server reads.
//
// Thread safety: pure functions over values. Failure: none.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>
#include <string_view>

#include "config/values.h"
#include "http/request_arena.h"

namespace fg::http {

namespace beast_http = boost::beast::http;
// The request type of handler.h (an upstream request is made on the heap: request_arena.h).
using Request =
    beast_http::request<beast_http::string_body, beast_http::basic_fields<ArenaAllocator<char>>>;
using Response = beast_http::response<beast_http::string_body>;

// Pure: the request to send upstream, built from the client's request `in`:
//  - hop-by-hop fields removed (RFC 9110 §7.6.1): Connection and every field it names,
//    Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Authorization,
//    Proxy-Authenticate;
//  - `client_ip` appended to X-Forwarded-For (existing non-empty values kept, in order, joined as
//    "a, b, client_ip"; several XFF fields become one);
//  - Host kept as the client sent it (set to the target's "host:port" if absent);
//  - HTTP/1.1, keep-alive; Content-Length from the body (present when the body is not empty and
//    for POST, PUT and PATCH; absent otherwise); Connection: close when GET, HEAD, DELETE,
//    OPTIONS, TRACE or CONNECT carries a body (servers that expect none would read it as the
//    next request), and forward() does not pool that connection;
//  - method (unknown methods too), target, every other header (order and spelling kept) and the
//    body unchanged.
// Failure: std::length_error (Beast's) when the X-Forwarded-For it composes passes 65,533 bytes,
// which only a request header over 64 KiB can make (server.max_header_bytes may allow one).
Request make_upstream_request(const Request& in, std::string_view client_ip,
                              const config::HostPort& target);

// The bytes of `request` on the wire, as Beast's serializer would write them: `head` (filled
// here, replacing what it held; a connection keeps its capacity from one request to the next),
// then the request's body as it is, then the returned tail (static text). The head is the
// request line, the fields in order and the blank line. The body is framed as the fields say: as
// it is (the Content-Length of make_upstream_request()'s requests, which never carry
// Transfer-Encoding; the tail is empty), or, for a request whose Transfer-Encoding ends in
// chunked, as one chunk and the last chunk (the head ends with the chunk's size). Written
// together (a gather write), the three are one write. Failure: none.
std::string_view serialize_request(std::string& head, const Request& request);

// Pure: hop-by-hop fields (the list above, and every field Connection names) removed from an
// upstream response before it is returned to the client (the server sets its own Connection /
// Content-Length). Everything else, Content-Length included, is left as it is. Idempotent.
void strip_hop_by_hop(Response& response);

}  // namespace fg::http
