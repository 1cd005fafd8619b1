/* tls.h -- TLS on non-blocking sockets: contexts, handshake and I/O steps, sessions, test PKI. */
#ifndef ZLB_TLS_H
#define ZLB_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"

/* OpenSSL's own types, named without pulling <openssl/ssl.h> into every includer. */
struct ssl_st;
struct ssl_session_st;

/*
 * This module knows nothing of event loops or connections. The caller owns the socket and its
 * epoll interest; every step function here says which interest lets it make progress.
 *
 * Threads. A client (zlb_tls_client_t, one per target) and a server (zlb_tls_server_t) are
 * immutable once created: any thread may start connections on them. A connection
 * (zlb_tls_conn_t) and a session cache (zlb_tls_sessions_t) belong to one thread (the poller
 * that owns the socket) for their whole life. A zlb_tls_cert_t is read-only once made and may
 * back servers on any number of threads.
 *
 * One SSL_CTX per target, shared by every poller, not one per poller. Measured (test_tls,
 * "ctx_sharing": two threads, each running full TLS 1.3 handshakes with verification, P-256,
 * OpenSSL 3.0.22, two CPUs): shared 1449 handshakes/s and 1014 us CPU per handshake, one
 * context per thread 1460/s and 1011 us: no difference beyond noise. A handshake's cost is
 * public-key arithmetic; the few locks and atomic counters of a shared SSL_CTX do not show.
 * Per-poller contexts would instead multiply the trust store by the number of pollers (a
 * ca_file with Debian's 140-certificate bundle is ~860 KiB parsed). What must not be shared is
 * the session cache: the new-session callback runs on the thread driving the SSL, and an
 * SSL_SESSION must not be used by two threads at once, so sessions go to the poller's own
 * zlb_tls_sessions_t (found through the SSL's app data) with no lock.
 *
 * Memory: an idle established client connection costs about 20 KiB of heap (TLS 1.3; 19 KiB
 * with 1.2): 9 KiB for the SSL itself, the rest the session, the peer's parsed certificate and
 * the record ciphers. Record buffers (17 KiB each way) exist only while data is in flight.
 *
 * SIGPIPE is not needed: sockets are written with send(MSG_NOSIGNAL) by a BIO of this module.
 */

/* ---- results and failure classification ------------------------------------------------------ */

/** What a step returned. */
typedef enum {
    ZLB_TLS_DONE,       /* the handshake completed, or bytes were moved (see *n) */
    ZLB_TLS_WANT_READ,  /* call the same step again once the fd is readable (EPOLLIN) */
    ZLB_TLS_WANT_WRITE, /* call the same step again once the fd is writable (EPOLLOUT) */
    ZLB_TLS_EOF,        /* read side: the peer closed (close_notify, or TCP EOF after the
                           handshake; zlb_tls_conn_t.unclean_eof tells which) */
    ZLB_TLS_FAILED,     /* fatal; zlb_tls_conn_t.err says why; only dispose is left to do */
} zlb_tls_status_t;

/** Which layer a failure came from. */
typedef enum {
    ZLB_TLS_ERR_NONE,
    ZLB_TLS_ERR_VERIFY,   /* we rejected the peer's certificate: code = X509_V_ERR_* */
    ZLB_TLS_ERR_PROTOCOL, /* a TLS failure, ours or the peer's alert: reason = bucket */
    ZLB_TLS_ERR_SYSCALL,  /* the socket failed: code = errno (ECONNRESET, ...) */
} zlb_tls_err_kind_t;

/* A fixed set of failure buckets, so failures can be counted in an array, no string per event.
 * Names (zlb_tls_reason_name) are stable: they appear in reports. */
typedef enum {
    ZLB_TLS_R_NONE,
    ZLB_TLS_R_VERIFY_FAILED,           /* kind VERIFY: see code */
    ZLB_TLS_R_PROTOCOL_VERSION,        /* no protocol version in common */
    ZLB_TLS_R_HANDSHAKE_FAILURE,       /* no cipher/group/signature in common, or the peer's
                                          generic handshake_failure alert */
    ZLB_TLS_R_UNEXPECTED_EOF,          /* the peer closed the TCP connection mid-handshake */
    ZLB_TLS_R_WRONG_VERSION_NUMBER,    /* the peer does not speak TLS (plain TCP, HTTP) */
    ZLB_TLS_R_CERTIFICATE_REQUIRED,    /* a client certificate was required and not sent */
    ZLB_TLS_R_BAD_CERTIFICATE,         /* the peer rejected our certificate (its alert) */
    ZLB_TLS_R_NO_APPLICATION_PROTOCOL, /* no ALPN protocol in common */
    ZLB_TLS_R_PEER_ALERT,              /* any other fatal alert from the peer */
    ZLB_TLS_R_SYSCALL,                 /* kind SYSCALL: see code */
    ZLB_TLS_R_OTHER,
    ZLB_TLS_R_COUNT
} zlb_tls_reason_t;

