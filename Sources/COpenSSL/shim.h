// Typed entry points into OpenSSL's libcrypto for the digests the gateway needs.
// No logic lives here: one-shot calls with explicit lengths, so Swift never touches OpenSSL structs.
#ifndef ACS_GATEWAY_COPENSSL_SHIM_H
#define ACS_GATEWAY_COPENSSL_SHIM_H

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

// SHA-256 of `length` bytes into `digest` (32 bytes). Returns 1 on success.
static inline int acsgw_sha256(const unsigned char *data, size_t length, unsigned char digest[32]) {
    return EVP_Digest(data, length, digest, NULL, EVP_sha256(), NULL);
}

// HMAC-SHA256 of `length` bytes with `key` into `mac` (32 bytes). Returns 1 on success.
static inline int acsgw_hmac_sha256(const unsigned char *key, int keyLength,
                                    const unsigned char *data, size_t length, unsigned char mac[32]) {
    unsigned int macLength = 0;
    return HMAC(EVP_sha256(), key, keyLength, data, length, mac, &macLength) != NULL && macLength == 32;
}

// Constant-time comparison of two equally long buffers: 0 when equal.
static inline int acsgw_memcmp_constant_time(const void *a, const void *b, size_t length) {
    return CRYPTO_memcmp(a, b, length);
}

// Cryptographically strong random bytes. Returns 1 on success.
static inline int acsgw_random_bytes(unsigned char *buffer, int length) {
    return RAND_bytes(buffer, length);
}

#endif
