#include "store/redis/keys.h"

#include <openssl/sha.h>

#include <array>

#include "util/keyed_hash.h"
#include "util/text.h"

namespace fg::redis {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";

// The end of the run from text[i] that a key part holds as it is: printable ASCII but the
// hash-tag braces, the escape character itself and '#' (the marker of a hashed identity). Every
// other byte is written as %XX, so keys stay readable in redis-cli and logs and carry no control
// bytes.
std::size_t kept_run(std::string_view text, std::size_t i) {
  return util::printable_run<'{', '}', '%', '#'>(text, i);
}

// The CRC16/XMODEM table, computed at compile time from the polynomial 0x1021 (MSB first).
constexpr std::array<std::uint16_t, 256> make_crc16_table() {
  std::array<std::uint16_t, 256> table{};
  for (unsigned i = 0; i < 256; ++i) {
    unsigned crc = i << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1;
    }
    table[i] = static_cast<std::uint16_t>(crc & 0xffff);
  }
  return table;
}

constexpr std::array<std::uint16_t, 256> kCrc16Table = make_crc16_table();

}  // namespace

void append_escaped(std::string& out, std::string_view text) {
  // Runs of bytes kept as they are go out in one append each (an identity is usually one run),
  // not byte by byte: this is on every decision's path.
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t kept = kept_run(text, i);
    out.append(text.data() + i, kept - i);
    if (kept == text.size()) break;
    const auto c = static_cast<unsigned char>(text[kept]);
    const char escaped[3] = {'%', kHex[c >> 4], kHex[c & 0xf]};
    out.append(escaped, sizeof escaped);
    i = kept + 1;
  }
}

void append_escaped_identity(std::string& out, std::string_view identity) {
  if (identity.empty()) {
    out.push_back('%');
    return;
  }
  if (identity.size() > kMaxPlainIdentityBytes) {
    std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
    SHA256(reinterpret_cast<const unsigned char*>(identity.data()), identity.size(), digest.data());
    out.push_back('#');
    for (const unsigned char b : digest) {
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 0xf]);
    }
    return;
  }
  append_escaped(out, identity);
}

std::string escape_identity(std::string_view identity) {
  std::string out;
  out.reserve(identity.size() > kMaxPlainIdentityBytes ? 1 + 2 * SHA256_DIGEST_LENGTH
                                                       : identity.size() + 8);
  append_escaped_identity(out, identity);
  return out;
}

TagKey make_tag_key(std::string_view secret) {
  if (secret.empty()) return TagKey{};
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), digest.data());
  TagKey key;
  for (int i = 7; i >= 0; --i) {
    key.k0 = key.k0 << 8 | digest[i];
    key.k1 = key.k1 << 8 | digest[8 + i];
  }
  return key;
}

std::uint64_t siphash24(const TagKey& key, std::string_view data) {
  return util::siphash<2, 4>({key.k0, key.k1}, data);
}

std::string hash_tag(const TagKey& key, std::string_view escaped_identity) {
  static constexpr char kLowerHex[] = "0123456789abcdef";
  // The low 32 bits: enough to spread keys over 16384 slots uniformly, and short in every key.
  const std::uint64_t h = siphash24(key, escaped_identity);
  std::string tag(kTagLength, '0');
  for (std::size_t i = 0; i < kTagLength; ++i)
    tag[i] = kLowerHex[(h >> (4 * (kTagLength - 1 - i))) & 0xf];
  return tag;
}

void append_key_stem(std::string& out, std::string_view prefix, std::string_view tag,
                     std::string_view escaped_identity) {
  append_escaped(out, prefix);
  out += ":{";
  out += tag;
  out += "}:";
  out += escaped_identity;
  out.push_back(':');
}

void append_key(std::string& out, std::string_view prefix, std::string_view tag,
                std::string_view escaped_identity, std::string_view policy) {
  append_key_stem(out, prefix, tag, escaped_identity);
  append_escaped(out, policy);
}

std::string make_key(std::string_view prefix, const TagKey& key, std::string_view identity,
                     std::string_view policy) {
  const std::string escaped = escape_identity(identity);
  std::string out;
  append_key(out, prefix, hash_tag(key, escaped), escaped, policy);
  return out;
}

int identity_slot(const TagKey& key, std::string_view identity) {
  return crc16(hash_tag(key, escape_identity(identity))) & (kClusterSlots - 1);
}

std::uint16_t crc16(std::string_view data) {
  std::uint16_t crc = 0;
  for (const char ch : data) {
    const auto byte = static_cast<unsigned char>(ch);
    crc = static_cast<std::uint16_t>((crc << 8) ^ kCrc16Table[((crc >> 8) ^ byte) & 0xff]);
  }
  return crc;
}

int key_slot(std::string_view key) {
  // Cluster specification, "Hash tags": the first '{', then the first '}' after it; an empty
  // tag ("{}") does not count and the whole key is hashed.
  const std::size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const std::size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close != open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return crc16(key) & (kClusterSlots - 1);
}

}  // namespace fg::redis
