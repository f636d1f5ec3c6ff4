// herald — what a network transport shares with the server it runs in.
#pragma once

#include <herald/hub.hpp>
#include <herald/net/connection.hpp>
#include <herald/net/http.hpp>
#include <herald/net/metrics.hpp>
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
    /// The server's counters (/herald/metrics): transports add theirs.
    server_metrics metrics;

    /// Whether the request's Origin may use herald (see server_options::allowed_origins).
    /// Origins compare by scheme, host and port, after lower-casing the scheme and host and
    /// filling in the default port (http 80, https 443). The same-origin default also wants
    /// the scheme the request came by: https over herald's own TLS, else http, or https when
    /// server_options::trust_forwarded_proto is on and the proxy says `X-Forwarded-Proto:
    /// https`. `Origin: null` (sandboxed frames, file: pages, some redirects) is refused; a
    /// request without Origin (not a browser) passes.
    bool origin_allowed(const http_request& r) const {
        const std::string_view origin = r.header("origin");
        if (origin.empty()) return true;
        const auto o = parse_origin(origin);
        if (!o) return false;  // `null`, or not scheme://host[:port]
        if (opts.allowed_origins.empty()) {
            std::string scheme = r.secure ? "https" : "http";
            if (opts.trust_forwarded_proto && lower(trim(r.header("x-forwarded-proto"))) == "https") scheme = "https";
            const auto host = parse_authority(scheme, r.header("host"));
            return host && *host == *o;
        }
        for (const std::string& allowed : opts.allowed_origins) {
            if (allowed == "*") return true;
            std::string_view entry = allowed;
            if (entry.size() > 1 && entry.back() == '/') entry.remove_suffix(1);  // "https://site/" in a config
            const auto a = parse_origin(entry);
            if (a && *a == *o) return true;
        }
        return false;
    }

    /// The admission gate of every protocol request, in one order:
    ///  1. the Origin (403 `forbidden`, see origin_allowed());
    ///  2. the transport's own check of the request's shape, `shape(r)` returning the refusal
    ///     or nothing (long-poll: 405 for a method other than POST; WebSocket: 426 without
    ///     `Upgrade: websocket`);
    ///  3. draining (503 with a `reconnect` frame after jitter(), and Retry-After);
    ///  4. the authorizer's authenticate hook (401 `unauthenticated`), last: it is the
    ///     application's, and may cost a session-store lookup; a principal whose
    ///     credentials expired already, or expire within a tick (principal::expires), gets
    ///     401 `credentials_expired`.
    /// Refusals are herald.v1 answers, `{"frames":[…]}` (http_response::refusal).
    template <class ShapeCheck = no_shape_check>
    admission admit(const http_request& r, ShapeCheck&& shape = {}) {
        admission a;
        if (screen(r, shape, a)) {
            a.who = hub.authenticate(r);
            if (!a.who) {
                a.refusal = http_response::refusal(401, error::unauthenticated);
            } else if (a.who->expires && *a.who->expires <= principal::clock::now() + tick_interval) {
                // Expired, or would be before the first check (peer::check_credentials):
                // nothing may be delivered on credentials past their expiry.
                a.who.reset();
                a.refusal = http_response::refusal(401, error::credentials_expired);
            }
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
        if (bearer_is(r, opts.publish_secret))
            a.as_server = true;
        else
            a.refusal = http_response::refusal(401, error::unauthenticated, "wrong publish secret");
        return a;
    }

    /// Whether `r` carries `Authorization: Bearer <secret>` (compared in constant time; an
    /// empty secret matches nothing).
    static bool bearer_is(const http_request& r, std::string_view secret) {
        constexpr std::string_view scheme = "Bearer ";
        const std::string_view auth = r.header("authorization");
        return !secret.empty() && auth.size() > scheme.size() && auth.substr(0, scheme.size()) == scheme &&
               equal_constant_time(auth.substr(scheme.size()), secret);
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

    // scheme://host:port, normalized: lower case, the port always written.
    static std::optional<std::string> parse_origin(std::string_view origin) {
        const std::size_t sep = origin.find("://");
        if (sep == std::string_view::npos) return std::nullopt;
        return parse_authority(lower(origin.substr(0, sep)), origin.substr(sep + 3));
    }
    // `authority` is host[:port] (an IPv6 host in brackets); nothing else (no path, no user).
    static std::optional<std::string> parse_authority(const std::string& scheme, std::string_view authority) {
        const char* default_port = scheme == "http" ? "80" : scheme == "https" ? "443" : nullptr;
        if (!default_port || authority.empty()) return std::nullopt;
        for (char ch : authority)
            if (ch == '/' || ch == '@' || ch == '?' || ch == '#' || ch == ' ' || ch == '\\') return std::nullopt;
        std::string_view host = authority, port;
        const std::size_t close = authority.rfind(']');
        const std::size_t colon = authority.rfind(':');
        if (colon != std::string_view::npos && (close == std::string_view::npos || colon > close)) {
            host = authority.substr(0, colon);
            port = authority.substr(colon + 1);
            if (port.empty() || port.size() > 5) return std::nullopt;
            for (char ch : port)
                if (ch < '0' || ch > '9') return std::nullopt;
            while (port.size() > 1 && port.front() == '0') port.remove_prefix(1);
        }
        if (host.empty()) return std::nullopt;
        return scheme + "://" + lower(host) + ":" + (port.empty() ? std::string(default_port) : std::string(port));
    }
    static std::string lower(std::string_view s) {
        std::string out(s);
        for (char& ch : out)
            if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
        return out;
    }
    static std::string_view trim(std::string_view s) {
        while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
        while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
        return s;
    }

    std::mutex mu_;
    std::mt19937_64 rng_{std::random_device{}()};
};

} // namespace herald::net
