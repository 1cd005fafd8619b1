/* cert.c -- an in-memory test PKI (CA and leaf certificates, EC P-256) and PEM files. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/core.h"
#include "tls/tls_internal.h"

#define HOUR_S 3600
#define DAY_S (24 * HOUR_S)

static const char *const default_dns[] = {"localhost"};
static const char *const default_ips[] = {"127.0.0.1", "::1"};

static int ossl_failed(const char *what)
{
    char msg[256];

    zlb_tls_errbuf(msg, sizeof(msg), what);
    zlb_log_error("tls: generating a test certificate failed: %s", msg);
    return -EPROTO;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* "DNS:a,IP:b,..." for X509V3_EXT_conf_nid; NULL when a name would break that syntax. */
static char *san_string(const char *const *dns, size_t ndns, const char *const *ips, size_t nips)
{
    size_t len = 1;
    char *s, *p;

    for (size_t i = 0; i < ndns + nips; i++) {
        const char *v = i < ndns ? dns[i] : ips[i - ndns];
        if (!*v || strpbrk(v, ",\r\n"))
            return NULL;
        len += strlen(v) + 5;
    }
    s = p = zlb_xmalloc(len);
    *p = '\0';
    for (size_t i = 0; i < ndns + nips; i++) {
        const char *v = i < ndns ? dns[i] : ips[i - ndns];
        p += sprintf(p, "%s%s:%s", i ? "," : "", i < ndns ? "DNS" : "IP", v);
    }
    return s;
}

static int set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = bn && BN_rand(bn, 63, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;

    BN_free(bn);
    return ok ? 0 : -1;
}

/* Fills everything but the extensions: version, serial, names, validity, public key. */
static int set_basics(X509 *x, const zlb_tls_cert_opts_t *o, const char *cn, X509 *issuer,
                      EVP_PKEY *key, int64_t default_after_s)
{
    X509_NAME *name = X509_get_subject_name(x);
    int64_t before = o->not_before_s ? o->not_before_s : -HOUR_S;
    int64_t after = o->not_after_s ? o->not_after_s : default_after_s;

    if (!X509_set_version(x, X509_VERSION_3) || set_serial(x) != 0)
        return -1;
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"zlbench", -1,
                                    -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0))
        return -1;
    if (!X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name))
        return -1;
    if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, (long)before, NULL) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), 0, (long)after, NULL))
        return -1;
    return X509_set_pubkey(x, key) ? 0 : -1;
}

static zlb_tls_cert_t *cert_new(void)
{
    zlb_tls_cert_t *c = zlb_xcalloc(1, sizeof(*c));

    c->x509 = X509_new();
    /* P-256: a fast key to generate and to sign handshakes with, so neither the test PKI nor
     * the built-in target is what a benchmark ends up measuring. */
    c->key = EVP_EC_gen("P-256");
    if (!c->x509 || !c->key) {
        zlb_tls_cert_destroy(c);
        return NULL;
    }
    return c;
}

