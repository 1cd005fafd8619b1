/* tls.c -- the tls module's common parts: failure names, versions, the socket BIO, helpers. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>

#include "core/core.h"
#include "tls/tls_internal.h"

static const char *const reason_names[ZLB_TLS_R_COUNT] = {
    [ZLB_TLS_R_NONE] = "none",
    [ZLB_TLS_R_VERIFY_FAILED] = "verify_failed",
    [ZLB_TLS_R_PROTOCOL_VERSION] = "protocol_version",
    [ZLB_TLS_R_HANDSHAKE_FAILURE] = "handshake_failure",
    [ZLB_TLS_R_UNEXPECTED_EOF] = "unexpected_eof",
    [ZLB_TLS_R_WRONG_VERSION_NUMBER] = "wrong_version_number",
    [ZLB_TLS_R_CERTIFICATE_REQUIRED] = "certificate_required",
    [ZLB_TLS_R_BAD_CERTIFICATE] = "bad_certificate",
    [ZLB_TLS_R_NO_APPLICATION_PROTOCOL] = "no_application_protocol",
    [ZLB_TLS_R_PEER_ALERT] = "peer_alert",
    [ZLB_TLS_R_SYSCALL] = "syscall",
    [ZLB_TLS_R_OTHER] = "other",
};

const char *zlb_tls_reason_name(zlb_tls_reason_t r)
{
    if ((unsigned)r >= ZLB_TLS_R_COUNT)
        return "other";
    return reason_names[r];
}

const char *zlb_tls_verify_name(int code)
{
    switch (code) {
    case X509_V_OK:
        return "ok";
    case X509_V_ERR_HOSTNAME_MISMATCH:
        return "hostname_mismatch";
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return "ip_mismatch";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        return "self_signed";
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return "self_signed_in_chain";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        return "unknown_issuer";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "not_yet_valid";
    case X509_V_ERR_INVALID_PURPOSE:
        return "unsuitable_purpose";
    default:
        return "other";
    }
}

const char *zlb_tls_ossl_reason(unsigned long e, char *tmp, size_t len)
{
    const char *why;

    if (!e)
        return "unknown error";
    /* System errors carry errno and have no string of their own until OpenSSL's error
     * strings are loaded. */
    if (ERR_SYSTEM_ERROR(e))
        return strerror_r(ERR_GET_REASON(e), tmp, len);
    why = ERR_reason_error_string(e);
    return why ? why : "unknown error";
}

void zlb_tls_error_format(const zlb_tls_error_t *e, char *buf, size_t len)
{
    char tmp[128];

    if (!len)
        return;
    switch (e->kind) {
    case ZLB_TLS_ERR_NONE:
        snprintf(buf, len, "no error");
        break;
    case ZLB_TLS_ERR_VERIFY:
        snprintf(buf, len, "verify failed: %s (%d)", X509_verify_cert_error_string(e->code),
                 e->code);
        break;
    case ZLB_TLS_ERR_SYSCALL:
        snprintf(buf, len, "syscall: %s",
                 e->code ? strerror_r(e->code, tmp, sizeof(tmp)) : "unexpected EOF");
        break;
    case ZLB_TLS_ERR_PROTOCOL:
    default:
        snprintf(buf, len, "%s: %s", zlb_tls_reason_name(e->reason),
                 zlb_tls_ossl_reason(e->openssl, tmp, sizeof(tmp)));
        break;
    }
}

const char *zlb_tls_library_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

const char *zlb_tls_version_name(int version)
{
    switch (version) {
    case TLS1_VERSION:
        return "TLSv1";
    case TLS1_1_VERSION:
        return "TLSv1.1";
    case TLS1_2_VERSION:
        return "TLSv1.2";
    case TLS1_3_VERSION:
        return "TLSv1.3";
    default:
        return "unknown";
    }
}

/* ---- socket BIO --------------------------------------------------------------------------------
 */

