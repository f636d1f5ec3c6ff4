// herald — the network host's own counters: what the hub cannot see (bytes on sockets,
// WebSocket closes, how long a message waited to be written). Read by /herald/metrics.
#pragma once

#include <herald/frame.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace herald::net {

/// A latency histogram with fixed buckets (seconds, Prometheus' `le`), safe to observe from
/// any thread: relaxed atomics, no lock. Read by snapshot().
class latency_histogram {
public:
    static constexpr std::array<double, 14> bounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                       0.1,    0.25,  0.5,    1,     2.5,  5,     10};

    struct snapshot_t {
        std::array<std::uint64_t, bounds.size() + 1> counts{};  // per bucket, not cumulative; last: over every bound
        std::uint64_t count = 0;
        double sum_seconds = 0;
    };

    void observe(std::chrono::nanoseconds d) noexcept {
        const double s = d.count() < 0 ? 0.0 : static_cast<double>(d.count()) / 1e9;
        std::size_t i = 0;
        while (i < bounds.size() && s > bounds[i]) ++i;
        counts_[i].fetch_add(1, std::memory_order_relaxed);
        sum_ns_.fetch_add(static_cast<std::uint64_t>(d.count() < 0 ? 0 : d.count()), std::memory_order_relaxed);
    }

    snapshot_t snapshot() const noexcept {
        snapshot_t out;
        for (std::size_t i = 0; i < counts_.size(); ++i) {
            out.counts[i] = counts_[i].load(std::memory_order_relaxed);
            out.count += out.counts[i];
        }
        out.sum_seconds = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
        return out;
    }

private:
    std::array<std::atomic<std::uint64_t>, bounds.size() + 1> counts_{};
    std::atomic<std::uint64_t> sum_ns_{0};
};

/// The server's counters, written by its connections and transports (relaxed atomics, each
/// at most once per write batch or per connection event: never per byte or per subscriber).
struct server_metrics {
    std::atomic<std::uint64_t> bytes_written{0};         ///< to sockets (after TLS)
    std::atomic<std::uint64_t> connections_accepted{0};  ///< TCP connections let in
    std::atomic<std::uint64_t> connections_refused{0};   ///< refused at accept (503, 429)
    std::atomic<std::int64_t> websockets_open{0};        ///< WebSocket sessions open now
    std::atomic<std::uint64_t> websockets_opened{0};     ///< WebSocket sessions opened
    std::atomic<std::int64_t> polls_held{0};             ///< long-polls held now
    std::atomic<std::uint64_t> polls_answered{0};        ///< long-polls answered
    /// From a message's publish (its ordering in the hub) to its write to a client's socket,
    /// observed once per write batch, for the first message in it (the one queued longest). A message a client missed
    /// and got on its resume (a long-poll's next poll, a WebSocket back after a blip) counts
    /// with the time it waited for the client.
    latency_histogram delivery_latency;

    /// WebSocket close codes herald sent, counted by closes_sent().
    static constexpr std::array<std::uint16_t, 10> close_codes = {1000, 1001, 1002, 1003, 1007, 1009, 4000, 4001, 4003, 4008};
    std::array<std::atomic<std::uint64_t>, close_codes.size() + 1> closes{};  // last: any other code

    void close_sent(std::uint16_t code) noexcept {
        std::size_t i = 0;
        while (i < close_codes.size() && close_codes[i] != code) ++i;
        closes[i].fetch_add(1, std::memory_order_relaxed);
    }
};

/// Observes, in `m.delivery_latency`, how long the first message among `frames` (queued
/// longest: a batch about to be written) has waited since its publish. Other frames
/// (answers, pings) are not counted.
template <class Frames>
void observe_delivery(server_metrics& m, const Frames& frames) {
    for (const frame_ptr& f : frames) {
        if (f->type != frame_type::message) continue;
        m.delivery_latency.observe(std::chrono::steady_clock::now() - f->created);
        return;
    }
}

} // namespace herald::net
