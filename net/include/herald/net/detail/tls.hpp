// herald — TLS without I/O: one OpenSSL session over two memory BIOs. The connection feeds it
// the ciphertext it read and writes out the ciphertext it produces, with its own non-blocking
// gathered writes; no socket, no Asio, nothing blocks (as herald runs websocketpp's processor
// sans-I/O). Two sessions, a client and a server, can talk to each other in memory (the tests).
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace herald::net::detail {

/// OpenSSL's error queue of this thread as one line (its first error's reason; the queue is
/// emptied), or `fallback` when it is empty.
inline std::string tls_error_text(std::string_view fallback = "unknown TLS error") {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        if (!out.empty()) continue;  // keep the first, drop the rest
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        const char* reason = ERR_reason_error_string(e);
        out = reason ? std::string(reason) : std::string(buf);
    }
    return out.empty() ? std::string(fallback) : out;
}

/// An SSL_CTX, either herald's own (loaded from files by load_server(), or made by client())
/// or borrowed from the caller (an asio::ssl::context the CMS owns: `owner` keeps it alive).
class tls_context {
public:
    /// Wraps a context the caller owns and configured; herald does not change it.
    tls_context(SSL_CTX* borrowed, std::shared_ptr<const void> owner) : ctx_(borrowed), owner_(std::move(owner)) {}
    ~tls_context() {
        if (!owner_ && ctx_) SSL_CTX_free(ctx_);
    }
    tls_context(const tls_context&) = delete;
    tls_context& operator=(const tls_context&) = delete;

    SSL_CTX* native() const noexcept { return ctx_; }

    /// A server context from a PEM certificate chain (the leaf first) and its PEM private key:
    /// TLS 1.2 and up, AEAD ciphers with forward secrecy, the server's cipher preference, no
    /// renegotiation, ALPN `http/1.1` only (herald speaks no h2). Null with `why` on failure.
    static std::unique_ptr<tls_context> load_server(const std::string& cert_chain_file, const std::string& key_file,
                                                    std::string& why) {
        ERR_clear_error();
        std::unique_ptr<tls_context> c(new tls_context(SSL_CTX_new(TLS_server_method())));
        if (!c->ctx_) { why = tls_error_text("cannot make an SSL_CTX"); return nullptr; }
        SSL_CTX* ctx = c->ctx_;
        harden(ctx);
        SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_chain_file.c_str()) != 1) {
            why = "certificate chain file '" + cert_chain_file + "': " + tls_error_text();
            return nullptr;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
            why = "private key file '" + key_file + "': " + tls_error_text();
            return nullptr;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            why = "private key file '" + key_file + "' does not match the certificate in '" + cert_chain_file +
                  "': " + tls_error_text();
            return nullptr;
        }
        SSL_CTX_set_alpn_select_cb(ctx, &select_http11, nullptr);
        return c;
    }

    /// A client context (tests, tools): TLS 1.2 and up, ALPN `http/1.1`; `verify` checks the
    /// server's certificate against the system's trust store (and the host, see tls_session).
    static std::unique_ptr<tls_context> client(bool verify) {
        std::unique_ptr<tls_context> c(new tls_context(SSL_CTX_new(TLS_client_method())));
        if (!c->ctx_) return nullptr;
        harden(c->ctx_);
        static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
        SSL_CTX_set_alpn_protos(c->ctx_, alpn, sizeof alpn);
        if (verify) {
            SSL_CTX_set_default_verify_paths(c->ctx_);
            SSL_CTX_set_verify(c->ctx_, SSL_VERIFY_PEER, nullptr);
        }
        return c;
    }

private:
    explicit tls_context(SSL_CTX* own) : ctx_(own) {}

    static void harden(SSL_CTX* ctx) {
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
        // TLS 1.2: ECDHE with AEAD only (TLS 1.3's suites are all AEAD with forward secrecy).
        SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                     "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                     "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
    }

    // ALPN: `http/1.1` when the client offers it (browsers offer h2 first); else no ALPN at
    // all, which means HTTP/1.1 too.
    static int select_http11(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                             unsigned int inlen, void*) {
        static const unsigned char ours[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
        unsigned char* selected = nullptr;
        if (SSL_select_next_proto(&selected, outlen, ours, sizeof ours, in, inlen) == OPENSSL_NPN_NEGOTIATED) {
            *out = selected;
            return SSL_TLSEXT_ERR_OK;
        }
        return SSL_TLSEXT_ERR_NOACK;
    }

    SSL_CTX* ctx_ = nullptr;
    std::shared_ptr<const void> owner_;
};

