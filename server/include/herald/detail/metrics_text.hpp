// herald — /herald/metrics: the hub's, the network host's and the backplane's counters in
// Prometheus' text exposition format (version 0.0.4). Every name starts with `herald_`, says
// its unit, and counters end in `_total`; no label carries a channel or a user.
#pragma once

#include <herald/backplane.hpp>
#include <herald/error.hpp>
#include <herald/hub.hpp>
#include <herald/net/metrics.hpp>
#include <herald/detail/prometheus_text.hpp>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace herald::detail {

/// A histogram family: cumulative buckets, +Inf, _sum and _count.
inline void write_histogram(prometheus_text& p, std::string_view name, std::string_view help,
                        const net::latency_histogram::snapshot_t& h) {
    p.family(name, "histogram", help);
    const std::string bucket = std::string(name) + "_bucket";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < net::latency_histogram::bounds.size(); ++i) {
        cumulative += h.counts[i];
        char le[48];
        std::snprintf(le, sizeof le, "{le=\"%g\"}", net::latency_histogram::bounds[i]);
        p.sample(bucket, le, static_cast<double>(cumulative));
    }
    p.sample(bucket, "{le=\"+Inf\"}", static_cast<double>(h.count));
    p.sample(std::string(name) + "_sum", {}, h.sum_seconds);
    p.sample(std::string(name) + "_count", {}, static_cast<double>(h.count));
}

/// What /herald/metrics reads, gathered by the server at the scrape.
struct metrics_input {
    std::string_view version;
    std::string_view backplane;
    hub_stats hub;
    herald::backplane_status backplane_status;
    const net::server_metrics* net = nullptr;
    std::uint64_t connections = 0;  // TCP connections open now
    bool draining = false;
};

inline std::string metrics_text(const metrics_input& in) {
    prometheus_text p;
    const net::server_metrics& n = *in.net;
    const auto u = [](auto v) { return static_cast<double>(v); };

    p.family("herald_build_info", "gauge", "Always 1: the herald version and backplane of this server.");
    p.sample("herald_build_info", "{version=\"" + std::string(in.version) + "\",backplane=\"" + std::string(in.backplane) + "\"}", 1);
    p.single("herald_draining", "gauge", "1 while the server drains (stop() was called), else 0.", in.draining ? 1 : 0);

    // Connections and clients.
    p.single("herald_connections", "gauge", "TCP connections open now (every transport, and plain HTTP requests).", u(in.connections));
    p.single("herald_connections_accepted_total", "counter", "TCP connections let in.", u(n.connections_accepted.load()));
    p.single("herald_connections_refused_total", "counter", "TCP connections refused at accept (503 overloaded, 429 per address).",
             u(n.connections_refused.load()));
    p.family("herald_clients", "gauge", "Clients connected now, by transport (long-poll: polls held now).");
    p.sample("herald_clients", "{transport=\"websocket\"}", u(n.websockets_open.load()));
    p.sample("herald_clients", "{transport=\"longpoll\"}", u(n.polls_held.load()));
    p.single("herald_websocket_sessions_opened_total", "counter", "WebSocket sessions opened (handshakes completed).",
             u(n.websockets_opened.load()));
    p.single("herald_longpoll_held_polls", "gauge", "Long-polls held now.", u(n.polls_held.load()));
    p.single("herald_longpoll_polls_answered_total", "counter", "Long-polls answered.", u(n.polls_answered.load()));
    p.single("herald_sessions", "gauge", "Hub sessions open now (one per WebSocket, one per held poll, in-process clients).",
             u(in.hub.sessions));

    // Channels and messages.
    p.single("herald_subscriptions", "gauge", "Sessions following a channel now, summed over channels.", u(in.hub.subscriptions));
    p.single("herald_channels", "gauge", "Channels held now (with subscribers or history).", u(in.hub.channels));
    p.single("herald_history_bytes", "gauge", "Bytes kept now in the channels' histories.", u(in.hub.history_bytes));
    p.single("herald_presence_channels", "gauge", "Channels with presence members or listeners on this server now.",
             u(in.hub.presence_channels));
    p.single("herald_presence_members", "gauge", "Presence members listed from this server now, summed over channels.",
             u(in.hub.presence_members));
    p.single("herald_messages_published_total", "counter", "Messages ordered and delivered to this server's hub.", u(in.hub.published));
    p.single("herald_messages_delivered_total", "counter", "Messages queued to subscribers (replays included).", u(in.hub.deliveries));
    p.single("herald_publish_errors_total", "counter", "Publishes refused (bad input, backplane down).", u(in.hub.publish_errors));
    p.single("herald_slow_consumer_disconnects_total", "counter", "Sessions closed because their outbound queue passed its cap.",
             u(in.hub.slow_consumers));
    p.single("herald_written_bytes_total", "counter", "Bytes written to client sockets (after TLS).", u(n.bytes_written.load()));
    write_histogram(p, "herald_delivery_latency_seconds",
                "From a message's publish to its write to a client's socket, once per write batch (its first message). "
                "A message a client got on its resume counts with the time it waited for the client.",
                n.delivery_latency.snapshot());

    // What clients were told.
    p.family("herald_client_errors_total", "counter", "error frames sent to clients, by code (refusals, acks and subscribe answers; process-wide).");
    for (int code = 0; code < error_count; ++code) {
        const char* name = code == 0 ? "internal_error" : to_wire(static_cast<error>(code));
        p.sample("herald_client_errors_total", "{code=\"" + std::string(name) + "\"}",
                 u(errors_sent()[static_cast<std::size_t>(code)].load(std::memory_order_relaxed)));
    }
    p.family("herald_websocket_closes_total", "counter", "WebSocket close frames herald sent, by close code.");
    for (std::size_t i = 0; i <= net::server_metrics::close_codes.size(); ++i) {
        const std::string code = i < net::server_metrics::close_codes.size() ? std::to_string(net::server_metrics::close_codes[i]) : "other";
        p.sample("herald_websocket_closes_total", "{code=\"" + code + "\"}", u(n.closes[i].load()));
    }

    // The backplane.
    const herald::backplane_status& b = in.backplane_status;
    p.single("herald_backplane_up", "gauge", "1 when the backplane takes publishes and fetches now.", b.up ? 1 : 0);
    p.single("herald_backplane_reconnects_total", "counter", "Backplane links re-established after a loss.", u(b.reconnects));
    p.single("herald_backplane_errors_total", "counter", "Backplane publishes and fetches answered with an error.", u(b.errors));
    p.single("herald_backplane_timeouts_total", "counter", "Backplane links dropped because the engine stopped answering.",
             u(b.timeouts));
    p.single("herald_backplane_refetches_total", "counter", "Channels re-fetched from the backplane after a gap, an epoch change or a reconnect.",
             u(in.hub.refetches));
    if (b.round_trip.count() > 0)
        p.single("herald_backplane_round_trip_seconds", "gauge", "The last measured round trip to the backplane's engine.",
                 static_cast<double>(b.round_trip.count()) / 1e6);
    return p.take();
}

} // namespace herald::detail
