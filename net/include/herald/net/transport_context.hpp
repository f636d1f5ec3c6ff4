// herald — what a network transport shares with the server it runs in.
#pragma once

#include <herald/hub.hpp>
#include <herald/net/http.hpp>
#include <herald/net/server_options.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace herald::net {

/// Handed by the server to each network transport it makes: the hub, the server's options,
/// and the server-wide state a transport reads (draining, the enabled transports).
///
/// Thread safety: the members may be read from any thread once the server has started;
/// jitter() is safe from any thread.
class transport_context {
public:
    transport_context(herald::hub& h, const server_options& o) : hub(h), opts(o) {}

    herald::hub& hub;
    const server_options& opts;
    std::vector<std::string> transports;  ///< the enabled ones, as clients see them
    std::string server_id;
    std::atomic<bool> draining{false};

    /// Whether the request's Origin may use herald (see server_options::allowed_origins).
    bool origin_allowed(const http_request& r) const {
        const std::string_view origin = r.header("origin");
        if (origin.empty()) return true;
        if (opts.allowed_origins.empty()) {
            // Same origin: the Origin's host[:port] equals the Host header.
            const std::size_t scheme = origin.find("://");
            if (scheme == std::string_view::npos) return false;
            return !r.header("host").empty() && origin.substr(scheme + 3) == r.header("host");
        }
        for (const std::string& o : opts.allowed_origins)
            if (o == "*" || o == origin) return true;
        return false;
    }

    /// A random delay in [0, drain_spread]: when to come back after a drain.
    std::chrono::milliseconds jitter() {
        std::lock_guard<std::mutex> lock(mu_);
        std::uniform_int_distribution<long long> d(0, opts.drain_spread.count());
        return std::chrono::milliseconds(d(rng_));
    }

private:
    std::mutex mu_;
    std::mt19937_64 rng_{std::random_device{}()};
};

} // namespace herald::net