typedef struct zlb_tls_error {
    zlb_tls_err_kind_t kind;
    zlb_tls_reason_t reason;
    int code;              /* VERIFY: X509_V_ERR_*; SYSCALL: errno; PROTOCOL: OpenSSL reason */
    unsigned long openssl; /* the packed OpenSSL error it came from (0: none), for messages */
} zlb_tls_error_t;

/** "protocol_version", "unexpected_eof", ... ("none" for ZLB_TLS_R_NONE). */
const char *zlb_tls_reason_name(zlb_tls_reason_t r);
/** A short stable name for common X509 verify results, for counting: "hostname_mismatch" (62),
 * "ip_mismatch" (64), "self_signed" (18), "self_signed_in_chain" (19), "unknown_issuer" (2,
 * 20), "expired" (10), "not_yet_valid" (9), "unsuitable_purpose" (26), else "other". */
const char *zlb_tls_verify_name(int code);
/** One line for logs: "verify failed: hostname mismatch (62)", "protocol_version: tlsv1 alert
 * protocol version", "syscall: Connection reset by peer". Any thread. */
void zlb_tls_error_format(const zlb_tls_error_t *e, char *buf, size_t len);

/* ---- versions -------------------------------------------------------------------------------- */

/** The OpenSSL library in use, e.g. "OpenSSL 3.0.11 19 Sep 2023" (for reports). */
const char *zlb_tls_library_version(void);
/** "TLSv1.2" for 0x0303, "TLSv1.3" for 0x0304, "unknown" otherwise. */
const char *zlb_tls_version_name(int version);

/* ---- client contexts and session caches ------------------------------------------------------ */

typedef struct zlb_tls_client zlb_tls_client_t;

/**
 * Builds the client context of one target from its TLS config and host name (an IP literal or a
 * DNS name; both are copied, nothing is kept of cfg). Verification is on unless cfg->verify is
 * false: against cfg->ca_file/ca_dir when set, else the system's default store, and the peer
 * must be cfg->sni when set, else the host (DNS name or IP address SAN). SNI is cfg->sni, else
 * the host unless it is an IP literal. Also applies versions, ciphers, ciphersuites, groups,
 * ALPN, the client certificate and key (mTLS), and session resumption when cfg->resumption > 0.
 * Returns 0, -EINVAL for a config OpenSSL rejects (unreadable file, bad cipher list, key not
 * matching the certificate...) with the reason in errbuf, or -ENOMEM. Not on a hot path.
 */
int zlb_tls_client_create(const zlb_tls_config_t *cfg, const char *host, zlb_tls_client_t **out,
                          char *errbuf, size_t errlen);
/** Frees the client. Every connection and session cache made from it must be gone. NULL ok. */
void zlb_tls_client_destroy(zlb_tls_client_t *cli);
/** The share of handshakes that try to resume, as configured (0..1). */
double zlb_tls_client_resumption(const zlb_tls_client_t *cli);

/* A poller's cache of the last sessions of one target: a ring of `capacity` referenced
 * SSL_SESSIONs fed by the new-session callback of the connections given to it. One thread. */
typedef struct zlb_tls_sessions zlb_tls_sessions_t;

/** Creates an empty cache for sessions of cli, holding up to capacity (0: 4) sessions. Fatal
 * on OOM (small, fixed size). */
zlb_tls_sessions_t *zlb_tls_sessions_create(const zlb_tls_client_t *cli, unsigned capacity);
/** Releases the sessions and frees. No connection given this cache may still exist. NULL ok.
 * Owner thread. */
void zlb_tls_sessions_destroy(zlb_tls_sessions_t *s);
/**
 * Decides whether the next handshake tries to resume, and with which session. Returns the
 * newest live cached session (borrowed: pass it straight to zlb_tls_conn_init_client, which
 * takes its own reference) or NULL for a full handshake. The decision is a deterministic
 * accumulator, not a random draw: with resumption 0.9, exactly 9 of every 10 calls that find
 * a session return it. A call that finds no session (empty cache, all expired) returns NULL and
 * leaves the accumulator alone. Owner thread.
 */
struct ssl_session_st *zlb_tls_sessions_pick(zlb_tls_sessions_t *s);
/** Sessions held now. */
unsigned zlb_tls_sessions_count(const zlb_tls_sessions_t *s);

/* ---- server contexts ------------------------------------------------------------------------- */

