// herald — options and state of the Redis backplane (herald/backplane/redis.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace herald::backplane {

/// How the Redis backplane reaches Redis and how it names its keys.
struct redis_options {
    std::string host = "127.0.0.1";  ///< an address, or a name (resolved by hiredis, blocking)
    std::uint16_t port = 6379;
    /// Redis Sentinel: `host:port` of each sentinel. When not empty, `host` and `port` are
    /// ignored: the primary of `master_name` is asked of the sentinels (each in turn, until one
    /// names it), checked with ROLE (a server that is not a primary is never written to), and
    /// followed: a `+switch-master` from a sentinel drops the link, which is rebuilt on the new
    /// primary. See backplanes/redis/README.md, "Sentinel".
    std::vector<std::string> sentinels;
    std::string master_name;         ///< the name the sentinels monitor the primary by (`sentinel monitor NAME ...`)
    std::string sentinel_password;   ///< AUTH to the sentinels when not empty (`requirepass` in sentinel.conf)
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
    /// Throws std::invalid_argument when the port is not a number in 1..65535.
    static redis_options at(std::string_view address) {
        redis_options o;
        split_address(address, o.host, o.port);
        return o;
    }

    /// Options for the primary that the sentinels at `sentinel_addresses` (`host:port`, comma
    /// separated) know as `master`, the rest as default. Throws std::invalid_argument on an
    /// empty list, an address without a valid port, or an empty name.
    static redis_options by_sentinel(std::string_view sentinel_addresses, std::string_view master) {
        redis_options o;
        for (std::string_view one : split_list(sentinel_addresses)) {
            std::string host;
            std::uint16_t port = 0;
            split_address(one, host, port);
            if (one.find(':') == std::string_view::npos) throw std::invalid_argument("herald: a sentinel needs host:port");
            o.sentinels.push_back(host + ":" + std::to_string(port));
        }
        if (o.sentinels.empty()) throw std::invalid_argument("herald: no sentinel address");
        if (master.empty()) throw std::invalid_argument("herald: a sentinel setup needs the master's name");
        o.master_name = std::string(master);
        return o;
    }

    /// The shards that command-line flags name (the demo's and the test server's `--redis`,
    /// `--redis-sentinel`, `--redis-master`): `addresses` "host:port[,host:port...]", one shard
    /// each; or `sentinel_addresses` "host:port[,...]" with `masters` "NAME[,NAME...]", one
    /// shard per name, all watched by those sentinels. Empty when none is given. Throws
    /// std::invalid_argument on a bad address, both forms at once, or sentinels without a name.
    static std::vector<redis_options> from_flags(std::string_view addresses, std::string_view sentinel_addresses,
                                                 std::string_view masters) {
        std::vector<redis_options> shards;
        if (!addresses.empty() && !sentinel_addresses.empty())
            throw std::invalid_argument("herald: give Redis addresses or sentinels, not both");
        if (sentinel_addresses.empty() != masters.empty())
            throw std::invalid_argument("herald: sentinels and a master name go together");
        for (std::string_view one : split_list(addresses)) shards.push_back(at(one));
        for (std::string_view name : split_list(masters)) shards.push_back(by_sentinel(sentinel_addresses, name));
        return shards;
    }

    /// "a,b,c" into its non-empty parts.
    static std::vector<std::string_view> split_list(std::string_view list) {
        std::vector<std::string_view> out;
        while (!list.empty()) {
            const std::size_t comma = list.find(',');
            if (comma != 0) out.push_back(list.substr(0, comma));
            list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
        }
        return out;
    }

    /// `host:port` (port 1..65535) or `host` (port unchanged) into its parts; throws
    /// std::invalid_argument otherwise.
    static void split_address(std::string_view address, std::string& host, std::uint16_t& port) {
        const std::size_t colon = address.rfind(':');
        host = std::string(address.substr(0, colon));
        if (host.empty()) throw std::invalid_argument("herald: an address needs a host");
        if (colon == std::string_view::npos) return;
        const std::string_view digits = address.substr(colon + 1);
        unsigned long n = 0;
        for (char c : digits) {
            if (c < '0' || c > '9' || (n = n * 10 + static_cast<unsigned long>(c - '0')) > 65535)
                throw std::invalid_argument("herald: not a port: " + std::string(digits));
        }
        if (digits.empty() || n == 0) throw std::invalid_argument("herald: not a port: " + std::string(digits));
        port = static_cast<std::uint16_t>(n);
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
    std::uint64_t failovers = 0;       ///< links moved to another primary (a sentinel named a new one, or ROLE refused the old)
    std::uint64_t server_errors = 0;   ///< commands Redis answered with an error (OOM, READONLY, ...)
    std::string last_error;            ///< the last connection or command error, for diagnosis
    std::string primary;               ///< `host:port` of the Redis in use (or last tried); empty before the first attempt
};

} // namespace herald::backplane
