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
    /// Origins compare by scheme, host and port, after lower-casing the scheme and host and
    /// filling in the default port (http 80, https 443). The same-origin default also wants
    /// the scheme the request came by: http, or https when server_options::trust_forwarded_proto
    /// is on and the proxy says `X-Forwarded-Proto: https`. `Origin: null` (sandboxed frames,
    /// file: pages, some redirects) is refused; a request without Origin (not a browser) passes.
    bool origin_allowed(const http_request& r) const {
        const std::string_view origin = r.header("origin");
        if (origin.empty()) return true;
        const auto o = parse_origin(origin);
        if (!o) return false;  // `null`, or not scheme://host[:port]
        if (opts.allowed_origins.empty()) {
            std::string scheme = "http";
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
    /// A random delay in [0, drain_spread]: when to come back after a drain.
    std::chrono::milliseconds jitter() {
        std::lock_guard<std::mutex> lock(mu_);
        std::uniform_int_distribution<long long> d(0, opts.drain_spread.count());
        return std::chrono::milliseconds(d(rng_));
    }

private:
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
