// keys.h — how a (prefix, identity, policy) triple becomes a Redis key, and which cluster slot
// that key lives in.
//
// Key: `<prefix>:{<escaped identity>}:<escaped policy>`, e.g. `fg:{user-42}:per-minute`.
// The identity is the hash tag, so all the policies of one identity share a slot and one script
// run can check and consume all of them atomically (design §3.3).
//
// Escaping is what keeps a hostile client in its own key: identities are any bytes (an API key
// header, an IP), and Redis Cluster hashes only what lies between the first '{' and the next '}'.
// So '{', '}', '%', '#', control bytes and bytes >= 0x7f are written as %XX (upper-case hex):
// an escaped identity contains no brace, so the tag always ends where we closed it and no client
// can pick its slot or spill into another client's key. The prefix and the policy name (from the
// configuration) are escaped the same way, so the only braces in a key are the tag's.
//   - The empty identity becomes "%": never an empty hash tag (Redis would then hash the whole
//     key), and no other identity escapes to a lone '%'.
//   - An identity longer than 256 bytes becomes '#' + 64 hex digits of its SHA-256 (design §2.4:
//     long values are hashed). '#' is always escaped in identities, so a client cannot send the
//     digest of someone else's long identity as its own and share that client's state.
// The mapping is injective: different (prefix, identity, policy) give different keys, up to
// SHA-256 collisions between identities longer than 256 bytes.
//
// Slots: CRC16/XMODEM of the hash tag (or of the whole key without one) modulo 16384, exactly as
// the Redis Cluster specification defines keyHashSlot.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fg::redis {

// Identities up to this many bytes are kept (escaped); longer ones are hashed.
inline constexpr std::size_t kMaxPlainIdentityBytes = 256;

// Redis Cluster has 16384 hash slots.
inline constexpr int kClusterSlots = 16384;

// The escaped identity (the hash tag's content): never empty, never contains '{' or '}'.
std::string escape_identity(std::string_view identity);

// Appends `text` percent-escaped (the identity's rule without hashing or the empty case) to `out`.
void append_escaped(std::string& out, std::string_view text);

// `<prefix>:{<escaped identity>}:<policy>` for an identity already escaped with escape_identity.
void append_key(std::string& out, std::string_view prefix, std::string_view escaped_identity,
                std::string_view policy);

// make_key("fg", "user-42", "per-minute") == "fg:{user-42}:per-minute".
std::string make_key(std::string_view prefix, std::string_view identity, std::string_view policy);

// CRC16/XMODEM (poly 0x1021, init 0, no reflection, no final xor), the checksum of the Redis
// Cluster specification. crc16("123456789") == 0x31C3.
std::uint16_t crc16(std::string_view data);

// The cluster slot of `key` (Redis keyHashSlot): if the key holds a '{' followed later by a '}'
// with at least one byte between them, only those bytes are hashed; otherwise the whole key.
int key_slot(std::string_view key);

}  // namespace fg::redis
