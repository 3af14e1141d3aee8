#include "util/keyed_hash.h"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <random>
#include <string>

namespace fg::util {
namespace {

// SipHash-C-D of `bytes` under `key` by OpenSSL's SIPHASH MAC: the reference the hash is checked
// against. Its 8 output bytes are the 64-bit value, little-endian.
std::uint64_t openssl_siphash(const HashKey& key, std::string_view bytes, unsigned c, unsigned d) {
  std::array<unsigned char, 16> raw{};
  for (int w = 0; w < 2; ++w) {
    for (int b = 0; b < 8; ++b) raw[w * 8 + b] = static_cast<unsigned char>(key[w] >> (8 * b));
  }
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "SIPHASH", nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  std::size_t size = 8;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                         OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_C_ROUNDS, &c),
                         OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_D_ROUNDS, &d),
                         OSSL_PARAM_construct_end()};
  std::array<unsigned char, 8> out{};
  std::size_t written = 0;
  const bool ok = EVP_MAC_init(ctx, raw.data(), raw.size(), params) == 1 &&
                  EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(bytes.data()),
                                 bytes.size()) == 1 &&
                  EVP_MAC_final(ctx, out.data(), &written, out.size()) == 1;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  EXPECT_TRUE(ok && written == 8) << "OpenSSL's SIPHASH failed";
  std::uint64_t v = 0;
  for (int b = 0; b < 8; ++b) v |= std::uint64_t{out[b]} << (8 * b);
  return v;
}

// The reference's key (bytes 00..0f) and messages (00, 01, .. n-1), as in the SipHash paper's
// test vectors.
const HashKey kReferenceKey = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};

std::string counting_bytes(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s.push_back(static_cast<char>(i));
  return s;
}

// Every length up to 64 (each tail length, several whole words) under the reference's key, both
// round counts; store/redis/keys_test writes out the paper's vectors for SipHash-2-4.
TEST(SipHash, AgreesWithOpenSslOnEveryLengthUnderTheReferenceKey) {
  for (std::size_t n = 0; n <= 64; ++n) {
    const std::string m = counting_bytes(n);
    EXPECT_EQ((siphash<2, 4>(kReferenceKey, m)), openssl_siphash(kReferenceKey, m, 2, 4)) << n;
    EXPECT_EQ((siphash<1, 3>(kReferenceKey, m)), openssl_siphash(kReferenceKey, m, 1, 3)) << n;
  }
}

TEST(SipHash, AgreesWithOpenSslOnRandomKeysAndBytes) {
  std::mt19937_64 rng(20261206);
  for (int i = 0; i < 2000; ++i) {
    const HashKey key = {rng(), rng()};
    std::string m(rng() % 200, '\0');
    for (char& c : m) c = static_cast<char>(rng());
    ASSERT_EQ((siphash<1, 3>(key, m)), openssl_siphash(key, m, 1, 3)) << i;
  }
}

TEST(KeyedHash, IsSipHash13UnderTheProcessKey) {
  const HashKey& key = process_hash_key();
  EXPECT_FALSE(key[0] == 0 && key[1] == 0);
  EXPECT_EQ(&key, &process_hash_key());  // drawn once
  for (const std::string_view s : {"", "=api-key", "per-minute\0=client"}) {
    EXPECT_EQ(keyed_hash(s), (siphash<1, 3>(key, s)));
    EXPECT_EQ(KeyedHash{}(s), keyed_hash(s));
  }
}

}  // namespace
}  // namespace fg::util
