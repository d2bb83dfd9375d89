// SHA-256 digests as OCI spells them ("sha256:<64 hex>").
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace cryo::storage {

// Incremental SHA-256 (OpenSSL EVP).
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  // Lowercase hex of the digest; the object must not be updated afterwards.
  std::string hex_digest();

 private:
  struct Free {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

std::string sha256_hex(std::string_view data);
// Digest of a file's bytes, read in chunks.
std::string sha256_file_hex(const std::string& path);

// "sha256:<hex>" -> "<hex>"; throws when the algorithm is not sha256 or the hex is malformed.
std::string digest_hex(std::string_view digest);
bool is_sha256_hex(std::string_view hex);

}  // namespace cryo::storage
