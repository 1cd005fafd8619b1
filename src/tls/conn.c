/* conn.c -- one TLS connection on a non-blocking socket: handshake and I/O steps, failures. */
#include <errno.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/core.h"
#include "tls/tls_internal.h"

static zlb_tls_reason_t alert_bucket(int alert)
{
    switch (alert) {
    case SSL_AD_PROTOCOL_VERSION:
        return ZLB_TLS_R_PROTOCOL_VERSION;
    case SSL_AD_HANDSHAKE_FAILURE:
    case SSL_AD_INSUFFICIENT_SECURITY:
        return ZLB_TLS_R_HANDSHAKE_FAILURE;
    case SSL_AD_CERTIFICATE_REQUIRED:
        return ZLB_TLS_R_CERTIFICATE_REQUIRED;
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
        return ZLB_TLS_R_BAD_CERTIFICATE;
    case SSL_AD_NO_APPLICATION_PROTOCOL:
        return ZLB_TLS_R_NO_APPLICATION_PROTOCOL;
    default:
        return ZLB_TLS_R_PEER_ALERT;
    }
}

static zlb_tls_reason_t ssl_reason_bucket(int reason)
{
    /* Alerts received from the peer are reported as SSL_AD_REASON_OFFSET + the alert number. */
    if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256)
        return alert_bucket(reason - SSL_AD_REASON_OFFSET);
    switch (reason) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_WRONG_SSL_VERSION:
    case SSL_R_UNSUPPORTED_SSL_VERSION:
    case SSL_R_INAPPROPRIATE_FALLBACK:
        return ZLB_TLS_R_PROTOCOL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_CIPHERS_AVAILABLE:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_GROUPS:
    case SSL_R_NO_SUITABLE_KEY_SHARE:
    case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_NO_SUITABLE_DIGEST_ALGORITHM:
        return ZLB_TLS_R_HANDSHAKE_FAILURE;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return ZLB_TLS_R_UNEXPECTED_EOF;
    /* What a record layer says when the first bytes are not a TLS record at all. */
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_UNKNOWN_PROTOCOL:
        return ZLB_TLS_R_WRONG_VERSION_NUMBER;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return ZLB_TLS_R_CERTIFICATE_REQUIRED;
    case SSL_R_NO_APPLICATION_PROTOCOL:
        return ZLB_TLS_R_NO_APPLICATION_PROTOCOL;
    default:
        return ZLB_TLS_R_OTHER;
    }
}

/* Drains the error queue into c->err. A failed certificate check shows up as the generic
 * "certificate verify failed"; the verify result says which check failed. */
static void classify_ssl_error(zlb_tls_conn_t *c)
{
    unsigned long e, first = 0, first_ssl = 0;
    bool verify = false;
    long vr;

    while ((e = ERR_get_error()) != 0) {
        if (!first)
            first = e;
        if (ERR_GET_LIB(e) != ERR_LIB_SSL)
            continue;
        if (!first_ssl)
            first_ssl = e;
        if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED)
            verify = true;
    }
    e = first_ssl ? first_ssl : first;
    c->err.openssl = e;
    vr = SSL_get_verify_result(c->ssl);
    if (verify && vr != X509_V_OK) {
        c->err.kind = ZLB_TLS_ERR_VERIFY;
        c->err.reason = ZLB_TLS_R_VERIFY_FAILED;
        c->err.code = (int)vr;
        return;
    }
    c->err.kind = ZLB_TLS_ERR_PROTOCOL;
    c->err.code = e ? ERR_GET_REASON(e) : 0;
    c->err.reason = first_ssl ? ssl_reason_bucket(c->err.code) : ZLB_TLS_R_OTHER;
}

static void set_error(zlb_tls_conn_t *c, zlb_tls_err_kind_t kind, zlb_tls_reason_t reason, int code)
{
    c->err.kind = kind;
    c->err.reason = reason;
    c->err.code = code;
    c->err.openssl = 0;
}

/* Maps a failed SSL call to a status. sys_errno is errno read right after the call (it was
 * zeroed before, so a stale EAGAIN cannot pass for a socket error). */
