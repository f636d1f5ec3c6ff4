// herald — options and state of the Redis backplane (herald/backplane/redis.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace herald::backplane {

/// How the Redis backplane reaches Redis and how it names its keys.
struct redis_options {
    std::string host = "127.0.0.1";  ///< an address, or a name (resolved by hiredis, blocking)
    std::uint16_t port = 6379;
    std::string username;            ///< Redis 6 ACL user; empty: `AUTH password` alone
    std::string password;            ///< AUTH when not empty
    int db = 0;                      ///< SELECT when not 0. Pub/sub ignores it: use key_prefix to separate deployments
    /// Prefix of every key and pub/sub channel: `<prefix>{<channel>}:meta`, `<prefix>{<channel>}:log`,
    /// pub/sub `<prefix><channel>`.
    std::string key_prefix = "herald:";
    /// How long the first connection may take before publishes queued meanwhile fail.
    std::chrono::milliseconds connect_timeout = std::chrono::seconds(2);
    /// A command unanswered this long means Redis is gone: the link is dropped and rebuilt.
    std::chrono::milliseconds command_timeout = std::chrono::seconds(3);
    /// A PING this often when idle, so that a hung Redis is noticed without traffic.
    std::chrono::milliseconds ping_interval = std::chrono::seconds(1);
    /// Reconnect backoff: doubles from min to max, with jitter.
    std::chrono::milliseconds reconnect_min = std::chrono::milliseconds(100);
    std::chrono::milliseconds reconnect_max = std::chrono::seconds(5);
    /// A channel's keys expire after this long without a publish (never less than the history's
    /// max_age). The next publish or subscribe starts a new epoch.
    std::chrono::milliseconds key_ttl = std::chrono::hours(24);
    /// How often channels that no session of this server follows any more are unsubscribed in
    /// Redis (a channel with traffic is unsubscribed at its next message already).
    std::chrono::milliseconds prune_interval = std::chrono::seconds(5);

    /// Options for Redis at `host:port` (or `host`, port 6379), the rest as default.
    static redis_options at(std::string_view address) {
        redis_options o;
        const std::size_t colon = address.rfind(':');
        o.host = std::string(address.substr(0, colon));
        if (colon != std::string_view::npos) o.port = static_cast<std::uint16_t>(std::stoi(std::string(address.substr(colon + 1))));
        return o;
    }
};

/// Where the backplane's link to Redis stands.
enum class redis_state {
    stopped,       ///< not attached to a hub, or detached
    connecting,    ///< first connection under way: publishes and subscribes wait for it
    connected,     ///< both connections up, scripts loaded
    reconnecting,  ///< Redis unreachable: publishes and subscribes fail at once; retrying with backoff
};

/// Counters for metrics: monotonic unless noted.
struct redis_stats {
    redis_state state = redis_state::stopped;  ///< now
    std::uint64_t connects = 0;        ///< links established (the first included)
    std::uint64_t disconnects = 0;     ///< established links lost
    std::uint64_t timeouts = 0;        ///< links dropped because Redis stopped answering
    std::uint64_t published = 0;       ///< publishes Redis ordered
    std::uint64_t publish_errors = 0;  ///< publishes answered with an error
    std::uint64_t fetches = 0;         ///< fetches answered
    std::uint64_t fetch_errors = 0;    ///< fetches answered with an error
    std::uint64_t received = 0;        ///< messages received from Redis pub/sub
    std::size_t followed = 0;          ///< channels subscribed in Redis (now)
    std::size_t pending = 0;           ///< requests awaiting their answer (now)
    std::string last_error;            ///< the last connection error, for diagnosis
};

} // namespace herald::backplane
