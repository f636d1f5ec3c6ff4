// herald — the hub: channels, their history, and the sessions that follow them.
// Bodies too long for the class: impl/hub.hpp and impl/stream_join.hpp; internals: detail/.
#pragma once

#include <herald/authorizer.hpp>
#include <herald/backplane.hpp>
#include <herald/channel.hpp>
#include <herald/error.hpp>
#include <herald/frame.hpp>
#include <herald/options.hpp>
#include <herald/protocol.hpp>
#include <herald/session.hpp>
#include <herald/detail/atomic_shared_ptr.hpp>
#include <herald/detail/channel_table.hpp>
#include <herald/detail/erased.hpp>
#include <herald/detail/presence_table.hpp>
#include <herald/detail/principal_quota.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace herald {

/// Counters, for metrics and tests. Each is a snapshot of a monotonic count unless noted.
struct hub_stats {
    std::uint64_t published = 0;       ///< messages ordered and delivered to this hub
    std::uint64_t deliveries = 0;      ///< frames queued to subscribers (replays included)
    std::uint64_t slow_consumers = 0;  ///< sessions closed for a full queue
    std::uint64_t publish_errors = 0;  ///< publishes refused (bad input, backplane down)
    std::uint64_t refetches = 0;       ///< remote backplane: channels re-fetched after a gap, an epoch change or a reconnect
    std::uint64_t sessions = 0;        ///< open now
    std::uint64_t channels = 0;        ///< held now (with subscribers or history)
    std::uint64_t subscriptions = 0;   ///< sessions following a channel now, summed over channels
    std::uint64_t history_bytes = 0;   ///< kept now in the channels' histories (hub_options::max_history_bytes bounds it)
    std::uint64_t presence_channels = 0; ///< channels with presence members or listeners on this server now
    std::uint64_t presence_members = 0;  ///< principals listed in them from this server now, summed over channels
};

/// The routing engine: it knows channels and sessions, not sockets. CMS code publishes to it
/// (through a server, or directly when the in-memory transport is enough); transports open a
/// session per client through a herald::peer (peer.hpp), which applies the client's requests.
///
/// Every message gets its channel's next offset and the channel's epoch; each subscriber's
/// queue receives a channel's messages in offset order, once. A subscribe with `since`
/// replays what the history still holds, atomically with going live (no gap, no duplicate),
/// or answers `recovered: false`.
///
/// Thread safety: every member function may be called from any thread, concurrently.
class hub final : private backplane_sink {
public:
    /// A hub on the local backplane. Until set_authorizer() it refuses every subscribe and
    /// publish of a client (deny_all); hub::publish, from the CMS, is never checked.
    explicit hub(hub_options opts = {}) : hub(std::move(opts), backplane::local{}) {}

    /// A hub on the given backplane. @tparam Backplane meets the Backplane requirements.
    template <class Backplane>
    hub(hub_options opts, Backplane bp)
        : opts_(std::move(opts)), orders_here_(Backplane::orders_locally), channels_(opts_.history, opts_.max_history_bytes, orders_here_),
          per_principal_(opts_.max_subscriptions_per_principal), presence_(opts_.presence.max_members) {
        static_assert(is_backplane_v<Backplane>, "herald: Backplane type requirements not met (see backplane.hpp)");
        backplane_ = std::make_unique<detail::backplane_model<Backplane>>(std::move(bp));
        backplane_->attach(*this);
        authorizer_.store(std::make_shared<detail::authorizer_model<deny_all>>(deny_all{}));
    }

    /// Detaches the backplane: its pending handlers get error::shutting_down.
    ~hub() { backplane_->detach(); }

    hub(const hub&) = delete;
    hub& operator=(const hub&) = delete;

    /// Replaces the authorizer. @tparam Authorizer meets the Authorizer requirements.
    /// Sessions keep the principal they were opened with; new checks use the new rules.
    /// Installing insecure_allow_all logs a warning.
    template <class Authorizer>
    void set_authorizer(Authorizer a) {
        static_assert(is_authorizer_v<Authorizer>, "herald: Authorizer type requirements not met (see authorizer.hpp)");
        if constexpr (std::is_same_v<Authorizer, insecure_allow_all>)
            log(log_level::warning, "insecure_allow_all: any client may subscribe and publish to any channel");
        authorizer_.store(std::make_shared<detail::authorizer_model<Authorizer>>(std::move(a)));
        authorizer_set_.store(true, std::memory_order_relaxed);
    }

    /// Logs "no authorizer: every subscribe and publish is refused; see README", once, while
    /// no authorizer was set. Servers call it at start; the hub itself at its first check.
    void report_authorizer() const {
        if (!authorizer_set_.load(std::memory_order_relaxed) && !no_authorizer_logged_.exchange(true))
            log(log_level::warning, "no authorizer: every subscribe and publish is refused; see README");
    }

