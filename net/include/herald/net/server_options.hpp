// herald — options of the network host (herald::basic_server and its transports).
#pragma once

#include <herald/options.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace herald {

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

    /// The server sends `ping` after this much quiet; a client silent for twice as long is
    /// closed (4000). Clients learn the value from `welcome` and `/herald/info`.
    std::chrono::milliseconds heartbeat{25000};

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

    /// Largest HTTP request body (long-poll, publish) and largest inbound WebSocket message.
    std::size_t max_request_bytes = 64 * 1024;

    /// Name of this server in `welcome`, `/herald/info` and logs (default: address:port).
    std::string server_id;

    hub_options hub;
};

} // namespace herald