static zlb_tls_status_t after_failure(zlb_tls_conn_t *c, int ret, int sys_errno)
{
    int se = SSL_get_error(c->ssl, ret);

    switch (se) {
    case SSL_ERROR_WANT_READ:
        return ZLB_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return ZLB_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        if (c->handshake_done)
            return ZLB_TLS_EOF; /* close_notify: ours may still be sent */
        c->failed = true;
        set_error(c, ZLB_TLS_ERR_PROTOCOL, ZLB_TLS_R_UNEXPECTED_EOF, 0);
        return ZLB_TLS_FAILED;
    case SSL_ERROR_SYSCALL:
        c->failed = true; /* OpenSSL forbids SSL_shutdown after this */
        ERR_clear_error();
        if (sys_errno) {
            set_error(c, ZLB_TLS_ERR_SYSCALL, ZLB_TLS_R_SYSCALL, sys_errno);
            return ZLB_TLS_FAILED;
        }
        if (c->handshake_done) {
            c->unclean_eof = true;
            return ZLB_TLS_EOF;
        }
        set_error(c, ZLB_TLS_ERR_PROTOCOL, ZLB_TLS_R_UNEXPECTED_EOF, 0);
        return ZLB_TLS_FAILED;
    case SSL_ERROR_SSL:
        c->failed = true;
        classify_ssl_error(c);
        if (c->handshake_done && c->err.reason == ZLB_TLS_R_UNEXPECTED_EOF) {
            /* A peer closing without close_notify is an end of stream to the workload,
             * not a TLS failure; unclean_eof keeps the distinction. */
            c->unclean_eof = true;
            set_error(c, ZLB_TLS_ERR_NONE, ZLB_TLS_R_NONE, 0);
            return ZLB_TLS_EOF;
        }
        return ZLB_TLS_FAILED;
    default:
        c->failed = true;
        ERR_clear_error();
        set_error(c, ZLB_TLS_ERR_PROTOCOL, ZLB_TLS_R_OTHER, se);
        return ZLB_TLS_FAILED;
    }
}

static int conn_init(zlb_tls_conn_t *c, SSL_CTX *ctx, int fd)
{
    BIO *bio;

    memset(c, 0, sizeof(*c));
    ERR_clear_error();
    c->ssl = SSL_new(ctx);
    if (!c->ssl)
        goto nomem;
    bio = BIO_new(zlb_tls_bio_method());
    if (!bio)
        goto nomem;
    BIO_set_fd(bio, fd, BIO_NOCLOSE);
    SSL_set_bio(c->ssl, bio, bio); /* the SSL owns the BIO from here */
    SSL_set_app_data(c->ssl, c);
    return 0;

nomem:
    ERR_clear_error();
    zlb_tls_conn_dispose(c);
    return -ENOMEM;
}

int zlb_tls_conn_init_client(zlb_tls_conn_t *c, const zlb_tls_client_t *cli,
                             zlb_tls_sessions_t *sessions, SSL_SESSION *resume, int fd)
{
    int err = conn_init(c, cli->ctx, fd);

    if (err)
        return err;
    if (cli->sni && !SSL_set_tlsext_host_name(c->ssl, cli->sni)) {
        ERR_clear_error();
        zlb_tls_conn_dispose(c);
        return -ENOMEM;
    }
    /* A TLS 1.3 client marks the session it resumed not resumable when its handshake ends
     * (single-use ticket advice, applied to the very object given to SSL_set_session): a cached
     * session handed to several handshakes would make all but the first silently full ones.
     * Each handshake gets its own copy, and the cached one stays usable. A session OpenSSL
     * refuses (a version this context no longer allows) only costs the resumption. */
    SSL_SESSION *copy = resume ? SSL_SESSION_dup(resume) : NULL;
    if (copy && !SSL_set_session(c->ssl, copy))
        ERR_clear_error();
    SSL_SESSION_free(copy); /* the SSL holds its own reference */
    c->sessions = sessions;
    SSL_set_connect_state(c->ssl);
    return 0;
}

int zlb_tls_conn_init_server(zlb_tls_conn_t *c, const zlb_tls_server_t *srv, int fd)
{
    int err = conn_init(c, srv->ctx, fd);

    if (err)
        return err;
    SSL_set_accept_state(c->ssl);
    return 0;
}