/* OpenSSL's socket BIO writes with write(2), which raises SIGPIPE on a connection the peer has
 * reset. A library must not depend on the process ignoring SIGPIPE, so this BIO sends with
 * MSG_NOSIGNAL and borrows everything else (fd handling, EOF tracking) from the socket BIO. */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *buf, int len)
{
    int fd = (int)BIO_get_fd(b, NULL);
    ssize_t r;
    int err;

    do {
        r = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    err = errno;
    BIO_clear_retry_flags(b);
    if (r < 0 && (err == EAGAIN || err == EWOULDBLOCK))
        BIO_set_retry_write(b);
    errno = err;
    return (int)r;
}

static int bio_read(BIO *b, char *buf, int len)
{
    int fd = (int)BIO_get_fd(b, NULL);
    ssize_t r;
    int err;

    if (!buf)
        return 0;
    do {
        r = recv(fd, buf, (size_t)len, 0);
    } while (r < 0 && errno == EINTR);
    err = errno;
    BIO_clear_retry_flags(b);
    if (r == 0)
        BIO_set_flags(b, BIO_FLAGS_IN_EOF); /* how the record layer tells EOF from an error */
    else if (r < 0 && (err == EAGAIN || err == EWOULDBLOCK))
        BIO_set_retry_read(b);
    errno = err;
    return (int)r;
}

static void bio_method_init(void)
{
    const BIO_METHOD *sock = BIO_s_socket();
    int type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR;
    BIO_METHOD *m = BIO_meth_new(type, "zlb socket");

    if (!m || !BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
        !BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(sock)) ||
        !BIO_meth_set_create(m, BIO_meth_get_create(sock)) ||
        !BIO_meth_set_destroy(m, BIO_meth_get_destroy(sock)))
        zlb_fatal("cannot create the socket BIO method");
    bio_method = m;
}

const BIO_METHOD *zlb_tls_bio_method(void)
{
    pthread_once(&bio_once, bio_method_init);
    return bio_method;
}

/* ---- helpers shared by client.c and server.c ---------------------------------------------------
 */

void zlb_tls_errbuf(char *errbuf, size_t errlen, const char *what)
{
    char tmp[128];

    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s: %s", what,
                 zlb_tls_ossl_reason(ERR_peek_error(), tmp, sizeof(tmp)));
    ERR_clear_error();
}

int zlb_tls_ctx_versions(SSL_CTX *ctx, int min_version, int max_version, char *errbuf,
                         size_t errlen)
{
    if (min_version && !SSL_CTX_set_min_proto_version(ctx, min_version)) {
        zlb_tls_errbuf(errbuf, errlen, "min_version");
        return -EINVAL;
    }
    if (max_version && !SSL_CTX_set_max_proto_version(ctx, max_version)) {
        zlb_tls_errbuf(errbuf, errlen, "max_version");
        return -EINVAL;
    }
    if (min_version && max_version && min_version > max_version) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "min_version is above max_version");
        return -EINVAL;
    }
    return 0;
}

int zlb_tls_alpn_wire(const char *const *names, size_t n, unsigned char **out, size_t *out_len)
{
    size_t total = 0, off = 0;
    unsigned char *w;

    *out = NULL;
    *out_len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        if (l == 0 || l > 255)
            return -EINVAL;
        total += 1 + l;
    }
    if (total == 0 || total > 0xffff)
        return -EINVAL;
    w = zlb_xmalloc(total);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        w[off++] = (unsigned char)l;
        memcpy(w + off, names[i], l);
        off += l;
    }
    *out = w;
    *out_len = total;
    return 0;
}

/* OpenSSL 3.0 caches a certificate's extensions on its first use, and two threads verifying
 * peers against the same freshly loaded CA race on that cache (ThreadSanitizer: one writes the
 * CA's key identifier while the other compares it, at the first handshakes of a run). Touching
 * every trusted certificate once, before the context is shared, fills the caches first.
 * Certificates found later through a hashed directory (ca_dir, the system's) are not covered. */
void zlb_tls_ctx_prime_store(SSL_CTX *ctx)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (x)
            (void)X509_check_purpose(x, -1, 0);
    }
}
