// Typed entry points into OpenSSL's libssl for the SMTP server's TLS (STARTTLS and implicit TLS over memory
// BIOs). No logic lives here: each shim wraps a macro or a variadic control call Swift cannot import, or
// gives a fixed callback, so Swift never touches OpenSSL structs.
#ifndef ACS_GATEWAY_COPENSSL_TLS_SHIM_H
#define ACS_GATEWAY_COPENSSL_TLS_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/bio.h>
#include <time.h>

// SSL_CTX_set_min_proto_version is a macro over SSL_CTX_ctrl. Returns 1 on success.
static inline int acsgw_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

// SSL_CTX_set_mode is a macro over SSL_CTX_ctrl.
static inline void acsgw_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) {
    SSL_CTX_set_mode(ctx, mode);
}

// SSL_CTX_set_session_cache_mode is a macro over SSL_CTX_ctrl.
static inline void acsgw_ssl_ctx_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    SSL_CTX_set_session_cache_mode(ctx, mode);
}

// SSL_CTX_add1_chain_cert is a macro over SSL_CTX_ctrl: adds an intermediate certificate (its reference is
// taken, the caller keeps its own). Returns 1 on success.
static inline int acsgw_ssl_ctx_add1_chain_cert(SSL_CTX *ctx, X509 *certificate) {
    return (int)SSL_CTX_add1_chain_cert(ctx, certificate);
}

// The option set of a server context: no renegotiation (a client-initiated renegotiation costs the server a
// handshake each time), the server's cipher order, no compression (CRIME).
static inline void acsgw_ssl_ctx_set_server_options(SSL_CTX *ctx) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
}

// The constants Swift imports with the wrong type or not at all (they are macros).
static inline long acsgw_ssl_mode_partial_write(void) { return SSL_MODE_ENABLE_PARTIAL_WRITE; }
static inline long acsgw_ssl_mode_release_buffers(void) { return SSL_MODE_RELEASE_BUFFERS; }
static inline long acsgw_ssl_sess_cache_server(void) { return SSL_SESS_CACHE_SERVER; }
static inline int acsgw_tls1_version(void) { return TLS1_VERSION; }
static inline int acsgw_tls1_1_version(void) { return TLS1_1_VERSION; }
static inline int acsgw_tls1_2_version(void) { return TLS1_2_VERSION; }
static inline int acsgw_tls1_3_version(void) { return TLS1_3_VERSION; }

// BIO_pending is a macro over BIO_ctrl: octets waiting to be read from a memory BIO.
static inline size_t acsgw_bio_pending(BIO *bio) {
    return BIO_ctrl_pending(bio);
}

// A passphrase callback that refuses: an encrypted key is an error at start, never a prompt on a terminal.
static inline int acsgw_refuse_passphrase(char *buffer, int size, int rwflag, void *userdata) {
    (void)buffer; (void)size; (void)rwflag; (void)userdata;
    return -1;
}

// Reads the first private key of a PEM buffer; NULL when there is none, or it is encrypted.
static inline EVP_PKEY *acsgw_read_private_key(BIO *bio) {
    return PEM_read_bio_PrivateKey(bio, NULL, acsgw_refuse_passphrase, NULL);
}

// Reads the next certificate of a PEM buffer; NULL at the end (or on garbage).
static inline X509 *acsgw_read_certificate(BIO *bio) {
    return PEM_read_bio_X509(bio, NULL, NULL, NULL);
}

// A certificate time as seconds since the epoch (UTC). Returns 1 on success.
static inline int acsgw_asn1_time_to_epoch(const ASN1_TIME *time, long long *seconds) {
    struct tm parts;
    if (ASN1_TIME_to_tm(time, &parts) != 1) return 0;
    *seconds = (long long)timegm(&parts);
    return 1;
}

#endif
