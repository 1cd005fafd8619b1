/* client.c -- TLS client contexts (one per target) and the per-poller session caches. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/core.h"
#include "tls/tls_internal.h"

#define PPM 1000000u

/* Runs on the thread driving ssl, which owns the connection and therefore its session cache:
 * that is what makes the cache lock-free while the SSL_CTX is shared. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    zlb_tls_conn_t *c = SSL_get_app_data(ssl);

    if (!c || !c->sessions || !SSL_SESSION_is_resumable(sess))
        return 0;
    zlb_tls_sessions_add(c->sessions, sess);
    return 1; /* the cache keeps the reference OpenSSL handed us */
}

static int set_verify(SSL_CTX *ctx, const zlb_tls_config_t *cfg, const char *host, char *errbuf,
                      size_t errlen)
{
    const char *name = cfg->sni ? cfg->sni : host;
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    int ok;

    if (!cfg->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    if (cfg->ca_file || cfg->ca_dir)
        ok = SSL_CTX_load_verify_locations(ctx, cfg->ca_file, cfg->ca_dir);
    else
        ok = SSL_CTX_set_default_verify_paths(ctx);
    if (!ok) {
        zlb_tls_errbuf(errbuf, errlen, cfg->ca_file ? cfg->ca_file : "CA store");
        return -EINVAL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);

    /* Set on the context's parameters, which SSL_new copies into every connection, rather
     * than with SSL_set1_host per connection. SSL_set1_host would recognise an IP literal (it
     * does in 3.0.x: an IP-only SAN matches), but the parameter-level call treats every string
     * as a DNS name, so an IP goes to the IP-address check explicitly. */
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (zlb_addr_is_ip_literal(name)) {
        /* A zone says which link, not which address: the certificate names the address. */
        char ip[INET6_ADDRSTRLEN];
        snprintf(ip, sizeof(ip), "%.*s", (int)strcspn(name, "%"), name);
        ok = X509_VERIFY_PARAM_set1_ip_asc(param, ip);
    } else
        ok = X509_VERIFY_PARAM_set1_host(param, name, 0);
    if (!ok) {
        zlb_tls_errbuf(errbuf, errlen, "peer name");
        return -EINVAL;
    }
    return 0;
}

static int set_client_cert(SSL_CTX *ctx, const zlb_tls_config_t *cfg, char *errbuf, size_t errlen)
{
    const char *key = cfg->key_file ? cfg->key_file : cfg->cert_file;

    if (!cfg->cert_file) {
        if (!cfg->key_file)
            return 0;
        snprintf(errbuf, errlen, "key_file given without cert_file");
        return -EINVAL;
    }
    if (!SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file)) {
        zlb_tls_errbuf(errbuf, errlen, cfg->cert_file);
        return -EINVAL;
    }
    if (!SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM)) {
        zlb_tls_errbuf(errbuf, errlen, key);
        return -EINVAL;
    }
    if (!SSL_CTX_check_private_key(ctx)) {
        zlb_tls_errbuf(errbuf, errlen, key);
        return -EINVAL;
    }
    return 0;
}

static int set_ciphers(SSL_CTX *ctx, const zlb_tls_config_t *cfg, char *errbuf, size_t errlen)
{
    if (cfg->ciphers && !SSL_CTX_set_cipher_list(ctx, cfg->ciphers)) {
        zlb_tls_errbuf(errbuf, errlen, "ciphers");
        return -EINVAL;
    }
    if (cfg->ciphersuites && !SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites)) {
        zlb_tls_errbuf(errbuf, errlen, "ciphersuites");
        return -EINVAL;
    }
    if (cfg->groups && !SSL_CTX_set1_groups_list(ctx, cfg->groups)) {
        zlb_tls_errbuf(errbuf, errlen, "groups");
        return -EINVAL;
    }
    return 0;
}

static int set_alpn(SSL_CTX *ctx, const zlb_tls_config_t *cfg, char *errbuf, size_t errlen)
{
    unsigned char *wire;
    size_t len;
    int err;

    if (!cfg->nalpn)
        return 0;
    err = zlb_tls_alpn_wire((const char *const *)cfg->alpn, cfg->nalpn, &wire, &len);
    if (err) {
        snprintf(errbuf, errlen, "alpn: names must be 1 to 255 bytes");
        return err;
    }
    /* The context keeps its own copy: built once here, never per connection. */
    err = SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)len) == 0 ? 0 : -ENOMEM;
    free(wire);
    if (err)
        zlb_tls_errbuf(errbuf, errlen, "alpn");
    return err;
}