/* RELEASE_BUFFERS frees the read buffer only when application data has been consumed from it;
 * a buffer that last carried handshake records (the end of the handshake, a TLS 1.3 ticket, a
 * key update) stays allocated, 17 KiB per idle connection, for as long as nothing else arrives.
 * SSL_free_buffers frees both buffers unless they still hold data. */
static void release_buffers(zlb_tls_conn_t *c)
{
    if (!c->keep_buffers)
        (void)SSL_free_buffers(c->ssl);
}

void zlb_tls_conn_keep_buffers(zlb_tls_conn_t *c)
{
    c->keep_buffers = true;
    SSL_clear_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
}

/* Every SSL call below starts with an empty error queue, so what it leaves there is its own,
 * and with errno at 0, so SSL_ERROR_SYSCALL's errno is not a leftover. */

zlb_tls_status_t zlb_tls_handshake(zlb_tls_conn_t *c)
{
    int r;

    if (c->handshake_done)
        return ZLB_TLS_DONE;
    if (c->failed)
        return ZLB_TLS_FAILED;
    ERR_clear_error();
    errno = 0;
    r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->handshake_done = true;
        release_buffers(c);
        return ZLB_TLS_DONE;
    }
    return after_failure(c, r, errno);
}

zlb_tls_status_t zlb_tls_read(zlb_tls_conn_t *c, void *buf, size_t len, size_t *n)
{
    zlb_tls_status_t st;
    size_t got = 0;
    int r;

    *n = 0;
    if (c->failed)
        return ZLB_TLS_FAILED;
    ERR_clear_error();
    errno = 0;
    r = SSL_read_ex(c->ssl, buf, len, &got);
    if (r == 1) {
        *n = got;
        return ZLB_TLS_DONE;
    }
    st = after_failure(c, r, errno);
    if (st == ZLB_TLS_WANT_READ)
        release_buffers(c);
    return st;
}

zlb_tls_status_t zlb_tls_write(zlb_tls_conn_t *c, const void *buf, size_t len, size_t *n)
{
    size_t put = 0;
    int r;

    *n = 0;
    if (c->failed)
        return ZLB_TLS_FAILED;
    if (len == 0)
        return ZLB_TLS_DONE;
    ERR_clear_error();
    errno = 0;
    r = SSL_write_ex(c->ssl, buf, len, &put);
    if (r == 1) {
        *n = put;
        return ZLB_TLS_DONE;
    }
    return after_failure(c, r, errno);
}

zlb_tls_status_t zlb_tls_poll(zlb_tls_conn_t *c)
{
    zlb_tls_status_t st;
    char byte;
    size_t got = 0;
    int r;

    if (c->failed)
        return ZLB_TLS_FAILED;
    /* A peek runs the record layer (tickets, key updates, alerts are handled inside it) but
     * leaves application data where it is, for the next zlb_tls_read. */
    ERR_clear_error();
    errno = 0;
    r = SSL_peek_ex(c->ssl, &byte, 1, &got);
    if (r == 1)
        return ZLB_TLS_DONE;
    st = after_failure(c, r, errno);
    if (st == ZLB_TLS_WANT_READ)
        release_buffers(c);
    return st;
}

void zlb_tls_conn_shutdown(zlb_tls_conn_t *c)
{
    if (!c->ssl || !c->handshake_done || c->failed)
        return;
    ERR_clear_error();
    (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
}

void zlb_tls_conn_dispose(zlb_tls_conn_t *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    c->sessions = NULL;
}

bool zlb_tls_conn_resumed(const zlb_tls_conn_t *c)
{
    return c->ssl && c->handshake_done && SSL_session_reused(c->ssl);
}

int zlb_tls_conn_version(const zlb_tls_conn_t *c)
{
    return c->ssl && c->handshake_done ? SSL_version(c->ssl) : 0;
}

const char *zlb_tls_conn_cipher(const zlb_tls_conn_t *c)
{
    const char *name = c->ssl && c->handshake_done ? SSL_get_cipher_name(c->ssl) : NULL;

    return name ? name : "";
}

const uint8_t *zlb_tls_conn_alpn(const zlb_tls_conn_t *c, size_t *len)
{
    const unsigned char *p = NULL;
    unsigned l = 0;

    if (c->ssl)
        SSL_get0_alpn_selected(c->ssl, &p, &l);
    *len = l;
    return p;
}
