// herald — the hub: channels, their history, and the sessions that follow them.
#pragma once

#include <herald/authorizer.hpp>
#include <herald/backplane.hpp>
#include <herald/channel.hpp>
#include <herald/error.hpp>
#include <herald/frame.hpp>
#include <herald/history.hpp>
#include <herald/options.hpp>
#include <herald/protocol.hpp>
#include <herald/session.hpp>
#include <herald/detail/random.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace herald {

/// Counters, for metrics and tests. Each is a snapshot of a monotonic count unless noted.
struct hub_stats {
    std::uint64_t published = 0;       ///< messages ordered and delivered to this hub
    std::uint64_t deliveries = 0;      ///< frames queued to subscribers (replays included)
    std::uint64_t slow_consumers = 0;  ///< sessions closed for a full queue
    std::uint64_t publish_errors = 0;  ///< publishes refused (bad input, backplane down)
    std::uint64_t sessions = 0;        ///< open now
    std::uint64_t channels = 0;        ///< held now (with subscribers or history)
};

/// The routing engine: it knows channels and sessions, not sockets. CMS code publishes to it
/// (through a server, or directly when the in-memory transport is enough); transports open a
/// session per client and feed it the client's requests.
///
/// Every message gets its channel's next offset and the channel's epoch; each subscriber's
/// queue receives a channel's messages in offset order, once. A subscribe with `since`
/// replays what the history still holds, atomically with going live (no gap, no duplicate),
/// or answers `recovered: false`.
///
/// Thread safety: every member function may be called from any thread, concurrently.
class hub final : private backplane_sink {
public:
    /// A hub on the local backplane that lets everyone in (allow_all).
    explicit hub(hub_options opts = {}) : hub(std::move(opts), backplane::local{}) {}

    /// A hub on the given backplane. @tparam Backplane meets the Backplane requirements.
    template <class Backplane>
    hub(hub_options opts, Backplane bp) : opts_(std::move(opts)) {
        static_assert(is_backplane_v<Backplane>, "herald: Backplane type requirements not met (see backplane.hpp)");
        backplane_ = std::make_unique<backplane_model<Backplane>>(std::move(bp));
        backplane_->attach(*this);
        authorizer_ = std::make_shared<authorizer_model<allow_all>>(allow_all{});
    }

    ~hub() { backplane_->detach(); }

    hub(const hub&) = delete;
    hub& operator=(const hub&) = delete;

    /// Replaces the authorizer. @tparam Authorizer meets the Authorizer requirements.
    /// Sessions keep the principal they were opened with; new checks use the new rules.
    template <class Authorizer>
    void set_authorizer(Authorizer a) {
        static_assert(is_authorizer_v<Authorizer>, "herald: Authorizer type requirements not met (see authorizer.hpp)");
        std::atomic_store(&authorizer_, std::shared_ptr<const authorizer_concept>(
                                            std::make_shared<authorizer_model<Authorizer>>(std::move(a))));
    }

    const hub_options& options() const noexcept { return opts_; }
    std::string_view backplane_name() const noexcept { return backplane_->name(); }

    // ---- publishing -------------------------------------------------------------------

    /// Publishes `data` (one JSON value, embedded in frames as is) to `channel`.
    /// @returns the message's position; on failure `ec` is invalid_channel, invalid_payload,
    /// payload_too_large, backplane_unavailable or timed_out, and nothing was delivered.
    position publish(std::string_view channel, std::string_view data, std::error_code& ec) {
        ec.clear();
        struct waiter {
            std::mutex mu;
            std::condition_variable cv;
            bool done = false;
            std::error_code ec;
            position pos;
        };
        auto w = std::make_shared<waiter>();
        async_publish(std::string(channel), std::string(data), [w](std::error_code e, position p) {
            std::lock_guard<std::mutex> lock(w->mu);
            w->ec = e;
            w->pos = std::move(p);
            w->done = true;
            w->cv.notify_one();
        });
        std::unique_lock<std::mutex> lock(w->mu);
        if (!w->cv.wait_for(lock, opts_.publish_timeout, [&] { return w->done; })) {
            ec = error::timed_out;
            return {};
        }
        ec = w->ec;
        return std::move(w->pos);
    }

    /// Throwing form: herald::system_error on failure.
    position publish(std::string_view channel, std::string_view data) {
        std::error_code ec;
        position p = publish(channel, data, ec);
        detail::throw_if(ec, "herald::hub::publish");
        return p;
    }