int zlb_tls_client_create(const zlb_tls_config_t *cfg, const char *host, zlb_tls_client_t **out,
                          char *errbuf, size_t errlen)
{
    zlb_tls_client_t *cli;
    char dummy[1];
    double ratio;
    int err;

    *out = NULL;
    if (!errbuf || !errlen) {
        errbuf = dummy;
        errlen = sizeof(dummy);
    }
    errbuf[0] = '\0';
    if (!host || !*host) {
        snprintf(errbuf, errlen, "no host name");
        return -EINVAL;
    }
    cli = zlb_xcalloc(1, sizeof(*cli));
    ERR_clear_error();
    cli->ctx = SSL_CTX_new(TLS_client_method());
    if (!cli->ctx) {
        zlb_tls_errbuf(errbuf, errlen, "SSL_CTX_new");
        err = -ENOMEM;
        goto fail;
    }
    /* Idle connections are the point of a connection load generator: RELEASE_BUFFERS drops
     * the 16 KiB+ record buffers whenever they are empty. The two write modes let the caller
     * retry a write from its send queue, whose buffer may have moved or grown. */
    SSL_CTX_set_mode(cli->ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(cli->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);

    err = zlb_tls_ctx_versions(cli->ctx, cfg->min_version, cfg->max_version, errbuf, errlen);
    if (!err)
        err = set_ciphers(cli->ctx, cfg, errbuf, errlen);
    if (!err)
        err = set_alpn(cli->ctx, cfg, errbuf, errlen);
    if (!err)
        err = set_client_cert(cli->ctx, cfg, errbuf, errlen);
    if (!err)
        err = set_verify(cli->ctx, cfg, host, errbuf, errlen);
    if (err)
        goto fail;

    if (cfg->sni)
        cli->sni = zlb_xstrdup(cfg->sni);
    else if (!zlb_addr_is_ip_literal(host))
        cli->sni = zlb_xstrdup(host); /* RFC 6066: SNI never carries an IP address */

    ratio = cfg->resumption;
    if (!(ratio > 0))
        ratio = 0;
    if (ratio > 1)
        ratio = 1;
    cli->resume_ppm = (uint32_t)lround(ratio * PPM);
    if (cli->resume_ppm) {
        /* The internal store would be one locked cache for all pollers; the callback hands
         * each session to the poller's own cache instead. */
        SSL_CTX_set_session_cache_mode(cli->ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(cli->ctx, new_session_cb);
    } else {
        SSL_CTX_set_session_cache_mode(cli->ctx, SSL_SESS_CACHE_OFF);
    }
    zlb_tls_ctx_prime_store(cli->ctx);
    *out = cli;
    return 0;

fail:
    zlb_tls_client_destroy(cli);
    return err;
}

void zlb_tls_client_destroy(zlb_tls_client_t *cli)
{
    if (!cli)
        return;
    SSL_CTX_free(cli->ctx);
    free(cli->sni);
    free(cli);
}

double zlb_tls_client_resumption(const zlb_tls_client_t *cli)
{
    return (double)cli->resume_ppm / PPM;
}

/* ---- session cache -----------------------------------------------------------------------------
 */

zlb_tls_sessions_t *zlb_tls_sessions_create(const zlb_tls_client_t *cli, unsigned capacity)
{
    zlb_tls_sessions_t *s = zlb_xcalloc(1, sizeof(*s));

    s->capacity = capacity ? capacity : ZLB_TLS_SESSIONS_DEFAULT;
    s->ring = zlb_xcalloc(s->capacity, sizeof(*s->ring));
    s->resume_ppm = cli->resume_ppm;
    return s;
}

static void sessions_clear(zlb_tls_sessions_t *s)
{
    for (unsigned i = 0; i < s->count; i++) {
        unsigned k = (s->head + i) % s->capacity;
        SSL_SESSION_free(s->ring[k]);
        s->ring[k] = NULL;
    }
    s->head = 0;
    s->count = 0;
}

void zlb_tls_sessions_destroy(zlb_tls_sessions_t *s)
{
    if (!s)
        return;
    sessions_clear(s);
    free(s->ring);
    free(s);
}

void zlb_tls_sessions_add(zlb_tls_sessions_t *s, SSL_SESSION *sess)
{
    if (s->count == s->capacity) {
        SSL_SESSION_free(s->ring[s->head]);
        s->ring[s->head] = NULL;
        s->head = (s->head + 1) % s->capacity;
        s->count--;
    }
    s->ring[(s->head + s->count) % s->capacity] = sess;
    s->count++;
}

static bool session_live(SSL_SESSION *sess, time_t now)
{
    return SSL_SESSION_get_time(sess) + SSL_SESSION_get_timeout(sess) > (long)now;
}

SSL_SESSION *zlb_tls_sessions_pick(zlb_tls_sessions_t *s)
{
    SSL_SESSION *newest;

    if (!s->resume_ppm || !s->count)
        return NULL;
    newest = s->ring[(s->head + s->count - 1) % s->capacity];
    /* Sessions arrive in time order from one server, so when the newest has expired every
     * older one has too. */
    if (!session_live(newest, time(NULL))) {
        sessions_clear(s);
        return NULL;
    }
    /* Reusing the newest session rather than consuming it: a TLS 1.3 ticket arrives only after
     * the handshake, so taking one per handshake would starve a burst of concurrent handshakes
     * and the configured share would not be met. OpenSSL servers accept a ticket many times. */
    s->acc += s->resume_ppm;
    if (s->acc < PPM)
        return NULL;
    s->acc -= PPM;
    return newest;
}

unsigned zlb_tls_sessions_count(const zlb_tls_sessions_t *s)
{
    return s->count;
}