    /// The options the hub was made with (they do not change).
    const hub_options& options() const noexcept { return opts_; }
    /// The backplane's `name` ("local", "redis"), for logs and metrics.
    std::string_view backplane_name() const noexcept { return backplane_->name(); }
    /// What the backplane says of itself now (see backplane_status): for health checks,
    /// diagnose and metrics. Safe from any thread.
    herald::backplane_status backplane_status() const { return backplane_->status(); }

    // ---- publishing -------------------------------------------------------------------

    /// Publishes `data` (one JSON value, embedded in frames as is) to `channel`.
    /// @returns the message's position; on failure `ec` is invalid_channel, invalid_payload,
    /// payload_too_large or backplane_unavailable, and nothing was delivered, or timed_out: the
    /// backplane did not confirm in time (publish_timeout, or a remote backplane that lost its
    /// connection with the publish under way), and the message may be delivered all the same.
    position publish(std::string_view channel, std::string_view data, std::error_code& ec);

    /// Throwing form: herald::system_error on failure.
    position publish(std::string_view channel, std::string_view data);

    /// Publishes without waiting: `done(ec, position)` runs once the backplane ordered the
    /// message (at once with the local backplane, on the calling thread; on the backplane's
    /// thread with a remote one) or refused it; always once. Errors as for publish().
    void async_publish(std::string channel, std::string data, publish_handler done);

    /// The channel's current position (its epoch and last offset); a channel never published
    /// to has a fresh epoch and offset 0. Asks the backplane, which knows the stream even when
    /// this server never saw the channel (Redis): read it before loading the state a page
    /// shows, and subscribe `since` it. Blocks up to hub_options::publish_timeout; with an
    /// asynchronous backplane, not from a handler of the backplane's own loop. On failure
    /// `ec` is set (e.g. invalid_channel, backplane_unavailable, timed_out).
    position head(std::string_view channel, std::error_code& ec);

    /// Throwing form of head(): herald::system_error on failure.
    position head(std::string_view channel);

    /// Reads what the backplane holds of `channel` without waiting: `done(ec, result)` gets
    /// its head and, with `since`, the messages after it that the history still holds
    /// (fetch_result: `recovered` is false when it holds not all of them). Runs once, at once
    /// (local backplane) or on the backplane's thread. For a component that must look at a
    /// channel's recent messages (herald::outbox skips what a channel already has); clients
    /// resume through subscribe(). `ec`: invalid_channel, backplane_unavailable, timed_out.
    void async_fetch(std::string channel, std::optional<position> since, fetch_handler done);

    // ---- authorization ----------------------------------------------------------------

    /// Who the client that sent `r` is, by the current authorizer; transports ask when a
    /// client connects. @returns nothing when the client is refused (transports answer 401).
    std::optional<principal> authenticate(const request_info& r) const {
        report_authorizer();
        return authorizer()->authenticate(r);
    }

    /// Whether `p` may do `a` on `channel`, by the current authorizer. subscribe() asks it
    /// itself; a publish for a client asks first (herald::peer and publish_for do).
    bool may(const principal& p, action a, std::string_view channel) const {
        report_authorizer();
        if (a == action::presence) return authorizer()->may_presence(p, channel);
        return authorizer()->may(p, a, channel);
    }

    // ---- presence (herald.v2) ---------------------------------------------------------

    /// Who is in `channel` now: every principal with a session subscribed to it whose
    /// transport takes part in presence (session::presence_role) and whom the authorizer
    /// allows presence there (may_presence), on this server or, with a backplane that shares
    /// presence (Redis), on any server; one member per principal however many sessions it
    /// has, sorted by user. Anonymous sessions are never listed. Blocks up to
    /// hub_options::publish_timeout with a remote backplane (not from its own loop's
    /// handlers). On failure `ec` is invalid_channel, backplane_unavailable or timed_out.
    std::vector<presence_member> presence(std::string_view channel, std::error_code& ec);

    /// Throwing form of presence(): herald::system_error on failure.
    std::vector<presence_member> presence(std::string_view channel);

    /// presence() without waiting: `done(ec, members)` runs once, at once (local backplane)
    /// or on the backplane's thread.
    void async_presence(std::string channel, presence_handler done);

    // ---- sessions ---------------------------------------------------------------------

    /// Opens a session for `who`. `wake` is called when the session's queue becomes non-empty
    /// and when it closes, possibly under a channel's lock: it must not block nor call into
    /// the hub (see session::wake_function).
    session_ptr open_session(principal who, session::wake_function wake);

    /// Closes a session and drops it from its channels. Idempotent.
    void close_session(const session_ptr& s, std::error_code reason = {});