typedef struct zlb_tls_cert zlb_tls_cert_t;
typedef struct zlb_tls_server zlb_tls_server_t;

typedef struct zlb_tls_server_opts {
    const zlb_tls_cert_t *cert;      /* certificate and key to serve (borrowed for the call) */
    const zlb_tls_cert_t *client_ca; /* non-NULL: require a client certificate issued by it */
    int min_version, max_version;    /* 0x0303/0x0304; 0: TLS 1.2 and the library's maximum */
    const char *const *alpn;         /* protocols accepted, server's preference first; a client
                                        offering ALPN with none of them gets a fatal alert */
    size_t nalpn;
} zlb_tls_server_opts_t;

/**
 * Builds a server context: TLS 1.2 and 1.3, session tickets (one per TLS 1.3 handshake) and the
 * server-side session cache on, buffers released when idle. Returns 0, -EINVAL (with errbuf)
 * or -ENOMEM. Any thread may then accept connections on it.
 */
int zlb_tls_server_create(const zlb_tls_server_opts_t *opts, zlb_tls_server_t **out, char *errbuf,
                          size_t errlen);
/** Frees the server. Every connection made from it must be gone. NULL ok. */
void zlb_tls_server_destroy(zlb_tls_server_t *srv);

/* ---- connections ----------------------------------------------------------------------------- */

/* One TLS connection over a connected non-blocking socket, in the caller's memory (embedded in
 * its connection; no allocation besides OpenSSL's own). Fields are read-only for the caller.
 * It must not move between init and dispose: the SSL points back at it. */
typedef struct zlb_tls_conn {
    struct ssl_st *ssl;           /* owned; NULL before init and after dispose */
    zlb_tls_sessions_t *sessions; /* borrowed: where new sessions go, or NULL */
    zlb_tls_error_t err;          /* why the last step returned ZLB_TLS_FAILED */
    bool handshake_done;
    bool failed;       /* a fatal error happened: no close_notify may be sent */
    bool unclean_eof;  /* EOF came without close_notify */
    bool keep_buffers; /* see zlb_tls_conn_keep_buffers */
} zlb_tls_conn_t;

/** For connections that carry traffic all the time (an echo workload): keeps OpenSSL's record
 * buffers allocated instead of freeing them whenever the connection goes quiet, so that messages
 * cost no allocation. Idle (held) connections leave this off: their buffers are freed, which is
 * what keeps them near 20 KiB. Call after init. */
void zlb_tls_conn_keep_buffers(zlb_tls_conn_t *c);

/**
 * Starts a client connection on fd (connected, non-blocking; not owned: the caller closes it
 * after dispose). sessions (may be NULL) receives the sessions this connection is issued, and
 * resume (may be NULL, normally from zlb_tls_sessions_pick on the same cache) is offered to the
 * server. Then call zlb_tls_handshake. Returns 0 or -ENOMEM. Owner thread.
 */
int zlb_tls_conn_init_client(zlb_tls_conn_t *c, const zlb_tls_client_t *cli,
                             zlb_tls_sessions_t *sessions, struct ssl_session_st *resume, int fd);
/** Starts the server side of an accepted socket (non-blocking, not owned). 0 or -ENOMEM. */
int zlb_tls_conn_init_server(zlb_tls_conn_t *c, const zlb_tls_server_t *srv, int fd);

/**
 * Advances the handshake as far as the socket allows. Returns DONE once complete (then again
 * on every later call), WANT_READ / WANT_WRITE (arm that interest and call again), or FAILED
 * with c->err: kind VERIFY with the X509 code when we rejected the peer's certificate, PROTOCOL
 * with a bucket otherwise, SYSCALL with errno for a socket error.
 *
 * TLS 1.3 moves some failures past DONE: a client's handshake completes before the server has
 * checked the client's certificate, so a server that wants one and did not get it (or rejects
 * it) fails the client at its next read or zlb_tls_poll (certificate_required / bad_certificate).
 */
zlb_tls_status_t zlb_tls_handshake(zlb_tls_conn_t *c);

/**
 * Reads up to len bytes into buf; *n gets the count on DONE (> 0). WANT_READ / WANT_WRITE say
 * which interest to arm, whichever operation was running (a read may have to write, e.g. a key
 * update). EOF on close_notify or TCP EOF (c->unclean_eof set for the latter), FAILED with
 * c->err otherwise. Call only after the handshake is DONE.
 */
zlb_tls_status_t zlb_tls_read(zlb_tls_conn_t *c, void *buf, size_t len, size_t *n);
/**
 * Writes from buf: *n gets the bytes taken on DONE (maybe fewer than len: one record at a
 * time). After WANT_READ / WANT_WRITE, call again with the same bytes (the buffer may move, the
 * length may not shrink): OpenSSL may already hold part of them. FAILED with c->err.
 */
