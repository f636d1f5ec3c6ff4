// herald — the Redis backplane: several servers behind a load balancer, one order per
// channel, history in Redis. README: backplanes/redis/README.md.
#pragma once

#include <herald/backplane.hpp>
#include <herald/frame.hpp>
#include <herald/backplane/redis_options.hpp>
#include <herald/backplane/detail/redis_engine.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace herald::backplane {

/// A Backplane on Redis (hiredis, driven by the Asio io_context you give it). Every server
/// that publishes or subscribes through the same Redis (and key prefix) shares its channels:
///
/// - a publish runs one Lua script that takes the channel's next offset (INCR of
///   `<prefix>{<channel>}:meta`), appends the message to the channel's stream
///   (`<prefix>{<channel>}:log`, trimmed by the hub's history_options count and age) and
///   PUBLISHes it, atomically: one order per channel, whichever server publishes;
/// - each server SUBSCRIBEs to the channels its sessions follow, and only those;
/// - a subscribe (resume included) reads the head and the missed messages from Redis, so
///   that any server can resume any client;
/// - a channel's epoch is created with its keys; it changes only when Redis lost them
///   (restart without persistence, eviction, expiry after key_ttl without a publish).
///
/// When Redis is unreachable, publishes and subscribes fail at once with
/// error::backplane_unavailable. Of those under way when it went, a publish still queued here
/// gets backplane_unavailable (nothing was delivered); one already sent gets timed_out (its
/// outcome is unknown: it may have been ordered and delivered). Sessions
/// stay open; the backplane reconnects with backoff, re-subscribes, and the hub re-fetches
/// what its subscribers missed (or tells them `recovered: false` if Redis lost it).
///
/// @code
/// asio::io_context io;
/// auto work = asio::make_work_guard(io);
/// std::thread loop([&] { io.run(); });
/// herald::backplane::redis::options o;
/// o.host = "10.0.0.5";
/// herald::backplane::redis redis(io, o);
/// herald::hub hub(herald::hub_options{}, redis);  // the hub holds a copy: one shared engine
/// redis.wait_connected(std::chrono::seconds(5));  // optional: publishes fail until connected
/// @endcode
///
/// Copies share one connection pair: keep one to read state() and stats() for metrics.
/// `io` must outlive every copy, and must be running while a hub uses the backplane. A
/// hub's blocking publish() waits for a reply that this io_context delivers: from a handler
/// running on `io`, use async_publish.
///
/// **Sentinel**: with `options::sentinels` and `options::master_name` (or
/// `options::by_sentinel("10.0.0.7:26379,10.0.0.8:26379", "herald")`), the primary is asked of
/// the sentinels and followed through failovers (README, "Sentinel").
///
/// **Shards**: constructed with several options, one per Redis (each a server, or a primary
/// watched by sentinels), the channels are spread over them by a stable hash of the name
/// (shard_of): a channel's order and history live on one shard, each shard has its own
/// connection pair, and a shard that is down affects only its channels. Every server must list
/// the same shards in the same order.
///
/// Thread safety: every member may be called from any thread. Requires Redis 6.2 or newer
/// (XTRIM MINID); a server, a primary with replicas, or several of those as shards (not Redis
/// Cluster).
class redis {
public:
    static constexpr std::string_view name = "redis";
    static constexpr bool orders_locally = false;
    using options = redis_options;

    explicit redis(asio::io_context& io, options opts = {}) : redis(io, std::vector<options>{std::move(opts)}) {}

    /// Channels sharded over `shards` (at least one; std::invalid_argument otherwise).
    redis(asio::io_context& io, std::vector<options> shards) {
        if (shards.empty()) throw std::invalid_argument("herald: the Redis backplane needs at least one Redis");
        for (options& o : shards) engines_.push_back(std::make_shared<detail::redis_engine>(io, std::move(o)));
    }

