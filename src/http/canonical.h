// canonical.h — the one view of a request that floodgate decides on and acts on (design §2.4).
//
// A request is read once, from its request line and header section (never a trailer, never the
// body), and rewritten in place into its canonical form before anything looks at it. Policies
// match on that form, identities are taken from it, the demo resource answers it and proxy mode
// forwards exactly it. A request that has no single unambiguous canonical form is refused with
// 400, with the reason. The rules, and why (docs/security.md):
//
// Method: upper case ("post", "Post" -> "POST"). Methods are case-sensitive in HTTP, but common
//   servers and frameworks route them case-insensitively, so a policy on POST must count "post".
//   A request that names another method than its own in X-HTTP-Method-Override, X-HTTP-Method,
//   X-Method-Override or a `_method` query parameter is refused: frameworks run a POST that
//   names DELETE there as DELETE, which a policy on DELETE would not have counted.
// Target forms (RFC 9112 §3.2):
//   origin-form "/path?query"  the path is canonicalized (below), the query kept as sent;
//   absolute-form "http://host/path?q" or "https://..." (scheme in any case): the path and query
//       are taken as in origin-form and forwarded in origin-form; the authority replaces Host
//       (RFC 9112 §3.2.2). Any other scheme ("ftp://h/api") is refused: upstreams that ignore
//       the scheme would serve it as /api;
//   asterisk-form "*": OPTIONS only;
//   anything else (authority-form, a relative path, a fragment '#') is refused.
// Path:
//   - every %XX escape is decoded once; an escape of '/', '\', '%' or a control character, and a
//     '%' that starts no escape, are refused: an upstream that decodes (once or twice) or treats
//     '\' as '/' would otherwise see other segments than were matched;
//   - a raw '\' and ';' (raw or encoded) are refused: upstreams read '\' as '/', and many strip
//     ";params" from a segment ("/api;x/items" is "/api/items" there);
//   - empty segments ("//") collapse, "." and ".." segments are resolved (never above "/"), a
//     trailing slash is kept;
//   - then written back with every byte that is not unreserved, a sub-delimiter, ':' or '@'
//     percent-encoded in upper-case hex (a space as %20, non-ASCII bytes as %XX).
//   Canonicalizing a canonical path changes nothing, and decoding it once (as a lenient upstream
//   does) gives exactly the segments that were matched.
//   A segment that ends with '.' or a space ("/api./x": Windows servers strip them), and a path
//   that is not well-formed UTF-8 once decoded (overlong "%C0%AF" is '/' to lenient decoders),
//   are refused.
// Host: lower case, without a trailing dot (names are case-insensitive; "example.com." is
//   "example.com"); userinfo ("u@h") refused, in Host or in an absolute-form authority, and so is
//   anything but a host name or IP literal and a port (RFC 9112 §3.2), there and in
//   X-Forwarded-Host and Forwarded's host= (forwarded_hosts): URL parsers read "example.com/x",
//   "example%2Ecom", "example.com\\x" or fullwidth letters as a host floodgate did not match.
//   There, a host is a token or one quoted string with no quote, backslash, ',' or ';' inside:
//   readers unquote differently ("api\".example.com\"" is api.example.com to one that drops
//   every quote, api to one that stops at the first).
//   No Host: refused in HTTP/1.1 (but for an absolute-form target), empty in HTTP/1.0.
// Fields floodgate reads: Host, and every header that an identity source or a policy's `match`
//   reads, must appear at most once (counting "X_API_Key" as "X-API-Key", as CGI-style servers
//   do), hold one value (no ',' list: RFC 9110 makes "a, b" two fields), and not be named by
//   Connection (which would drop it before the upstream). Readers disagree on which of several
//   values to use (the first, the last, all joined), so the client could otherwise spend one
//   value's budget while the upstream acts on another.
//
// Thread safety: pure functions. Failure: the refusal's reason, for a 400 problem's detail.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/handler.h"

namespace fg::http {

// The canonical path of an origin-form path (the part of the target before '?'), or why there is
// none. "/a//b/./c/../d" -> "/a/b/d"; "/%61pi/%7euser" -> "/api/~user"; "/a b" -> "/a%20b";
// "/api%2Fx" -> refused.
struct CanonicalPath {
  std::string path;   // empty when refused
  std::string error;  // why it was refused; empty when not
};
CanonicalPath canonical_path(std::string_view path);

// Rewrites `request` (its header section; the body is not read) into its canonical form, as the
// rules at the top of this file say. `single_fields` are the header names that must not be
// repeated besides Host (Runtime::single_fields). nullopt when done; else why the request is
// refused (answer 400 with it).
std::optional<std::string> canonicalize(Request& request,
                                        const std::vector<std::string>& single_fields);

// A host (and port) as canonicalize() writes Host: lower case, no trailing dot.
std::string canonical_host(std::string_view host);

// Every host an upstream behind a proxy may act on instead of Host, joined with ',': each entry
// of every X-Forwarded-Host field, and what follows each "host=" anywhere in a Forwarded field
// (its host parameters, and what a reader that splits on ',' before unquoting takes for one),
// trimmed, without quotes. Field names are compared as CGI-style servers do ('_'
// as '-'). A superset of what any reader finds: a policy on Host matches if any of them names
// its host (decide::Query::forwarded_hosts). "" when the request has neither field.
std::string forwarded_hosts(const Request& request);

// The request's path (its target up to '?'), for a request canonicalize() accepted.
std::string_view target_path(const Request& request);

}  // namespace fg::http