/// One TLS session, sans-I/O. Not thread-safe (the connection's strand).
///
/// The loop of a connection: bytes read → feed_ciphertext() → read_plaintext(fn) (fn gets the
/// plaintext; the handshake advances here too) → write out pending_ciphertext(), then
/// consume_ciphertext(n) for what the socket took. To send: write_plaintext(buffers), then the
/// same draining. close() queues the close_notify.
class tls_session {
public:
    enum class role { server, client };
    enum class state {
        handshaking,  ///< no application data yet
        open,         ///< handshake done
        closed,       ///< a close_notify was received or sent: no more application data
        failed,       ///< a handshake or record error (error() says which); close the connection
    };
    /// How much ciphertext write_plaintext() lets wait before it stops taking plaintext.
    static constexpr std::size_t default_ciphertext_limit = 64 * 1024;

    /// `server_name` (client only): sent as SNI and, with a verifying context, checked against
    /// the server's certificate.
    tls_session(SSL_CTX* ctx, role r, const std::string& server_name = {}) : ssl_(SSL_new(ctx)) {
        if (!ssl_) { fail(tls_error_text("cannot make an SSL")); return; }
        BIO* rbio = BIO_new(BIO_s_mem());
        BIO* wbio = BIO_new(BIO_s_mem());
        if (!rbio || !wbio) {
            BIO_free(rbio);
            BIO_free(wbio);
            fail("out of memory");
            return;
        }
        BIO_set_mem_eof_return(rbio, -1);  // no input yet means "want more", not end of stream
        SSL_set_bio(ssl_, rbio, wbio);     // the SSL owns both
        wbio_ = wbio;
        rbio_ = rbio;
        // An idle connection (a quiet WebSocket) gives its 2 × 17 KB record buffers back.
        SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
        if (r == role::server) {
            SSL_set_accept_state(ssl_);
        } else {
            SSL_set_connect_state(ssl_);
            if (!server_name.empty()) {
                SSL_set_tlsext_host_name(ssl_, server_name.c_str());
                SSL_set1_host(ssl_, server_name.c_str());
            }
        }
    }
    ~tls_session() {
        if (ssl_) SSL_free(ssl_);
    }
    tls_session(const tls_session&) = delete;
    tls_session& operator=(const tls_session&) = delete;

    state status() const noexcept { return state_; }
    bool established() const noexcept { return state_ == state::open; }
    bool failed() const noexcept { return state_ == state::failed; }
    /// Why it failed (OpenSSL's reason), empty otherwise.
    const std::string& error() const noexcept { return error_; }
    /// The peer sent a plain HTTP request to this TLS server (worth a plain 400 before closing).
    bool plain_http() const noexcept { return plain_http_; }
    /// The protocol ALPN chose ("http/1.1"), empty when none.
    std::string_view alpn() const noexcept {
        const unsigned char* p = nullptr;
        unsigned int n = 0;
        if (ssl_) SSL_get0_alpn_selected(ssl_, &p, &n);
        return {reinterpret_cast<const char*>(p), n};
    }
    SSL* native() const noexcept { return ssl_; }

    /// A client begins: the ClientHello goes to pending_ciphertext().
    state start() {
        if (state_ == state::handshaking) handshake();
        return state_;
    }

    /// Ciphertext the peer sent. Nothing is decrypted until read_plaintext().
    void feed_ciphertext(const char* data, std::size_t n) {
        if (state_ == state::failed || n == 0) return;
        if (BIO_write(rbio_, data, static_cast<int>(n)) != static_cast<int>(n)) fail("out of memory");
    }

    /// Decrypts what was fed, calling `fn(const char*, std::size_t)` for each piece of
    /// plaintext (valid during the call), and advances the handshake (whose answers go to
    /// pending_ciphertext()). Stops early when `fn` closes the session.
    template <class F>
    state read_plaintext(F&& fn) {
        thread_local char buffer[16384];
        while (state_ == state::handshaking || state_ == state::open) {
            std::size_t got = 0;
            ERR_clear_error();
            const int ok = SSL_read_ex(ssl_, buffer, sizeof buffer, &got);
            if (ok == 1) {
                if (state_ == state::handshaking) state_ = state::open;
                fn(static_cast<const char*>(buffer), got);
                continue;
            }
            settle(SSL_get_error(ssl_, ok));
            break;
        }
        return state_;
    }