    /// Publishes without waiting: `done(ec, position)` runs once the backplane ordered the
    /// message (at once with the local backplane, on the calling thread) or refused it.
    void async_publish(std::string channel, std::string data, publish_handler done) {
        if (std::error_code ec = check_publish(channel, data)) {
            publish_errors_.fetch_add(1, std::memory_order_relaxed);
            done(ec, {});
            return;
        }
        backplane_->publish(std::move(channel), std::move(data), [this, done = std::move(done)](std::error_code ec, position p) {
            if (ec) publish_errors_.fetch_add(1, std::memory_order_relaxed);
            done(ec, std::move(p));
        });
    }

    /// The channel's current position (its epoch and last offset); a channel never
    /// published to has a fresh epoch and offset 0.
    position head(std::string_view channel) {
        auto [ch, lock] = acquire(channel);
        return {ch->epoch, ch->head};
    }

    // ---- authorization ----------------------------------------------------------------

    std::optional<principal> authenticate(const request_info& r) const { return authorizer()->authenticate(r); }
    bool may(const principal& p, action a, std::string_view channel) const { return authorizer()->may(p, a, channel); }

    // ---- sessions ---------------------------------------------------------------------

    /// Opens a session for `who`. `wake` is called (never under a hub lock, never blocking)
    /// when the session's queue becomes non-empty and when it closes.
    session_ptr open_session(principal who, session::wake_function wake) {
        sessions_.fetch_add(1, std::memory_order_relaxed);
        return std::make_shared<session>(detail::make_session_id(), std::move(who), opts_.session, std::move(wake));
    }

    /// Closes a session and drops it from its channels. Idempotent.
    void close_session(const session_ptr& s, std::error_code reason = {}) {
        s->close(reason);
        for (const std::string& c : s->drop_channels()) remove_subscriber(c, s.get());
        if (!s->closed_counted_.exchange(true)) sessions_.fetch_sub(1, std::memory_order_relaxed);
    }

    /// Subscribes `s` to `channel`. Queues `subscribed` (position = channel head) and, when
    /// `since` is given and the history still holds everything after it, the missed messages,
    /// then live ones. `recovered` is false when `since` is in another epoch or older than
    /// the history. Subscribing again to a followed channel re-runs the resume from `since`.
    /// @returns forbidden, invalid_channel, too_many_subscriptions or session_closed, and
    /// then queues nothing.
    std::error_code subscribe(const session_ptr& s, std::string_view channel, std::optional<position> since = {},
                              std::uint64_t request_id = 0) {
        if (auto ec = validate_channel(channel)) return ec;
        if (!may(s->who(), action::subscribe, channel)) return error::forbidden;
        std::error_code ec;
        const std::string name(channel);
        s->add_channel(name, ec);
        if (ec) return ec;

        auto [ch, lock] = acquire(channel);
        std::vector<frame_ptr> replay;
        bool recovered = true;
        if (since) {
            recovered = since->epoch == ch->epoch && ch->log.since(since->offset, ch->head, replay);
            if (!recovered) replay.clear();
        }
        auto it = std::find_if(ch->subs.begin(), ch->subs.end(), [&](const subscriber& x) { return x.s.get() == s.get(); });
        if (it == ch->subs.end()) {
            ch->subs.push_back({s, ch->head});
        } else {
            it->delivered = ch->head;
        }
        s->push_forced(protocol::make_subscribed(name, {ch->epoch, ch->head}, recovered, request_id));
        for (auto& f : replay) s->push_forced(std::move(f));
        deliveries_.fetch_add(replay.size(), std::memory_order_relaxed);
        return {};
    }

    /// Unsubscribes and queues `unsubscribed`. @returns not_subscribed or invalid_channel.
    std::error_code unsubscribe(const session_ptr& s, std::string_view channel, std::uint64_t request_id = 0) {
        if (auto ec = validate_channel(channel)) return ec;
        const std::string name(channel);
        if (!s->remove_channel(name)) return error::not_subscribed;
        remove_subscriber(name, s.get());
        s->push(protocol::make_unsubscribed(name, request_id));
        return {};
    }