    /// Subscribes `s` to `channel`. Queues `subscribed` (position = channel head) and, when
    /// `since` is given and the history still holds everything after it, the missed messages,
    /// then live ones. `recovered` is false when `since` is in another epoch or older than
    /// the history, or when the replay does not fit the session's queue caps (the answer and
    /// the replay count in them; a session whose queue cannot take even the answer is closed
    /// with slow_consumer). Subscribing again to a followed channel re-runs the resume from `since`.
    ///
    /// The answer comes from the backplane's fetch: at once with the local backplane (the
    /// frames are queued when subscribe returns), a round trip later with a remote one. Until
    /// then the session waits in a recovering state that holds the live messages, so that the
    /// replay and the live stream meet with no gap and no duplicate. A fetch that fails queues
    /// an `error` frame (backplane_unavailable) instead, and the session does not follow the channel.
    /// @returns forbidden, invalid_channel, too_many_subscriptions or session_closed, and
    /// then queues nothing.
    std::error_code subscribe(const session_ptr& s, std::string_view channel, std::optional<position> since = {},
                              std::uint64_t request_id = 0);

    /// Unsubscribes and queues `unsubscribed`. @returns not_subscribed or invalid_channel.
    std::error_code unsubscribe(const session_ptr& s, std::string_view channel, std::uint64_t request_id = 0);

    // ---- maintenance ------------------------------------------------------------------

    /// Expires old history and forgets channels with neither history nor subscribers. The
    /// next publish on one that held messages starts a new epoch; one that never did comes
    /// back in the same epoch (nothing was lost: a resume from its head {epoch, 0} recovers).
    /// Tells the `leave` of presence members whose linger is over (presence_options::linger).
    /// Servers call it about once a second.
    void sweep();

    /// The hub's counters now (hub_stats). Walks every channel, taking each one's lock
    /// briefly: for metrics and tests, not for every request.
    hub_stats stats() const;

private:
    struct repair {
        position since;
        std::uint64_t token;
    };

    std::shared_ptr<const detail::authorizer_concept> authorizer() const { return authorizer_.load(); }
    void publish_checked(std::string channel, std::string data, publish_handler done);
    std::error_code check_publish(std::string_view channel, std::string_view data) const;
    void fan_out(detail::channel_state& ch, const frame_ptr& f);
    void count_slow(session& s);
    void log(log_level level, const std::string& text) const;
    void presence_join(const session_ptr& s, const std::string& channel);
    void presence_leave(const session* s, const std::string& channel);
    void presence_gone(const std::string& channel, const std::string& user);

    // The subscribe/resume/repair state machine: impl/stream_join.hpp, which explains it.
    static void drop_subscriber(detail::channel_state& ch, const session* s);
    static void settle(detail::channel_state& ch);
    static bool followed(detail::channel_state& ch);
    void remove_subscriber(const std::string& channel, const session* s);
    void finish_subscribe(const std::string& name, std::uint64_t token, std::error_code ec, fetch_result r);
    std::optional<repair> join(detail::channel_state& ch, const std::string& name,
                               const detail::pending_subscriber& p, fetch_result& r);
    repair start_repair(detail::channel_state& ch);
    void refetch(const std::string& name, repair r);
    std::optional<repair> accept_live(detail::channel_state& ch, const frame_ptr& f);
    void finish_repair(const std::string& name, std::uint64_t token, std::error_code ec, fetch_result r);

    // backplane_sink (documented there)
    position order_and_deliver(std::string_view channel, std::string_view data, std::error_code& ec) override;
    fetch_result read_history(std::string_view channel, const std::optional<position>& since) override;
    bool deliver(std::string_view channel, const position& pos, std::string_view data) override;
    bool resync(std::string_view channel) override;
    bool following(std::string_view channel) override;
    void presence_changed(std::string_view channel, const presence_event& e) override;
    presence_options presence_limits() const override { return opts_.presence; }
    history_options history_limits() const override { return opts_.history; }
    log_function logger() const override { return opts_.log; }

    hub_options opts_;
    const bool orders_here_;  // Backplane::orders_locally
    std::unique_ptr<detail::backplane_concept> backplane_;
    detail::atomic_shared_ptr<const detail::authorizer_concept> authorizer_;
    detail::channel_table channels_;
    detail::principal_quota per_principal_;
    detail::presence_table presence_;

    std::atomic<std::uint64_t> slow_consumers_{0}, publish_errors_{0}, sessions_{0},
        refetches_{0};
    std::atomic<std::uint64_t> next_token_{0};  // names one fetch: subscribe or repair
    std::atomic<bool> authorizer_set_{false};
    mutable std::atomic<bool> no_authorizer_logged_{false};
    std::atomic<bool> presence_info_logged_{false}, presence_cap_logged_{false};
};

} // namespace herald

#include <herald/impl/hub.hpp>
#include <herald/impl/stream_join.hpp>