    /// Where the links to Redis stand now: `connected` when every shard is, else the worst of
    /// them (reconnecting, then connecting, then stopped).
    redis_state state() const noexcept {
        bool all_connected = true, any_connecting = false, any_stopped = false;
        for (const auto& e : engines_) {
            const redis_state s = e->current();
            if (s == redis_state::reconnecting) return s;
            all_connected = all_connected && s == redis_state::connected;
            any_connecting = any_connecting || s == redis_state::connecting;
            any_stopped = any_stopped || s == redis_state::stopped;
        }
        if (all_connected) return redis_state::connected;
        return any_connecting ? redis_state::connecting : redis_state::stopped;
    }
    /// Counters for metrics (see redis_stats): with shards, their sums; `state` as state(),
    /// `last_error` and `primary` those of the shards, separated by ", ". shard_stats() has each.
    redis_stats stats() const {
        redis_stats sum;
        for (const redis_stats& s : shard_stats()) {
            for (auto count : {&redis_stats::connects, &redis_stats::disconnects, &redis_stats::timeouts, &redis_stats::published,
                               &redis_stats::publish_errors, &redis_stats::fetches, &redis_stats::fetch_errors,
                               &redis_stats::received, &redis_stats::failovers, &redis_stats::server_errors})
                sum.*count += s.*count;
            for (auto now : {&redis_stats::followed, &redis_stats::pending}) sum.*now += s.*now;
            for (auto [to, from] : {std::pair{&sum.last_error, &s.last_error}, std::pair{&sum.primary, &s.primary}})
                if (!from->empty()) *to += (to->empty() ? "" : ", ") + *from;
        }
        sum.state = state();
        return sum;
    }
    /// The same, as every backplane says it (hub::backplane_status: health, diagnose,
    /// metrics). `started` once every shard has connected at least once; `errors` counts
    /// publishes and fetches answered with an error and Redis errors (OOM, READONLY).
    backplane_status status() const {
        static constexpr const char* names[] = {"stopped", "connecting", "up", "reconnecting"};
        const std::vector<redis_stats> each = shard_stats();
        const redis_stats s = stats();
        backplane_status b;
        b.up = s.state == redis_state::connected;
        b.started = std::all_of(each.begin(), each.end(), [](const redis_stats& x) { return x.connects > 0; });
        b.state = names[static_cast<int>(s.state)];
        for (const redis_stats& x : each) b.reconnects += x.connects > 0 ? x.connects - 1 : 0;
        b.errors = s.publish_errors + s.fetch_errors + s.server_errors;
        b.timeouts = s.timeouts;
        b.last_error = s.last_error;
        return b;
    }
    /// Each shard's counters, in the order of the options given.
    std::vector<redis_stats> shard_stats() const {
        std::vector<redis_stats> out;
        for (const auto& e : engines_) out.push_back(e->stats());
        return out;
    }
    /// How many Redis the channels are spread over.
    std::size_t shards() const noexcept { return engines_.size(); }
    /// The shard (index into the options) that holds `channel`: a jump consistent hash
    /// (Lamping and Veach) of the name's 64-bit FNV-1a hash. Stable across processes, builds
    /// and versions; growing from N to N+1 shards moves about 1/(N+1) of the channels.
    std::size_t shard_of(std::string_view channel) const noexcept { return shard_of(channel, engines_.size()); }
    static std::size_t shard_of(std::string_view channel, std::size_t shards) noexcept {
        std::uint64_t key = 14695981039346656037ull;
        for (unsigned char c : channel) key = (key ^ c) * 1099511628211ull;
        std::int64_t b = 0, j = 0;
        while (j < static_cast<std::int64_t>(shards)) {  // j only grows: at most `shards` turns
            b = j;
            key = key * 2862933555777941757ull + 1;
            j = static_cast<std::int64_t>(static_cast<double>(b + 1) *
                                          (static_cast<double>(1ll << 31) / static_cast<double>((key >> 33) + 1)));
        }
        return static_cast<std::size_t>(b);
    }
    /// Waits until connected to every shard, at most `timeout` in all. @returns whether it is.
    bool wait_connected(std::chrono::milliseconds timeout) const {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (const auto& e : engines_) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (!e->wait_connected(std::max(left, std::chrono::milliseconds(0)))) return false;
        }
        return true;
    }

    // ---- the Backplane requirements (backplane.hpp), called by the hub ----------------------

    /// Starts connecting. Called once, by the hub; a second hub attaching the same engine (a
    /// copy of this backplane) gets std::logic_error.
    void attach(backplane_sink& sink) {
        for (auto& e : engines_) e->attach(sink);
    }
    /// Fails what is pending with error::shutting_down and closes the connections (waits
    /// for the io_context, at most 2 s, unless it is stopped). Must not be called from a
    /// handler of this backplane.
    void detach() {
        for (auto& e : engines_) e->detach();
    }
    void publish(std::string channel, std::string data, publish_handler done) {
        engines_[shard_of(channel)]->publish(std::move(channel), std::move(data), std::move(done));
    }
    void fetch(std::string channel, std::optional<position> since, fetch_handler done) {
        engines_[shard_of(channel)]->fetch(std::move(channel), std::move(since), std::move(done));
    }
    /// Presence, shared by every server on this Redis (backplanes/redis/README.md, "Presence").
    void presence_join(std::string channel, std::string user, std::string info) {
        engines_[shard_of(channel)]->presence_join(std::move(channel), std::move(user), std::move(info));
    }
    void presence_leave(std::string channel, std::string user) {
        engines_[shard_of(channel)]->presence_leave(std::move(channel), std::move(user));
    }
    void presence(std::string channel, presence_handler done) {
        engines_[shard_of(channel)]->presence(std::move(channel), std::move(done));
    }

private:
    std::vector<std::shared_ptr<detail::redis_engine>> engines_;  // one per shard, never empty
};

static_assert(is_backplane_v<redis>, "herald: redis must meet the Backplane requirements");
static_assert(has_presence_v<redis>, "herald: redis shares presence");

/// The Redis backplane on an io_context and a thread of its own. For a server that runs its
/// own I/O threads: a blocking publish() made from one of the server's handlers then waits on
/// this loop, never on its own.
///
/// @code
/// herald::backplane::redis_thread redis(herald::backplane::redis::options::at("10.0.0.5:6379"));  // before the server
/// herald::server server(opts, redis.backplane());
/// @endcode
class redis_thread {
public:
    explicit redis_thread(redis::options opts) : backplane_(io_, std::move(opts)), thread_([this] { io_.run(); }) {}
    /// Sharded over several Redis (see redis).
    explicit redis_thread(std::vector<redis::options> shards)
        : backplane_(io_, std::move(shards)), thread_([this] { io_.run(); }) {}
    ~redis_thread() {
        work_.reset();
        io_.stop();
        thread_.join();
    }
    redis_thread(const redis_thread&) = delete;
    redis_thread& operator=(const redis_thread&) = delete;

    /// A copy shares the connection pair: give it to a hub or server, keep this for stats().
    redis& backplane() noexcept { return backplane_; }

private:
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
    redis backplane_;
    std::thread thread_;
};

} // namespace herald::backplane