    /// Applies one herald.v1 client frame: subscribes, unsubscribes, publishes (when the
    /// authorizer allows), and queues the answer — or an `error` frame naming the request —
    /// into the session. @returns the error sent, if any.
    std::error_code handle(const session_ptr& s, std::string_view text) {
        std::error_code ec;
        protocol::request r = protocol::parse_request(text, ec);
        if (!ec) {
            switch (r.type) {
            case protocol::request::kind::pong: return {};
            case protocol::request::kind::subscribe: ec = subscribe(s, r.channel, std::move(r.since), r.id); break;
            case protocol::request::kind::unsubscribe: ec = unsubscribe(s, r.channel, r.id); break;
            case protocol::request::kind::publish:
                if (!may(s->who(), action::publish, r.channel)) { ec = error::forbidden; break; }
                async_publish(r.channel, std::move(r.data),
                              [s, channel = r.channel, id = r.id](std::error_code e, position p) {
                                  s->push(e ? protocol::make_error(e, channel, id)
                                            : protocol::make_published(channel, std::move(p), id));
                              });
                return {};
            }
        }
        if (ec) s->push(protocol::make_error(ec, r.channel, r.id));
        return ec;
    }

    // ---- maintenance ------------------------------------------------------------------

    /// Expires old history and forgets channels with neither history nor subscribers
    /// (their next publish starts a new epoch). Servers call it about once a second.
    void sweep() {
        const auto now = std::chrono::steady_clock::now();
        for (auto& sh : shards_) {
            std::unique_lock<std::shared_mutex> shard_lock(sh.mu);
            for (auto it = sh.map.begin(); it != sh.map.end();) {
                const std::shared_ptr<channel_state> keep = it->second;  // outlives the erase and the lock
                channel_state& ch = *keep;
                std::lock_guard<std::mutex> lock(ch.mu);
                ch.log.expire(now);
                ch.subs.erase(std::remove_if(ch.subs.begin(), ch.subs.end(),
                                             [](const subscriber& x) { return x.s->closed(); }),
                              ch.subs.end());
                if (ch.subs.empty() && ch.log.empty()) {
                    ch.dead = true;
                    it = sh.map.erase(it);
                } else {
                    ++it;
                }
            }
        }
    }

    hub_stats stats() const {
        hub_stats st;
        st.published = published_.load(std::memory_order_relaxed);
        st.deliveries = deliveries_.load(std::memory_order_relaxed);
        st.slow_consumers = slow_consumers_.load(std::memory_order_relaxed);
        st.publish_errors = publish_errors_.load(std::memory_order_relaxed);
        st.sessions = sessions_.load(std::memory_order_relaxed);
        for (auto& sh : shards_) {
            std::shared_lock<std::shared_mutex> lock(sh.mu);
            st.channels += sh.map.size();
        }
        return st;
    }

private:
    struct subscriber {
        session_ptr s;
        std::uint64_t delivered;  // last offset queued to it: nothing at or below goes again
    };

    struct channel_state {
        explicit channel_state(const history_options& h) : log(h) {}
        std::mutex mu;
        bool dead = false;  // swept: look the channel up again
        std::string epoch = detail::make_epoch();
        std::uint64_t head = 0;
        history log;
        std::vector<subscriber> subs;
    };

    struct shard {
        mutable std::shared_mutex mu;
        std::unordered_map<std::string, std::shared_ptr<channel_state>> map;
    };

    // Type erasure for the backplane and the authorizer: their requirements are checked at
    // compile time where they are installed; the hub itself stays one non-template class.
    struct backplane_concept {
        virtual ~backplane_concept() = default;
        virtual void attach(backplane_sink&) = 0;
        virtual void detach() = 0;
        virtual void publish(std::string, std::string, publish_handler) = 0;
        virtual std::string_view name() const noexcept = 0;
    };
    template <class B>
    struct backplane_model final : backplane_concept {
        explicit backplane_model(B b) : bp(std::move(b)) {}
        void attach(backplane_sink& s) override { bp.attach(s); }
        void detach() override { bp.detach(); }
        void publish(std::string c, std::string d, publish_handler h) override { bp.publish(std::move(c), std::move(d), std::move(h)); }
        std::string_view name() const noexcept override { return B::name; }
        B bp;
    };
    struct authorizer_concept {
        virtual ~authorizer_concept() = default;
        virtual std::optional<principal> authenticate(const request_info&) const = 0;
        virtual bool may(const principal&, action, std::string_view) const = 0;
    };
    template <class A>
    struct authorizer_model final : authorizer_concept {
        explicit authorizer_model(A x) : a(std::move(x)) {}
        std::optional<principal> authenticate(const request_info& r) const override { return a.authenticate(r); }
        bool may(const principal& p, action w, std::string_view c) const override { return a.may(p, w, c); }
        A a;
    };

