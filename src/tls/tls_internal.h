/* tls_internal.h -- the tls module's structs and helpers shared by its files and its tests. */
#ifndef ZLB_TLS_INTERNAL_H
#define ZLB_TLS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/tls.h"

struct zlb_tls_client {
    SSL_CTX *ctx;        /* owned */
    char *sni;           /* owned; NULL: no SNI (IP literal host) */
    uint32_t resume_ppm; /* resumption ratio in millionths, so the accumulator is exact */
};

struct zlb_tls_sessions {
    SSL_SESSION **ring; /* owned array of owned references, oldest first from `head` */
    unsigned capacity;
    unsigned head; /* index of the oldest */
    unsigned count;
    uint32_t resume_ppm;
    uint32_t acc; /* accumulator in millionths */
};

struct zlb_tls_server {
    SSL_CTX *ctx;        /* owned */
    unsigned char *alpn; /* owned wire format (length-prefixed names), or NULL */
    size_t alpn_len;
};

struct zlb_tls_cert {
    X509 *x509;    /* owned reference */
    EVP_PKEY *key; /* owned reference */
};

/** The socket BIO method of this module: send(MSG_NOSIGNAL)/recv, otherwise the socket BIO. */
const BIO_METHOD *zlb_tls_bio_method(void);

/** Fills OpenSSL's per-certificate caches of every certificate in ctx's trust store, on the
 * calling thread, before the context is shared (see tls.c). */
void zlb_tls_ctx_prime_store(SSL_CTX *ctx);

/** Called by the client's new-session callback: stores sess (the reference is taken). */
void zlb_tls_sessions_add(zlb_tls_sessions_t *s, SSL_SESSION *sess);

/** Applies min/max protocol versions (0: leave the default). 0 or -EINVAL with errbuf. */
int zlb_tls_ctx_versions(SSL_CTX *ctx, int min_version, int max_version, char *errbuf,
                         size_t errlen);

/** Builds the ALPN wire format of names into *out (malloc'd). 0 or -EINVAL (empty or > 255). */
int zlb_tls_alpn_wire(const char *const *names, size_t n, unsigned char **out, size_t *out_len);

/** The reason text of a packed OpenSSL error (errno text for system errors); tmp may be used. */
const char *zlb_tls_ossl_reason(unsigned long e, char *tmp, size_t len);

/** Writes "what: <OpenSSL's first queued error>" into errbuf and clears the error queue. */
void zlb_tls_errbuf(char *errbuf, size_t errlen, const char *what);

/** Sizes for tests: what a session ring holds by default. */
#define ZLB_TLS_SESSIONS_DEFAULT 4u

#endif