zlb_tls_status_t zlb_tls_write(zlb_tls_conn_t *c, const void *buf, size_t len, size_t *n);
/**
 * Processes what arrived after the handshake without consuming application data: TLS 1.3
 * session tickets (which go to the session cache), key updates, alerts. Call it when the socket
 * is readable and no read is otherwise due. WANT_READ: nothing more to do now; DONE:
 * application data is waiting (call zlb_tls_read); EOF or FAILED as for zlb_tls_read.
 */
zlb_tls_status_t zlb_tls_poll(zlb_tls_conn_t *c);

/** Sends close_notify once if the handshake completed and nothing failed; never waits for the
 * peer's. Any result is ignored (the caller closes the socket next). */
void zlb_tls_conn_shutdown(zlb_tls_conn_t *c);
/** Frees the SSL (not the fd). Safe on a zeroed, half-initialised or disposed conn. */
void zlb_tls_conn_dispose(zlb_tls_conn_t *c);

/** True when the completed handshake resumed a session. */
bool zlb_tls_conn_resumed(const zlb_tls_conn_t *c);
/** The negotiated protocol version (0x0303, 0x0304), 0 before the handshake. */
int zlb_tls_conn_version(const zlb_tls_conn_t *c);
/** The negotiated cipher's name ("TLS_AES_128_GCM_SHA256"), or "" before the handshake. */
const char *zlb_tls_conn_cipher(const zlb_tls_conn_t *c);
/** The ALPN protocol selected, not NUL-terminated (*len 0: none). Points into the SSL. */
const uint8_t *zlb_tls_conn_alpn(const zlb_tls_conn_t *c, size_t *len);

/* ---- certificates (an in-memory test PKI, and files) ---------------------------------------- */

/* What a generated certificate looks like. A zeroed struct (or NULL) gives the defaults. */
typedef struct zlb_tls_cert_opts {
    const char *cn;         /* subject CN; NULL: "zlbench test CA" for a CA, else
                               "localhost" */
    const char *const *dns; /* DNS names in subjectAltName (leaf only) */
    size_t ndns;
    const char *const *ips; /* IP addresses in subjectAltName ("127.0.0.1", "::1") */
    size_t nips;            /* with ndns and nips both 0 a leaf gets DNS:localhost,
                               IP:127.0.0.1, IP:::1 */
    int64_t not_before_s;   /* validity start, seconds from now; 0: one hour ago */
    int64_t not_after_s;    /* validity end, seconds from now; 0: 10 years for a CA, 1 year
                               for a leaf; negative values make an expired certificate */
    bool client;            /* leaf for TLS clients (extendedKeyUsage clientAuth) */
} zlb_tls_cert_opts_t;

/** Generates a self-signed CA: EC P-256 key, basicConstraints CA:TRUE, keyCertSign. opts may
 * be NULL. Returns 0 or -EPROTO (OpenSSL failed; logged). */
int zlb_tls_cert_create_ca(const zlb_tls_cert_opts_t *opts, zlb_tls_cert_t **out);
/** Generates a leaf certificate and its EC P-256 key, signed by ca, or self-signed when ca is
 * NULL. opts may be NULL (server certificate for localhost, 127.0.0.1, ::1). Returns 0, -EINVAL
 * for a SAN entry that is empty or holds a comma, or -EPROTO (OpenSSL failed; logged). */
int zlb_tls_cert_issue(const zlb_tls_cert_t *ca, const zlb_tls_cert_opts_t *opts,
                       zlb_tls_cert_t **out);
/** Loads a certificate and its private key from PEM files (for a server given files). Returns
 * 0, or -EINVAL with the reason in errbuf. */
int zlb_tls_cert_load(const char *cert_file, const char *key_file, zlb_tls_cert_t **out,
                      char *errbuf, size_t errlen);
/** The certificate in PEM, followed by its private key (PKCS#8 PEM) when with_key. Returns a
 * malloc'd NUL-terminated string owned by the caller. Fatal on OOM. */
char *zlb_tls_cert_pem(const zlb_tls_cert_t *c, bool with_key);
/** Writes the certificate (PEM) to cert_path and, when key_path is not NULL, the key to
 * key_path (mode 0600). Each file is replaced atomically (temporary file in the same directory,
 * fsync, rename), so a reader never sees half a file. 0 or -errno. Not on a loop thread. */
int zlb_tls_cert_write(const zlb_tls_cert_t *c, const char *cert_path, const char *key_path);
/** Frees. NULL ok. */
void zlb_tls_cert_destroy(zlb_tls_cert_t *c);

#endif
