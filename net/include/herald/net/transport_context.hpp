// herald — what a network transport shares with the server it runs in.
#pragma once

#include <herald/hub.hpp>
#include <herald/net/http.hpp>
#include <herald/net/server_options.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::net {

/// What transport_context::admit() decided: the client's principal, or the answer that
/// refuses it (send it as is).
struct admission {
    std::optional<principal> who;   ///< admitted: who the client is
    bool as_server = false;         ///< admitted by the publish secret (admit_server): no principal to check
    http_response refusal;          ///< refused: the answer

    explicit operator bool() const noexcept { return who.has_value() || as_server; }
};

/// A transport's own check of a request's shape for admit(): none.
struct no_shape_check {
    std::optional<http_response> operator()(const http_request&) const { return std::nullopt; }
};

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

    /// The admission gate of every protocol request, in one order:
    ///  1. the Origin (403 `forbidden`, see origin_allowed());
    ///  2. the transport's own check of the request's shape, `shape(r)` returning the refusal
    ///     or nothing (long-poll: 405 for a method other than POST; WebSocket: 426 without
    ///     `Upgrade: websocket`);
    ///  3. draining (503 with a `reconnect` frame after jitter(), and Retry-After);
    ///  4. the authorizer's authenticate hook (401 `unauthenticated`), last: it is the
    ///     application's, and may cost a session-store lookup.
    /// Refusals are herald.v1 answers, `{"frames":[…]}` (http_response::refusal).
    template <class ShapeCheck = no_shape_check>
    admission admit(const http_request& r, ShapeCheck&& shape = {}) {
        admission a;
        if (screen(r, shape, a)) {
            a.who = hub.authenticate(r);
            if (!a.who) a.refusal = http_response::refusal(401, error::unauthenticated);
        }
        return a;
    }

    /// The same gate for a server-to-server request (`POST /herald/publish` with
    /// `Authorization: Bearer …`): steps 1-3, then the publish secret instead of the
    /// authenticate hook: 403 `forbidden` while server_options::publish_secret is empty (the
    /// feature is off), 401 `unauthenticated` for another secret.
    template <class ShapeCheck = no_shape_check>
    admission admit_server(const http_request& r, ShapeCheck&& shape = {}) {
        admission a;
        if (!screen(r, shape, a)) return a;
        if (opts.publish_secret.empty()) {
            a.refusal = http_response::refusal(403, error::forbidden,
                "server-to-server publishing is off: set server_options::publish_secret");
            return a;
        }
        constexpr std::string_view scheme = "Bearer ";
        const std::string_view auth = r.header("authorization");
        if (auth.size() > scheme.size() && auth.substr(0, scheme.size()) == scheme &&
            equal_constant_time(auth.substr(scheme.size()), opts.publish_secret))
            a.as_server = true;
        else
            a.refusal = http_response::refusal(401, error::unauthenticated, "wrong publish secret");
        return a;
    }

    /// 503 with `frames`, then a `reconnect` frame after `after`, and Retry-After: how a
    /// draining server answers an HTTP protocol request (refused or held).
    static http_response draining_answer(std::vector<frame_ptr> frames, std::chrono::milliseconds after) {
        frames.push_back(protocol::make_reconnect(after));
        http_response res = http_response::frames(503, frames);
        res.headers.emplace_back("Retry-After", protocol::retry_after(after));
        return res;
    }

    /// A random delay in [0, drain_spread]: when to come back after a drain.
    std::chrono::milliseconds jitter() {
        std::lock_guard<std::mutex> lock(mu_);
        std::uniform_int_distribution<long long> d(0, opts.drain_spread.count());
        return std::chrono::milliseconds(d(rng_));
    }

private:
    // Steps 1-3 of admit(): false with `a.refusal` set when the request is refused.
    template <class ShapeCheck>
    bool screen(const http_request& r, ShapeCheck& shape, admission& a) {
        if (!origin_allowed(r)) {
            a.refusal = http_response::refusal(403, error::forbidden, "origin not allowed");
            return false;
        }
        if (std::optional<http_response> refused = shape(r)) {
            a.refusal = std::move(*refused);
            return false;
        }
        if (draining) {
            a.refusal = draining_answer({}, jitter());
            return false;
        }
        return true;
    }

    // Takes as long for every `given` of a secret: no byte of the secret leaks by timing.
    static bool equal_constant_time(std::string_view given, std::string_view secret) noexcept {
        unsigned char diff = given.size() == secret.size() ? 0 : 1;
        for (std::size_t i = 0; i < secret.size(); ++i)
            diff |= static_cast<unsigned char>(secret[i] ^ (i < given.size() ? given[i] : 0));
        return diff == 0;
    }

    std::mutex mu_;
    std::mt19937_64 rng_{std::random_device{}()};
};

} // namespace herald::net
