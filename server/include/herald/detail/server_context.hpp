// herald — what transports share with the server they run in.
#pragma once

#include <herald/http.hpp>
#include <herald/hub.hpp>
#include <herald/server_options.hpp>
#include <herald/detail/connection.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace herald::detail {

class server_context {
public:
    server_context(herald::hub& h, const server_options& o) : hub(h), opts(o) {}

    herald::hub& hub;
    const server_options& opts;
    std::vector<std::string> transports;  ///< enabled ones, as clients see them
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

    /// A session wake that never blocks the publisher: it joins the connection's wake batch
    /// (one I/O thread), or posts to the connection's strand.
    static session::wake_function waker(const std::shared_ptr<connection>& c) {
        if (wake_batch* b = c->batch())
            return [w = std::weak_ptr<connection>(c), b] {
                if (auto conn = w.lock()) b->add(std::move(conn));
            };
        return [w = std::weak_ptr<connection>(c)] {
            if (auto conn = w.lock())
                asio::post(conn->get_executor(), [w] {
                    if (auto c2 = w.lock()) c2->wake();
                });
        };
    }

    static http_response error_response(int status, std::error_code ec, std::string_view message = {}) {
        nlohmann::json j = {{"error", {{"code", to_wire(ec)}, {"message", message.empty() ? ec.message() : std::string(message)}}}};
        return http_response::json(status, j.dump());
    }

private:
    std::mutex mu_;
    std::mt19937_64 rng_{std::random_device{}()};
};

} // namespace herald::detail
