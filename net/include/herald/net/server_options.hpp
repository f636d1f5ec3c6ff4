// herald — options of the network host (herald::basic_server and its transports).
#pragma once

#include <herald/options.hpp>
#include <herald/protocol.hpp>

#include <chrono>
#include <cstddef>
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

/// `/herald/metrics`, in Prometheus' text format (docs/operations.md lists every metric). It
/// names no channel and no user, but says how busy the server is: it is off until a scraper
/// is named, by token or by address. Off, it answers 404; to anyone else, 403.
struct metrics_options {
    /// A scraper that sends `Authorization: Bearer <token>` may read (compared in constant
    /// time). Prometheus: `authorization: {credentials: <token>}` in the scrape config.
    std::string token;
    /// Peer addresses (of the TCP connection, e.g. "127.0.0.1", "::1") that may read without
    /// the token. Behind a reverse proxy on the same host every public request comes from the
    /// proxy's address: use the token there, or make the proxy refuse /herald/metrics.
    std::vector<std::string> allow_addresses;

    bool enabled() const noexcept { return !token.empty() || !allow_addresses.empty(); }
};

/// What a herald server listens on and how it treats its connections. Every member has a
/// default; set the ones you need before constructing the server.
struct server_options {
    /// Where to listen. Port 0 picks a free port (see basic_server::port()).
    std::string address = "127.0.0.1";
    std::uint16_t port = 8080;
    /// I/O threads when the server runs its own io_context (ignored with the caller's).
    unsigned threads = 1;

    /// Origins allowed to open WebSockets, send polls and read /herald/diagnose, as
    /// `scheme://host[:port]` (compared by scheme, host and port; case and default ports
    /// (http 80, https 443) do not matter), or "*" for any. Empty (the default): only the
    /// server's own origin — the `Origin` must name the request's `Host` (host and port) with
    /// scheme http, or https when trust_forwarded_proto says so. `Origin: null` is refused;
    /// requests without `Origin` (non-browser clients) are allowed. A refused origin gets 403
    /// before any upgrade. Behind a TLS-terminating proxy: list the site's https origin here,
    /// or set trust_forwarded_proto.
    std::vector<std::string> allowed_origins;
    /// Whether the same-origin default believes `X-Forwarded-Proto: https` (the request came
    /// to a proxy over TLS). Only behind a proxy that sets the header itself: otherwise any
    /// client could claim it. Off by default.
    bool trust_forwarded_proto = false;

    /// A WebSocket is never quiet for longer than this from the server (a `ping` goes after
    /// this much quiet, less the 1 s tick); a client silent for twice as long is closed
    /// (4000). Clients learn the value from `welcome` and `/herald/info`. Milliseconds; at
    /// least 1000 (start() raises a shorter one, and announces what it kept).
    std::chrono::milliseconds heartbeat{25000};

    /// The newest protocol version this server speaks (protocol::latest_version, or lower):
    /// each client gets the newest version both it and the server know (docs/protocol.md,
    /// "Versions"). Lower it to pin a cluster to herald.v1 while some of its servers are
    /// older (a rolling upgrade that might be rolled back); clients then speak v1 everywhere.
    int max_protocol_version = protocol::latest_version;

    /// On drain, each client is told to reconnect after a random delay in [0, drain_spread],
    /// so that a restart does not bring every client back in the same instant.
    std::chrono::milliseconds drain_spread{5000};
    /// How long stop() waits for clients to leave before closing what remains.
    std::chrono::milliseconds drain_timeout{10000};

    /// The shared secret of server-to-server publishing: the CMS's other processes publish
    /// with `POST /herald/publish` and `Authorization: Bearer <publish_secret>` (compared in
    /// constant time), as the server, with no authorizer check. Empty (the default):
    /// server-to-server publishing is off, and such a request gets 403 `forbidden`. A publish
    /// without the header is a browser's: admitted and authorized as any client request.
    std::string publish_secret;

    /// Largest HTTP request body (long-poll, publish) and largest inbound WebSocket message, in
    /// bytes. Over it: `413` and `Connection: close`; a WebSocket closes with 1009.
    std::size_t max_request_bytes = 64 * 1024;

    // ---- limits against hostile clients (docs/security.md, "Connections and HTTP") --------
    // Deadlines are checked by the once-a-second connection tick: they hold to within 1 s.

    /// Open connections in all, counted from accept to close. Past it a new connection gets
    /// `503`, `Retry-After: 5` and `Connection: close`, and is closed before its request is
    /// read. start() lowers it to the process's descriptor limit (RLIMIT_NOFILE) less 32;
    /// 0: that limit only. Out of descriptors all the same (other files), accepting pauses
    /// 100 ms at a time, and one waiting client gets the 503 through a reserve descriptor.
    std::size_t max_connections = 10000;
    /// Open connections from one IP address. Past it: `429`, `Retry-After: 5`, `Connection:
    /// close`, closed unread. Behind a reverse proxy every connection comes from the proxy:
    /// set 0 (no per-address limit) there, and let the proxy limit per client.
    std::size_t max_connections_per_address = 256;
    /// Milliseconds a new connection has to send its first request's headers, and a request
    /// on a kept-alive connection has from its first byte to the end of its headers. Past it:
    /// closed (nothing was sent) or `408` and `Connection: close` (a head was begun).
    std::chrono::milliseconds header_timeout{5000};
    /// Milliseconds a request has from its first byte to the end of its body. Past it: `408`,
    /// `Connection: close`.
    std::chrono::milliseconds body_timeout{10000};
    /// Milliseconds an idle kept-alive connection stays open after its last answer; then it is
    /// closed without a word (clients retry an idempotent request on a fresh connection).
    /// A held long-poll is not idle: its hold is the long-poll transport's.
    std::chrono::milliseconds keep_alive_timeout{30000};
    /// Milliseconds within which a WebSocket frame (a message, if fragmented) that has begun to
    /// arrive must arrive whole. Past it the connection is closed (no close frame: the
    /// stream is mid-frame).
    std::chrono::milliseconds websocket_frame_timeout{10000};
    /// Bytes of a request head (request line and headers). Over it: `431`, `Connection: close`.
    /// The parser herald uses stops at 16000 in any case.
    std::size_t max_header_bytes = 8 * 1024;
    /// Header lines of a request. Over it: `431`, `Connection: close`.
    std::size_t max_headers = 100;
    /// Bytes written to a connection that the peer has not yet taken. Over it the connection
    /// stops reading (the peer's further requests, pings, frames stay in its kernel buffers)
    /// until the peer reads; its hub session's own queue cap still applies (slow consumer).
    std::size_t max_unwritten_bytes = 256 * 1024;
    /// Bytes a client may send ahead of the answer it waits for (HTTP pipelining) while a
    /// request is being served or held. Over it: closed without an answer. On an idle
    /// connection pipelined requests are read one at a time and never buffered past this.
    std::size_t max_pipelined_bytes = 64 * 1024;

    /// https and wss (see tls_options); empty: plain http and ws.
    tls_options tls;

    /// Who may read /herald/metrics (off by default). /herald/health is always served: it
    /// says only ready, starting or draining.
    metrics_options metrics;

    /// Name of this server in `welcome`, `/herald/info` and logs (default: address:port).
    std::string server_id;

    hub_options hub;
};

} // namespace herald
