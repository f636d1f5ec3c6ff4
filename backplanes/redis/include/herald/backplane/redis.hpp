// herald — the Redis backplane: several servers behind a load balancer, one order per
// channel, history in Redis. README: backplanes/redis/README.md.
#pragma once

#include <herald/backplane.hpp>
#include <herald/frame.hpp>
#include <herald/backplane/redis_options.hpp>
#include <herald/backplane/detail/redis_engine.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

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
/// Thread safety: every member may be called from any thread. Requires Redis 6.2 or newer
/// (XTRIM MINID), a single Redis server (not Redis Cluster).
class redis {
public:
    static constexpr std::string_view name = "redis";
    static constexpr bool orders_locally = false;
    using options = redis_options;

    explicit redis(asio::io_context& io, options opts = {})
        : engine_(std::make_shared<detail::redis_engine>(io, std::move(opts))) {}

    /// Where the link to Redis stands now.
    redis_state state() const noexcept { return engine_->current(); }
    /// Counters for metrics (see redis_stats).
    redis_stats stats() const { return engine_->stats(); }
    /// The same, as every backplane says it (hub::backplane_status: health, diagnose, metrics).
    backplane_status status() const {
        static constexpr const char* names[] = {"stopped", "connecting", "up", "reconnecting"};
        const redis_stats s = stats();
        backplane_status b;
        b.up = s.state == redis_state::connected;
        b.started = s.connects > 0;
        b.state = names[static_cast<int>(s.state)];
        b.reconnects = s.connects > 0 ? s.connects - 1 : 0;
        b.errors = s.publish_errors + s.fetch_errors;
        b.timeouts = s.timeouts;
        b.last_error = s.last_error;
        return b;
    }
    /// Waits until connected to Redis, at most `timeout`. @returns whether it is.
    bool wait_connected(std::chrono::milliseconds timeout) const { return engine_->wait_connected(timeout); }

    // ---- the Backplane requirements (backplane.hpp), called by the hub ----------------------

    /// Starts connecting. Called once, by the hub; a second hub attaching the same engine (a
    /// copy of this backplane) gets std::logic_error.
    void attach(backplane_sink& sink) { engine_->attach(sink); }
    /// Fails what is pending with error::shutting_down and closes the connections (waits
    /// for the io_context, at most 2 s, unless it is stopped). Must not be called from a
    /// handler of this backplane.
    void detach() { engine_->detach(); }
    void publish(std::string channel, std::string data, publish_handler done) {
        engine_->publish(std::move(channel), std::move(data), std::move(done));
    }
    void fetch(std::string channel, std::optional<position> since, fetch_handler done) {
        engine_->fetch(std::move(channel), std::move(since), std::move(done));
    }

private:
    std::shared_ptr<detail::redis_engine> engine_;
};

static_assert(is_backplane_v<redis>, "herald: redis must meet the Backplane requirements");

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
