// herald — options of the network host (herald::basic_server and its transports).
#pragma once

#include <herald/options.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace asio::ssl {
class context;
}

namespace herald {

/// TLS: https and wss on the server's one port (as ws and http are without it). Set either
/// the two files or a context; neither (the default) serves plain HTTP. Loaded by
/// basic_server::start(), which fails with std::errc::invalid_argument (and logs OpenSSL's
/// reason at error level) when a file is missing, unreadable or the key does not match.
/// herald's own context (from the files): TLS 1.2 and up, ECDHE with AEAD ciphers, the
/// server's cipher preference, no renegotiation, ALPN `http/1.1` (herald speaks no h2).
struct tls_options {
    /// PEM: the server's certificate first, then the intermediates (a `fullchain.pem`).
    std::string cert_chain_file;
    /// PEM: its private key (not encrypted).
    std::string private_key_file;
    /// Or an asio::ssl::context the CMS made and owns (e.g. one it reloads for certificate
    /// rotation, shared with its own listeners): herald uses its `native_handle()` as it is
    /// (protocol versions, ciphers, ALPN are the CMS's: offer no h2) and keeps it alive.
    /// Wins over the files.
    std::shared_ptr<asio::ssl::context> context;
    /// A connection that has not finished its handshake by then is closed.
    std::chrono::milliseconds handshake_timeout{10000};

    bool enabled() const noexcept { return context || !cert_chain_file.empty() || !private_key_file.empty(); }
};

/// What a herald server listens on and how it treats its connections. Every member has a
/// default; set the ones you need before constructing the server.
struct server_options {
    /// Where to listen. Port 0 picks a free port (see basic_server::port()).
    std::string address = "127.0.0.1";
    std::uint16_t port = 8080;
    /// I/O threads when the server runs its own io_context (ignored with the caller's).
    unsigned threads = 1;

    /// Origins allowed to open WebSockets and send polls, as `scheme://host[:port]`, or "*" for
    /// any. Empty (the default): only the server's own origin — the `Origin` must name the
    /// same host and port as the request's `Host`. Requests without `Origin` (non-browser
    /// clients) are allowed. A refused origin gets 403 before any upgrade.
    std::vector<std::string> allowed_origins;

    /// The server sends `ping` after this much quiet; a client silent for twice as long is
    /// closed (4000). Clients learn the value from `welcome` and `/herald/info`.
    std::chrono::milliseconds heartbeat{25000};

    /// On drain, each client is told to reconnect after a random delay in [0, drain_spread],
    /// so that a restart does not bring every client back in the same instant.
    std::chrono::milliseconds drain_spread{5000};
    /// How long stop() waits for clients to leave before closing what remains.
    std::chrono::milliseconds drain_timeout{10000};

    /// Largest HTTP request body (long-poll, publish) and largest inbound WebSocket message.
    std::size_t max_request_bytes = 64 * 1024;

    /// https and wss (see tls_options); empty: plain http and ws.
    tls_options tls;

    /// Name of this server in `welcome`, `/herald/info` and logs (default: address:port).
    std::string server_id;

    hub_options hub;
};

} // namespace herald