    std::shared_ptr<const authorizer_concept> authorizer() const { return std::atomic_load(&authorizer_); }

    std::error_code check_publish(std::string_view channel, std::string_view data) const {
        if (auto ec = validate_channel(channel)) return ec;
        if (data.size() > opts_.max_payload_bytes) return error::payload_too_large;
        if (!nlohmann::json::accept(data)) return error::invalid_payload;
        return {};
    }

    shard& shard_for(std::string_view channel) {
        return shards_[std::hash<std::string_view>{}(channel) % shards_.size()];
    }

    /// The channel's state, created if need be, locked.
    std::pair<std::shared_ptr<channel_state>, std::unique_lock<std::mutex>> acquire(std::string_view channel) {
        shard& sh = shard_for(channel);
        for (;;) {
            std::shared_ptr<channel_state> ch;
            {
                std::shared_lock<std::shared_mutex> lock(sh.mu);
                auto it = sh.map.find(std::string(channel));
                if (it != sh.map.end()) ch = it->second;
            }
            if (!ch) {
                std::unique_lock<std::shared_mutex> lock(sh.mu);
                auto& slot = sh.map[std::string(channel)];
                if (!slot) slot = std::make_shared<channel_state>(opts_.history);
                ch = slot;
            }
            std::unique_lock<std::mutex> lock(ch->mu);
            if (!ch->dead) return {std::move(ch), std::move(lock)};
        }
    }

    /// Queues `f` to every subscriber that has not had its offset; drops closed sessions.
    /// Called with the channel locked, so each channel's frames go out in offset order.
    void fan_out(channel_state& ch, const frame_ptr& f) {
        std::size_t n = 0;
        bool dropped = false;
        for (subscriber& sub : ch.subs) {
            if (f->pos.offset <= sub.delivered) continue;
            sub.delivered = f->pos.offset;
            if (sub.s->push(f)) {
                ++n;
            } else {
                dropped = true;
                if (sub.s->close_reason() == error::slow_consumer && !sub.s->slow_counted_.exchange(true))
                    slow_consumers_.fetch_add(1, std::memory_order_relaxed);
            }
        }
        if (dropped)
            ch.subs.erase(std::remove_if(ch.subs.begin(), ch.subs.end(), [](const subscriber& x) { return x.s->closed(); }),
                          ch.subs.end());
        deliveries_.fetch_add(n, std::memory_order_relaxed);
    }

    // backplane_sink
    position order_and_deliver(std::string_view channel, std::string_view data, std::error_code& ec) override {
        ec.clear();
        auto [ch, lock] = acquire(channel);
        position pos{ch->epoch, ch->head + 1};
        frame_ptr f = protocol::make_message(std::string(channel), pos, data);
        ch->head = pos.offset;
        ch->log.append(f, f->created);
        fan_out(*ch, f);
        published_.fetch_add(1, std::memory_order_relaxed);
        return pos;
    }

    void deliver(std::string_view channel, const position& pos, std::string_view data) override {
        auto [ch, lock] = acquire(channel);
        if (pos.epoch != ch->epoch) {
            ch->epoch = pos.epoch;
            ch->log = history(opts_.history);
            for (subscriber& sub : ch->subs) sub.delivered = 0;
        } else if (pos.offset <= ch->head) {
            return;  // already have it
        }
        frame_ptr f = protocol::make_message(std::string(channel), pos, data);
        ch->head = pos.offset;
        ch->log.append(f, f->created);
        fan_out(*ch, f);
        published_.fetch_add(1, std::memory_order_relaxed);
    }

    void remove_subscriber(const std::string& channel, const session* s) {
        auto [ch, lock] = acquire(channel);
        ch->subs.erase(std::remove_if(ch->subs.begin(), ch->subs.end(), [s](const subscriber& x) { return x.s.get() == s; }),
                       ch->subs.end());
    }

    hub_options opts_;
    std::unique_ptr<backplane_concept> backplane_;
    std::shared_ptr<const authorizer_concept> authorizer_;
    std::array<shard, 64> shards_;

    std::atomic<std::uint64_t> published_{0}, deliveries_{0}, slow_consumers_{0}, publish_errors_{0}, sessions_{0};
};

} // namespace herald
