/* server.c -- TLS server contexts for the built-in target: certificate, tickets, optional mTLS. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/core.h"
#include "tls/tls_internal.h"

static const unsigned char session_id_ctx[] = "zlbench";

/* The server's list first: its preference wins. A client offering only protocols the server
 * does not serve is refused with no_application_protocol rather than served something else. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned inlen, void *arg)
{
    const zlb_tls_server_t *srv = arg;
    unsigned char *sel = NULL;

    (void)ssl;
    if (SSL_select_next_proto(&sel, outlen, srv->alpn, (unsigned)srv->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int set_client_ca(SSL_CTX *ctx, const zlb_tls_cert_t *ca, char *errbuf, size_t errlen)
{
    if (!X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca->x509) ||
        !SSL_CTX_add_client_CA(ctx, ca->x509)) {
        zlb_tls_errbuf(errbuf, errlen, "client_ca");
        return -EINVAL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return 0;
}

int zlb_tls_server_create(const zlb_tls_server_opts_t *opts, zlb_tls_server_t **out, char *errbuf,
                          size_t errlen)
{
    zlb_tls_server_t *srv;
    char dummy[1];
    int err;

    *out = NULL;
    if (!errbuf || !errlen) {
        errbuf = dummy;
        errlen = sizeof(dummy);
    }
    errbuf[0] = '\0';
    if (!opts->cert || !opts->cert->x509 || !opts->cert->key) {
        snprintf(errbuf, errlen, "no server certificate");
        return -EINVAL;
    }
    srv = zlb_xcalloc(1, sizeof(*srv));
    ERR_clear_error();
    srv->ctx = SSL_CTX_new(TLS_server_method());
    if (!srv->ctx) {
        zlb_tls_errbuf(errbuf, errlen, "SSL_CTX_new");
        err = -ENOMEM;
        goto fail;
    }
    SSL_CTX_set_mode(srv->ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(srv->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    err = zlb_tls_ctx_versions(srv->ctx, opts->min_version ? opts->min_version : TLS1_2_VERSION,
                               opts->max_version, errbuf, errlen);
    if (err)
        goto fail;
    if (!SSL_CTX_use_certificate(srv->ctx, opts->cert->x509) ||
        !SSL_CTX_use_PrivateKey(srv->ctx, opts->cert->key) ||
        !SSL_CTX_check_private_key(srv->ctx)) {
        zlb_tls_errbuf(errbuf, errlen, "server certificate");
        err = -EINVAL;
        goto fail;
    }
    /* Resumption must work with client certificates too: OpenSSL refuses to resume a session
     * of a verifying server that has no session id context. */
    SSL_CTX_set_session_id_context(srv->ctx, session_id_ctx, sizeof(session_id_ctx) - 1);
    SSL_CTX_set_session_cache_mode(srv->ctx, SSL_SESS_CACHE_SERVER);
    /* OpenSSL sends two TLS 1.3 tickets by default; the target is a test server whose CPU is
     * better spent on handshakes, and zlbench's clients resume with the newest ticket only. */
    SSL_CTX_set_num_tickets(srv->ctx, 1);
    if (opts->client_ca) {
        err = set_client_ca(srv->ctx, opts->client_ca, errbuf, errlen);
        if (err)
            goto fail;
    }
    if (opts->nalpn) {
        err = zlb_tls_alpn_wire(opts->alpn, opts->nalpn, &srv->alpn, &srv->alpn_len);
        if (err) {
            snprintf(errbuf, errlen, "alpn: names must be 1 to 255 bytes");
            goto fail;
        }
        SSL_CTX_set_alpn_select_cb(srv->ctx, alpn_select_cb, srv);
    }
    zlb_tls_ctx_prime_store(srv->ctx); /* server threads verify client certificates too */
    *out = srv;
    return 0;

fail:
    zlb_tls_server_destroy(srv);
    return err;
}

void zlb_tls_server_destroy(zlb_tls_server_t *srv)
{
    if (!srv)
        return;
    SSL_CTX_free(srv->ctx);
    free(srv->alpn);
    free(srv);
}
