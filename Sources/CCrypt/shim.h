// Typed entry points into libxcrypt's crypt(3) for the users file of SMTP AUTH (yescrypt, bcrypt, sha512crypt).
// No logic lives here: each shim gives Swift explicit buffers and lengths, and keeps `struct crypt_data` (32 KiB)
// on the heap and wiped, so Swift never touches it.
#ifndef ACS_GATEWAY_CCRYPT_SHIM_H
#define ACS_GATEWAY_CCRYPT_SHIM_H

#include <crypt.h>
#include <stdlib.h>
#include <string.h>

// Hashes `phrase` with `setting` (a prefix such as "$y$j9T$salt", or a whole stored hash to check a password
// against) into `output`. Returns 1 on success; 0 when the setting is invalid or `output` is too small.
static inline int acsgw_crypt(const char *phrase, const char *setting, char *output, size_t outputSize) {
    struct crypt_data *data = calloc(1, sizeof(struct crypt_data));
    if (data == NULL) return 0;
    const char *result = crypt_r(phrase, setting, data);
    int ok = result != NULL && result[0] != '*' && strlen(result) < outputSize;
    if (ok) memcpy(output, result, strlen(result) + 1);
    explicit_bzero(data, sizeof(struct crypt_data));
    free(data);
    return ok;
}

// A new setting (method prefix and random salt) for `prefix` ("$y$", "$2b$", "$6$") at the library's default
// cost. Returns 1 on success.
static inline int acsgw_crypt_gensalt(const char *prefix, char *output, int outputSize) {
    return crypt_gensalt_rn(prefix, 0, NULL, 0, output, outputSize) != NULL;
}

// crypt_checksalt(3): CRYPT_SALT_OK, _INVALID, _METHOD_DISABLED, _METHOD_LEGACY or _TOO_CHEAP.
static inline int acsgw_crypt_checksalt(const char *setting) { return crypt_checksalt(setting); }
static inline int acsgw_crypt_salt_ok(void) { return CRYPT_SALT_OK; }
static inline int acsgw_crypt_salt_legacy(void) { return CRYPT_SALT_METHOD_LEGACY; }
static inline int acsgw_crypt_salt_too_cheap(void) { return CRYPT_SALT_TOO_CHEAP; }
static inline int acsgw_crypt_output_size(void) { return CRYPT_OUTPUT_SIZE; }
static inline int acsgw_crypt_gensalt_output_size(void) { return CRYPT_GENSALT_OUTPUT_SIZE; }

#endif
