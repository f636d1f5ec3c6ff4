// net::detail::tls_session in memory: a client and a server session hand each other their
// ciphertext; no socket. The certificate is made here with OpenSSL (a throwaway self-signed one).
#include <herald/net/detail/tls.hpp>

#include <catch2/catch.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

using herald::net::detail::tls_context;
using herald::net::detail::tls_session;

namespace {

// A self-signed certificate for CN=localhost (P-256), written as PEM files in the temp dir.
struct test_certificate {
    std::string cert_file, key_file;
    test_certificate() {
        EVP_PKEY* key = EVP_EC_gen("P-256");
        X509* x = X509_new();
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_gmtime_adj(X509_getm_notBefore(x), -60);
        X509_gmtime_adj(X509_getm_notAfter(x), 3600);
        X509_set_pubkey(x, key);
        X509_NAME* name = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
        X509_set_issuer_name(x, name);
        X509_sign(x, key, EVP_sha256());
        const std::string dir = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
        cert_file = dir + "/herald-tls-test-" + std::to_string(::getpid()) + "-cert.pem";
        key_file = dir + "/herald-tls-test-" + std::to_string(::getpid()) + "-key.pem";
        FILE* f = std::fopen(cert_file.c_str(), "w");
        PEM_write_X509(f, x);
        std::fclose(f);
        f = std::fopen(key_file.c_str(), "w");
        PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
        std::fclose(f);
        X509_free(x);
        EVP_PKEY_free(key);
    }
    ~test_certificate() {
        std::remove(cert_file.c_str());
        std::remove(key_file.c_str());
    }
};

const test_certificate& certificate() {
    static test_certificate c;
    return c;
}

// Moves ciphertext both ways until neither side has any; collects each side's plaintext.
void pump(tls_session& a, tls_session& b, std::string& a_got, std::string& b_got) {
    for (int i = 0; i < 20; ++i) {
        bool moved = false;
        for (auto [from, to, got] : {std::tuple{&a, &b, &b_got}, std::tuple{&b, &a, &a_got}}) {
            const std::string_view out = from->pending_ciphertext();
            if (out.empty()) continue;
            moved = true;
            to->feed_ciphertext(out.data(), out.size());
            from->consume_ciphertext(out.size());
            to->read_plaintext([&, got = got](const char* p, std::size_t n) { got->append(p, n); });
        }
        if (!moved) return;
    }
}

struct pair_fixture {
    std::unique_ptr<tls_context> server_ctx, client_ctx;
    std::unique_ptr<tls_session> server, client;
    std::string server_got, client_got;
    pair_fixture() {
        std::string why;
        server_ctx = tls_context::load_server(certificate().cert_file, certificate().key_file, why);
        REQUIRE(server_ctx);
        client_ctx = tls_context::client(false);
        server = std::make_unique<tls_session>(server_ctx->native(), tls_session::role::server);
        client = std::make_unique<tls_session>(client_ctx->native(), tls_session::role::client, "localhost");
    }
    void handshake() {
        client->start();
        pump(*client, *server, client_got, server_got);
        REQUIRE(client->established());
        REQUIRE(server->established());
    }
};

} // namespace

TEST_CASE("tls_session: handshake in memory, ALPN http/1.1, TLS 1.3 by default", "[tls]") {
    pair_fixture p;
    CHECK(p.server->status() == tls_session::state::handshaking);
    p.handshake();
    CHECK(p.server->alpn() == "http/1.1");
    CHECK(p.client->alpn() == "http/1.1");
    CHECK(std::string(SSL_get_version(p.server->native())) == "TLSv1.3");
}