int zlb_tls_cert_create_ca(const zlb_tls_cert_opts_t *opts, zlb_tls_cert_t **out)
{
    static const zlb_tls_cert_opts_t defaults;
    const zlb_tls_cert_opts_t *o = opts ? opts : &defaults;
    zlb_tls_cert_t *c;

    *out = NULL;
    ERR_clear_error();
    c = cert_new();
    if (!c)
        return ossl_failed("CA key generation");
    if (set_basics(c->x509, o, o->cn ? o->cn : "zlbench test CA", NULL, c->key,
                   10 * 365 * (int64_t)DAY_S) != 0 ||
        add_ext(c->x509, c->x509, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
        add_ext(c->x509, c->x509, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
        add_ext(c->x509, c->x509, NID_subject_key_identifier, "hash") != 0 ||
        !X509_sign(c->x509, c->key, EVP_sha256())) {
        zlb_tls_cert_destroy(c);
        return ossl_failed("CA certificate");
    }
    *out = c;
    return 0;
}

int zlb_tls_cert_issue(const zlb_tls_cert_t *ca, const zlb_tls_cert_opts_t *opts,
                       zlb_tls_cert_t **out)
{
    static const zlb_tls_cert_opts_t defaults;
    const zlb_tls_cert_opts_t *o = opts ? opts : &defaults;
    const char *const *dns = o->dns, *const *ips = o->ips;
    size_t ndns = o->ndns, nips = o->nips;
    zlb_tls_cert_t *c;
    X509 *issuer;
    char *san;
    int bad;

    *out = NULL;
    if (!ndns && !nips) {
        dns = default_dns;
        ndns = ZLB_ARRAY_LEN(default_dns);
        ips = default_ips;
        nips = ZLB_ARRAY_LEN(default_ips);
    }
    san = san_string(dns, ndns, ips, nips);
    if (!san)
        return -EINVAL;
    ERR_clear_error();
    c = cert_new();
    if (!c) {
        free(san);
        return ossl_failed("key generation");
    }
    issuer = ca ? ca->x509 : c->x509;
    bad =
        set_basics(c->x509, o, o->cn ? o->cn : "localhost", ca ? ca->x509 : NULL, c->key,
                   365 * (int64_t)DAY_S) != 0 ||
        add_ext(c->x509, issuer, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_ext(c->x509, issuer, NID_key_usage, "critical,digitalSignature") != 0 ||
        add_ext(c->x509, issuer, NID_ext_key_usage, o->client ? "clientAuth" : "serverAuth") != 0 ||
        add_ext(c->x509, issuer, NID_subject_alt_name, san) != 0 ||
        add_ext(c->x509, issuer, NID_subject_key_identifier, "hash") != 0 ||
        (ca && add_ext(c->x509, issuer, NID_authority_key_identifier, "keyid") != 0) ||
        !X509_sign(c->x509, ca ? ca->key : c->key, EVP_sha256());
    free(san);
    if (bad) {
        zlb_tls_cert_destroy(c);
        return ossl_failed("certificate");
    }
    *out = c;
    return 0;
}

int zlb_tls_cert_load(const char *cert_file, const char *key_file, zlb_tls_cert_t **out,
                      char *errbuf, size_t errlen)
{
    zlb_tls_cert_t *c = zlb_xcalloc(1, sizeof(*c));
    BIO *b;

    *out = NULL;
    ERR_clear_error();
    b = BIO_new_file(cert_file, "r");
    if (b)
        c->x509 = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!c->x509) {
        zlb_tls_errbuf(errbuf, errlen, cert_file);
        goto fail;
    }
    b = BIO_new_file(key_file, "r");
    if (b)
        c->key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!c->key) {
        zlb_tls_errbuf(errbuf, errlen, key_file);
        goto fail;
    }
    if (!X509_check_private_key(c->x509, c->key)) {
        zlb_tls_errbuf(errbuf, errlen, key_file);
        goto fail;
    }
    *out = c;
    return 0;

fail:
    zlb_tls_cert_destroy(c);
    return -EINVAL;
}

static char *to_pem(const zlb_tls_cert_t *c, bool cert, bool key)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *s;
    long len;

    if (!b || (cert && !PEM_write_bio_X509(b, c->x509)) ||
        (key && !PEM_write_bio_PrivateKey(b, c->key, NULL, NULL, 0, NULL, NULL)))
        zlb_fatal("cannot write a certificate as PEM");
    len = BIO_get_mem_data(b, &data);
    s = zlb_xmalloc((size_t)len + 1);
    memcpy(s, data, (size_t)len);
    s[len] = '\0';
    BIO_free(b);
    return s;
}

char *zlb_tls_cert_pem(const zlb_tls_cert_t *c, bool with_key)
{
    return to_pem(c, true, with_key);
}

int zlb_tls_cert_write(const zlb_tls_cert_t *c, const char *cert_path, const char *key_path)
{
    char *pem = to_pem(c, true, false);
    int err = zlb_write_file_atomic(cert_path, pem, strlen(pem), 0644);

    free(pem);
    if (err || !key_path)
        return err;
    pem = to_pem(c, false, true);
    err = zlb_write_file_atomic(key_path, pem, strlen(pem), 0600);
    OPENSSL_cleanse(pem, strlen(pem));
    free(pem);
    return err;
}

void zlb_tls_cert_destroy(zlb_tls_cert_t *c)
{
    if (!c)
        return;
    X509_free(c->x509);
    EVP_PKEY_free(c->key);
    free(c);
}