    /// Encrypts the buffers (a sequence of anything with data() and size(), e.g. asio's
    /// const_buffer) into records of up to 16 KB: small frames share a record. Stops once
    /// `limit` bytes of ciphertext wait (a slow peer: the rest stays with the caller, not
    /// copied). Returns the plaintext bytes taken; nothing before the handshake is done.
    template <class Buffers>
    std::size_t write_plaintext(const Buffers& buffers, std::size_t limit = default_ciphertext_limit) {
        if (state_ != state::open || pending_ciphertext().size() >= limit) return 0;
        thread_local char stage[16384];
        std::size_t staged = 0, taken = 0;
        for (const auto& b : buffers) {
            const char* p = static_cast<const char*>(b.data());
            std::size_t n = b.size();
            while (n > 0) {
                if (staged == 0 && n >= sizeof stage) {  // a large buffer goes as is
                    const std::size_t m = std::min(n - n % sizeof stage, 4 * sizeof stage);
                    if (!encrypt(p, m)) return taken;
                    taken += m;
                    p += m;
                    n -= m;
                } else {
                    const std::size_t m = std::min(n, sizeof stage - staged);
                    std::memcpy(stage + staged, p, m);
                    staged += m;
                    p += m;
                    n -= m;
                    if (staged < sizeof stage) continue;
                    if (!encrypt(stage, staged)) return taken;
                    taken += staged;
                    staged = 0;
                }
                // Staged bytes are always written before returning, so `taken` is exact.
                if (pending_ciphertext().size() >= limit) return taken;
            }
        }
        if (staged > 0 && encrypt(stage, staged)) taken += staged;
        return taken;
    }
    std::size_t write_plaintext(std::string_view bytes, std::size_t limit = default_ciphertext_limit) {
        const std::string_view one[1] = {bytes};
        return write_plaintext(one, limit);
    }

    /// Ciphertext to send to the peer (handshake, records, close_notify), valid until the next call.
    std::string_view pending_ciphertext() const noexcept { return std::string_view(out_).substr(out_at_); }
    /// Drops the first `n` bytes of pending_ciphertext() (the socket took them).
    void consume_ciphertext(std::size_t n) noexcept {
        out_at_ += n;
        if (out_at_ >= out_.size()) {
            out_.clear();
            out_at_ = 0;
            if (out_.capacity() > 4 * default_ciphertext_limit) std::string().swap(out_);
        }
    }

    /// Queues the close_notify (once the handshake is done; a session that failed or never
    /// finished its handshake sends nothing).
    void close() {
        if (state_ == state::open) {
            ERR_clear_error();
            SSL_shutdown(ssl_);
            collect();
        }
        if (state_ != state::failed) state_ = state::closed;
    }

private:
    // Drives the handshake with no application data to read (a client's first flight).
    void handshake() {
        ERR_clear_error();
        const int ok = SSL_do_handshake(ssl_);
        if (ok == 1) { state_ = state::open; collect(); return; }
        settle(SSL_get_error(ssl_, ok));
    }

    // After an SSL call that did not return data: collects what it wrote, and sorts out why.
    void settle(int err) {
        collect();
        switch (err) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            if (state_ == state::handshaking && SSL_is_init_finished(ssl_)) state_ = state::open;
            return;
        case SSL_ERROR_ZERO_RETURN:  // the peer's close_notify
            state_ = state::closed;
            return;
        default: {
            const unsigned long e = ERR_peek_error();
            plain_http_ = ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST;
            fail(tls_error_text(err == SSL_ERROR_SYSCALL ? "unexpected end of the TLS stream" : "TLS error"));
            return;
        }
        }
    }

    bool encrypt(const char* p, std::size_t n) {
        std::size_t written = 0;
        ERR_clear_error();
        const int ok = SSL_write_ex(ssl_, p, n, &written);
        if (ok != 1) {
            settle(SSL_get_error(ssl_, ok));
            if (state_ == state::open) fail("TLS write did not complete");
            return false;
        }
        collect();
        return true;
    }

    // Moves what OpenSSL wrote into the write BIO to out_.
    void collect() {
        if (!wbio_) return;
        for (std::size_t n = BIO_ctrl_pending(wbio_); n > 0; n = BIO_ctrl_pending(wbio_)) {
            if (out_at_ > 0 && out_at_ == out_.size()) { out_.clear(); out_at_ = 0; }
            const std::size_t old = out_.size();
            out_.resize(old + n);
            const int got = BIO_read(wbio_, &out_[old], static_cast<int>(n));
            out_.resize(old + static_cast<std::size_t>(got > 0 ? got : 0));
            if (got <= 0) break;
        }
    }

    void fail(std::string why) {
        state_ = state::failed;
        error_ = std::move(why);
    }

    SSL* ssl_ = nullptr;
    BIO* rbio_ = nullptr;  // owned by ssl_
    BIO* wbio_ = nullptr;  // owned by ssl_
    state state_ = state::handshaking;
    bool plain_http_ = false;
    std::string error_;
    std::string out_;         // ciphertext to send; [out_at_, end) is not sent yet
    std::size_t out_at_ = 0;
};

} // namespace herald::net::detail