TEST_CASE("tls_session: data both ways, gathered buffers, large writes", "[tls]") {
    pair_fixture p;
    p.handshake();
    // Small gathered pieces share records; the server gets them in order.
    std::vector<std::string_view> pieces = {"GET /herald/info HTTP/1.1\r\n", "Host: localhost\r\n", "\r\n"};
    CHECK(p.client->write_plaintext(pieces) == 27 + 17 + 2);
    pump(*p.client, *p.server, p.client_got, p.server_got);
    CHECK(p.server_got == "GET /herald/info HTTP/1.1\r\nHost: localhost\r\n\r\n");

    // A large answer, in pieces around the 16 KB stage, all of it through.
    std::string big(100000, 'x');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    std::vector<std::string_view> parts = {std::string_view(big).substr(0, 10), std::string_view(big).substr(10, 40000),
                                           std::string_view(big).substr(40010)};
    std::size_t taken = 0;
    while (taken < big.size()) {
        // Past the ciphertext limit the session stops taking plaintext; the caller resumes.
        std::vector<std::string_view> rest;
        std::size_t skip = taken;
        for (auto v : parts) {
            if (skip >= v.size()) { skip -= v.size(); continue; }
            rest.push_back(v.substr(skip));
            skip = 0;
        }
        const std::size_t n = p.server->write_plaintext(rest, 32 * 1024);
        REQUIRE(n > 0);
        CHECK(p.server->pending_ciphertext().size() < 32 * 1024 + 70000);
        taken += n;
        pump(*p.server, *p.client, p.server_got, p.client_got);
    }
    CHECK(p.client_got == big);
}

TEST_CASE("tls_session: a corrupt record fails the session with a reason, no crash", "[tls]") {
    pair_fixture p;
    p.handshake();
    p.client->write_plaintext(std::string_view("hello"));
    std::string record(p.client->pending_ciphertext());
    p.client->consume_ciphertext(record.size());
    record[record.size() - 3] ^= 0x5a;  // in the AEAD tag
    p.server->feed_ciphertext(record.data(), record.size());
    std::string got;
    CHECK(p.server->read_plaintext([&](const char* d, std::size_t n) { got.append(d, n); }) == tls_session::state::failed);
    CHECK(got.empty());
    CHECK_FALSE(p.server->error().empty());
    // After a failure, nothing more is taken or decrypted.
    CHECK(p.server->write_plaintext(std::string_view("x")) == 0);
    p.server->feed_ciphertext("junk", 4);
    CHECK(p.server->read_plaintext([&](const char*, std::size_t) { FAIL("no plaintext after failure"); }) ==
          tls_session::state::failed);
}

TEST_CASE("tls_session: garbage and plain HTTP instead of a ClientHello fail the handshake", "[tls]") {
    pair_fixture p;
    const std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    p.server->feed_ciphertext(http.data(), http.size());
    CHECK(p.server->read_plaintext([](const char*, std::size_t) {}) == tls_session::state::failed);
    CHECK(p.server->plain_http());

    pair_fixture q;
    const std::string junk(300, '\x16');
    q.server->feed_ciphertext(junk.data(), junk.size());
    CHECK(q.server->read_plaintext([](const char*, std::size_t) {}) == tls_session::state::failed);
    CHECK_FALSE(q.server->plain_http());
}

TEST_CASE("tls_session: a TLS 1.1 client is refused", "[tls]") {
    pair_fixture p;
    SSL_set_min_proto_version(p.client->native(), TLS1_VERSION);
    SSL_set_max_proto_version(p.client->native(), TLS1_1_VERSION);
    p.client->start();
    pump(*p.client, *p.server, p.client_got, p.server_got);
    CHECK(p.server->failed());
    CHECK_FALSE(p.client->established());
}

TEST_CASE("tls_session: close_notify ends the peer's stream, and a verifying client refuses a self-signed certificate", "[tls]") {
    pair_fixture p;
    p.handshake();
    p.server->close();
    CHECK(p.server->status() == tls_session::state::closed);
    CHECK_FALSE(p.server->pending_ciphertext().empty());
    pump(*p.server, *p.client, p.server_got, p.client_got);
    CHECK(p.client->status() == tls_session::state::closed);

    auto verifying = tls_context::client(true);
    std::string why;
    auto server_ctx = tls_context::load_server(certificate().cert_file, certificate().key_file, why);
    tls_session s(server_ctx->native(), tls_session::role::server), c(verifying->native(), tls_session::role::client, "localhost");
    std::string a, b;
    c.start();
    pump(c, s, a, b);
    CHECK(c.failed());
    CHECK_THAT(c.error(), Catch::Matchers::Contains("certificate verify failed"));
}

TEST_CASE("tls_context: bad files give a reason", "[tls]") {
    std::string why;
    CHECK_FALSE(tls_context::load_server("/nonexistent/cert.pem", certificate().key_file, why));
    CHECK_THAT(why, Catch::Matchers::Contains("/nonexistent/cert.pem"));
    why.clear();
    CHECK_FALSE(tls_context::load_server(certificate().cert_file, certificate().cert_file, why));
    CHECK_THAT(why, Catch::Matchers::Contains("private key"));
}
