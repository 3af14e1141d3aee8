// keys.h — how a (prefix, identity, policy) triple becomes a Redis key, and which cluster slot
// that key lives in.
//
// Key: `<prefix>:{<tag>}:<escaped identity>:<escaped policy>`, e.g.
// `fg:{6c0e1bd2}:user-42:per-minute`. The tag is the hash tag: all the policies of one identity
// share it, hence one slot, so one script run can check and consume all of them atomically
// (design §3.3).
//
// The tag is what keeps a hostile client from choosing its slot. Redis Cluster hashes only the
// tag (CRC16, public), so if the tag were the identity itself, a client that controls its
// identity (an API key header, an address in its own /64) could compute, offline, identities
// that all land in one slot, i.e. on one master: thousands of keys and all their traffic aimed
// at one node of the cluster. Instead the tag is 8 hex digits of SipHash-2-4 of the escaped
// identity under a per-deployment secret (`key_secret`): a keyed pseudo-random function, so
// without the secret the slot of an identity cannot be computed or searched for, and every
// instance sharing the secret still computes the same key. SipHash is the function hash tables
// use against hash flooding (the same attack, one level down), and much cheaper per decision
// than an HMAC through OpenSSL's EVP layer. With no secret configured the SipHash key is zeros:
// public, so the slots are predictable again (floodgate serve warns with a cluster store).
//
// Escaping keeps a client in its own key: identities are any bytes, and Redis hashes what lies
// between the first '{' and the next '}'. So in the identity, the prefix and the policy name,
// '{', '}', '%', '#', control bytes and bytes >= 0x7f are written as %XX (upper-case hex): the
// only braces in a key are the tag's, which holds hex digits only, so the tag always ends where
// we closed it and no identity can reach into it.
//   - The empty identity becomes "%", which no other identity escapes to.
//   - An identity longer than 256 bytes becomes '#' + 64 hex digits of its SHA-256 (design §2.4:
//     long values are hashed). '#' is always escaped in identities, so a client cannot send the
//     digest of someone else's long identity as its own and share that client's state.
// The escaped identity is in the key (after the tag), not only in the tag, so the mapping is
// injective whatever the tags: different (prefix, identity, policy) give different keys (up to
// SHA-256 collisions between identities longer than 256 bytes), and the policy, which contains
// no ':', is what follows the last ':'.
//
// Slots: CRC16/XMODEM of the hash tag (or of the whole key without one) modulo 16384, exactly as
// the Redis Cluster specification defines keyHashSlot.
//
// Thread safety: pure functions; a TagKey is a plain value.
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

// The escaped identity: never empty, never contains '{' or '}'.
std::string escape_identity(std::string_view identity);

// Appends escape_identity(identity) to `out` (into its capacity: no allocation once it is large
// enough).
void append_escaped_identity(std::string& out, std::string_view identity);

// Appends `text` percent-escaped (the identity's rule without hashing or the empty case) to `out`.
void append_escaped(std::string& out, std::string_view text);

// The SipHash-2-4 key that makes hash tags unpredictable: the first 16 bytes of SHA-256 of
// `secret` (the key_secret text, any length). An empty secret gives the all-zero key (public).
struct TagKey {
  std::uint64_t k0 = 0;
  std::uint64_t k1 = 0;
};
TagKey make_tag_key(std::string_view secret);

// SipHash-2-4 (Aumasson and Bernstein, 2012) of `data` under `key`: the reference function, with
// the key read as two little-endian 64-bit words (key bytes 00 01 .. 0f -> k0 = 0x0706..00).
std::uint64_t siphash24(const TagKey& key, std::string_view data);

// The hash tag of an escaped identity: 8 lower-case hex digits of its SipHash-2-4.
inline constexpr std::size_t kTagLength = 8;
std::string hash_tag(const TagKey& key, std::string_view escaped_identity);

// `<prefix>:{<tag>}:<escaped identity>:<policy>` for a tag from hash_tag and an identity already
// escaped with escape_identity.
void append_key(std::string& out, std::string_view prefix, std::string_view tag,
                std::string_view escaped_identity, std::string_view policy);

// What every key of one identity begins with, `<prefix>:{<tag>}:<escaped identity>:`: append_key
// is this, then the policy escaped (append_escaped). It holds the whole hash tag, so its key_slot
// is every such key's.
void append_key_stem(std::string& out, std::string_view prefix, std::string_view tag,
                     std::string_view escaped_identity);

// The whole key: make_key("fg", key, "user-42", "per-minute") ==
// "fg:{" + hash_tag(key, "user-42") + "}:user-42:per-minute".
std::string make_key(std::string_view prefix, const TagKey& key, std::string_view identity,
                     std::string_view policy);

// The slot every key of `identity` lives in.
int identity_slot(const TagKey& key, std::string_view identity);

// CRC16/XMODEM (poly 0x1021, init 0, no reflection, no final xor), the checksum of the Redis
// Cluster specification. crc16("123456789") == 0x31C3.
std::uint16_t crc16(std::string_view data);

// The cluster slot of `key` (Redis keyHashSlot): if the key holds a '{' followed later by a '}'
// with at least one byte between them, only those bytes are hashed; otherwise the whole key.
int key_slot(std::string_view key);

}  // namespace fg::redis
