#include "store/redis/keys.h"

#include <openssl/sha.h>

#include <array>

namespace fg::redis {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";

// Bytes written as %XX: the hash-tag braces, the escape character itself, '#' (the marker of
// a hashed identity), and everything that is not printable ASCII, so keys stay readable in
// redis-cli and logs and carry no control bytes.
constexpr bool needs_escape(unsigned char c) {
  return c < 0x20 || c >= 0x7f || c == '{' || c == '}' || c == '%' || c == '#';
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
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (needs_escape(c)) {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
}

std::string escape_identity(std::string_view identity) {
  if (identity.empty()) return std::string(1, '%');
  std::string out;
  if (identity.size() > kMaxPlainIdentityBytes) {
    std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
    SHA256(reinterpret_cast<const unsigned char*>(identity.data()), identity.size(), digest.data());
    out.reserve(1 + 2 * digest.size());
    out.push_back('#');
    for (const unsigned char b : digest) {
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 0xf]);
    }
    return out;
  }
  out.reserve(identity.size() + 8);
  append_escaped(out, identity);
  return out;
}

void append_key(std::string& out, std::string_view prefix, std::string_view escaped_identity,
                std::string_view policy) {
  append_escaped(out, prefix);
  out += ":{";
  out += escaped_identity;
  out += "}:";
  append_escaped(out, policy);
}

std::string make_key(std::string_view prefix, std::string_view identity, std::string_view policy) {
  std::string key;
  append_key(key, prefix, escape_identity(identity), policy);
  return key;
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
