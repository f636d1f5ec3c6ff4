// herald — the hub: channels, their history, and the sessions that follow them.
#pragma once

#include <herald/authorizer.hpp>
#include <herald/backplane.hpp>
#include <herald/channel.hpp>
#include <herald/error.hpp>
#include <herald/frame.hpp>
#include <herald/detail/atomic_shared_ptr.hpp>
#include <herald/detail/history.hpp>
#include <herald/options.hpp>
#include <herald/protocol.hpp>
#include <herald/session.hpp>
#include <herald/detail/json_check.hpp>
#include <herald/detail/name_table.hpp>
#include <herald/detail/random.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

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
    hub(hub_options opts, Backplane bp) : opts_(std::move(opts)), orders_here_(Backplane::orders_locally) {
        static_assert(is_backplane_v<Backplane>, "herald: Backplane type requirements not met (see backplane.hpp)");
        backplane_ = std::make_unique<backplane_model<Backplane>>(std::move(bp));
        backplane_->attach(*this);
        authorizer_.store(std::make_shared<authorizer_model<allow_all>>(allow_all{}));
    }

    ~hub() { backplane_->detach(); }

    hub(const hub&) = delete;
    hub& operator=(const hub&) = delete;

    /// Replaces the authorizer. @tparam Authorizer meets the Authorizer requirements.
    /// Sessions keep the principal they were opened with; new checks use the new rules.
    template <class Authorizer>
    void set_authorizer(Authorizer a) {
        static_assert(is_authorizer_v<Authorizer>, "herald: Authorizer type requirements not met (see authorizer.hpp)");
        authorizer_.store(std::make_shared<authorizer_model<Authorizer>>(std::move(a)));
    }

    const hub_options& options() const noexcept { return opts_; }
    std::string_view backplane_name() const noexcept { return backplane_->name(); }

    // ---- publishing -------------------------------------------------------------------

    /// Publishes `data` (one JSON value, embedded in frames as is) to `channel`.
    /// @returns the message's position; on failure `ec` is invalid_channel, invalid_payload,
    /// payload_too_large or backplane_unavailable, and nothing was delivered, or timed_out: the
    /// backplane did not confirm in time (publish_timeout, or a remote backplane that lost its
    /// connection with the publish under way), and the message may be delivered all the same.
    position publish(std::string_view channel, std::string_view data, std::error_code& ec) {
        ec.clear();
        if ((ec = check_publish(channel, data))) {
            publish_errors_.fetch_add(1, std::memory_order_relaxed);
            return {};
        }
        // A backplane that orders here (the local one) is done when this call returns:
        // no handler to allocate, nothing to wait for.
        position pos;
        if (backplane_->publish_now(channel, data, pos, ec)) {
            if (ec) publish_errors_.fetch_add(1, std::memory_order_relaxed);
            return pos;
        }
        return wait_for_position([&](publish_handler done) {
            publish_checked(std::string(channel), std::string(data), std::move(done));
        }, ec);
    }

    /// Throwing form: herald::system_error on failure.
    position publish(std::string_view channel, std::string_view data) {
        std::error_code ec;
        position p = publish(channel, data, ec);
        detail::throw_if(ec, "herald::hub::publish");
        return p;
    }

    /// Publishes without waiting: `done(ec, position)` runs once the backplane ordered the
    /// message (at once with the local backplane, on the calling thread; on the backplane's
    /// thread with a remote one) or refused it; always once. Errors as for publish().
    void async_publish(std::string channel, std::string data, publish_handler done) {
        std::error_code ec = check_publish(channel, data);
        position pos;
        if (ec || backplane_->publish_now(channel, data, pos, ec)) {
            if (ec) publish_errors_.fetch_add(1, std::memory_order_relaxed);
            done(ec, std::move(pos));
            return;
        }
        publish_checked(std::move(channel), std::move(data), std::move(done));
    }

    /// The channel's current position (its epoch and last offset); a channel never published
    /// to has a fresh epoch and offset 0. Asks the backplane, which knows the stream even when
    /// this server never saw the channel (Redis): read it before loading the state a page shows, and subscribe `since` it. Blocks
    /// up to hub_options::publish_timeout; with an asynchronous backplane, not from a handler
    /// of the backplane's own loop. On failure `ec` is set (e.g. backplane_unavailable).
    position head(std::string_view channel, std::error_code& ec) {
        ec.clear();
        if (auto e = validate_channel(channel)) { ec = e; return {}; }
        return wait_for_position([&](publish_handler done) {
            backplane_->fetch(std::string(channel), std::nullopt, [done = std::move(done)](std::error_code e, fetch_result r) {
                done(e, std::move(r.head));
            });
        }, ec);
    }

    /// Throwing form of head(): herald::system_error on failure.
    position head(std::string_view channel) {
        std::error_code ec;
        position p = head(channel, ec);
        detail::throw_if(ec, "herald::hub::head");
        return p;
    }

    // ---- authorization ----------------------------------------------------------------

    std::optional<principal> authenticate(const request_info& r) const { return authorizer()->authenticate(r); }
    bool may(const principal& p, action a, std::string_view channel) const { return authorizer()->may(p, a, channel); }

    // ---- sessions ---------------------------------------------------------------------

    /// Opens a session for `who`. `wake` is called when the session's queue becomes non-empty
    /// and when it closes, possibly under a channel's lock: it must not block nor call into
    /// the hub (see session::wake_function).
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
    ///
    /// The answer comes from the backplane's fetch: at once with the local backplane (the
    /// frames are queued when subscribe returns), a round trip later with a remote one. Until
    /// then the session waits in a recovering state that holds the live messages, so that the
    /// replay and the live stream meet with no gap and no duplicate. A fetch that fails queues
    /// an `error` frame (backplane_unavailable) instead, and the session does not follow the channel.
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

        const std::uint64_t token = next_token_.fetch_add(1, std::memory_order_relaxed) + 1;
        {
            auto ch = acquire(channel);
            drop_subscriber(*ch, s.get());  // a resubscribe starts over from `since`
            ch->recovering.push_back({s, token, request_id, ch->held.size()});
        }
        backplane_->fetch(name, std::move(since), [this, name, token](std::error_code e, fetch_result r) {
            finish_subscribe(name, token, e, std::move(r));
        });
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
            std::vector<std::shared_ptr<channel_state>> forgotten;
            sh.map.for_each([&](const std::shared_ptr<channel_state>& state) {
                channel_state& ch = *state;
                std::lock_guard<std::mutex> lock(ch.mu);
                ch.log.expire(now);
                ch.subs.erase(std::remove_if(ch.subs.begin(), ch.subs.end(),
                                             [](const subscriber& x) { return x.s->closed(); }),
                              ch.subs.end());
                if (ch.subs.empty() && ch.recovering.empty() && !ch.repairing && ch.log.empty()) {
                    ch.dead = true;
                    sh.swept_published += ch.published;
                    sh.swept_deliveries += ch.deliveries;
                    forgotten.push_back(state);
                }
            });
            // Erased after the walk; `forgotten` keeps each state alive until its lock is released.
            for (const auto& ch : forgotten) sh.map.erase(ch->name, ch->hash);
        }
    }

    hub_stats stats() const {
        hub_stats st;
        st.slow_consumers = slow_consumers_.load(std::memory_order_relaxed);
        st.publish_errors = publish_errors_.load(std::memory_order_relaxed);
        st.refetches = refetches_.load(std::memory_order_relaxed);
        st.sessions = sessions_.load(std::memory_order_relaxed);
        for (auto& sh : shards_) {
            std::shared_lock<std::shared_mutex> lock(sh.mu);
            st.channels += sh.map.size();
            st.published += sh.swept_published;
            st.deliveries += sh.swept_deliveries;
            sh.map.for_each([&](const std::shared_ptr<channel_state>& ch) {
                std::lock_guard<std::mutex> lock(ch->mu);
                st.published += ch->published;
                st.deliveries += ch->deliveries;
            });
        }
        return st;
    }

private:
    /// Runs `start(done)` and waits up to publish_timeout for `done(ec, position)`: the blocking
    /// form of an asynchronous backplane call (publish, head).
    template <class Start>
    position wait_for_position(Start&& start, std::error_code& ec) {
        struct waiter {
            std::mutex mu;
            std::condition_variable cv;
            bool done = false;
            std::error_code ec;
            position pos;
        };
        auto w = std::make_shared<waiter>();
        start(publish_handler([w](std::error_code e, position p) {
            std::lock_guard<std::mutex> lock(w->mu);
            w->ec = e;
            w->pos = std::move(p);
            w->done = true;
            w->cv.notify_one();
        }));
        std::unique_lock<std::mutex> lock(w->mu);
        if (!w->cv.wait_for(lock, opts_.publish_timeout, [&] { return w->done; })) {
            ec = error::timed_out;
            return {};
        }
        ec = w->ec;
        return std::move(w->pos);
    }

    struct subscriber {
        session_ptr s;
        std::uint64_t delivered;  // last offset queued to it: nothing at or below goes again
    };

    // A subscribe waiting for its fetch. Live messages meanwhile go to channel_state::held.
    struct pending_subscriber {
        session_ptr s;
        std::uint64_t token;       // its fetch
        std::uint64_t request_id;  // echoed in `subscribed`
        std::size_t held_from;     // held[held_from..] arrived after it registered
    };

    struct channel_state {
        channel_state(std::string_view n, std::uint64_t h, const history_options& o, bool ordered_here)
            : hash(h), known(ordered_here), log(o) {
            if (n.size() <= sizeof short_name_) {
                std::memcpy(short_name_, n.data(), n.size());
                name = std::string_view(short_name_, n.size());
            } else {
                long_name_ = n;
                name = long_name_;
            }
        }
        channel_state(const channel_state&) = delete;
        channel_state& operator=(const channel_state&) = delete;

        // A lookup compares the name: it is kept inside the state (when it is not long), next
        // to the lock the publish takes next, rather than behind a pointer in another line.
        std::mutex mu;
        const std::uint64_t hash;  // of name
        std::string_view name;     // short_name_ or long_name_
        char short_name_[48];
        bool dead = false;  // swept: look the channel up again
        // {epoch, head}: the last message given to the live subscribers. With a remote backplane
        // it is `known` only while someone follows the channel here; it is set by a fetch, then
        // advanced by each contiguous message.
        bool known;
        std::string epoch = detail::make_epoch();
        std::uint64_t head = 0;
        detail::history log;  // local ordering only: a remote backplane keeps the history
        std::vector<subscriber> subs;
        std::vector<pending_subscriber> recovering;
        // Remote ordering: a gap or another epoch in the live stream stops it until a re-fetch
        // from {epoch, head} fills it (or tells the subscribers `recovered: false`).
        bool repairing = false;
        std::uint64_t repair_token = 0;
        std::size_t repair_from = 0;  // held[repair_from..] came after the repair's fetch began
        // Every message that came while someone recovers or a repair runs, in arrival order.
        std::vector<frame_ptr> held;
        // Counted under the channel's lock, summed by stats(): a hub-wide atomic would be a
        // cache line that every publishing core writes, twice per publish.
        std::uint64_t published = 0, deliveries = 0;
        std::string long_name_;
    };

    // Channels are spread over shards so that finding one rarely waits for another thread.
    struct alignas(64) shard {
        mutable std::shared_mutex mu;
        detail::name_table<channel_state> map;
        std::uint64_t swept_published = 0, swept_deliveries = 0;  // counts of forgotten channels
    };

    // Type erasure for the backplane and the authorizer: their requirements are checked at
    // compile time where they are installed; the hub itself stays one non-template class.
    struct backplane_concept {
        virtual ~backplane_concept() = default;
        virtual void attach(backplane_sink&) = 0;
        virtual void detach() = 0;
        virtual void publish(std::string, std::string, publish_handler) = 0;
        // The optional synchronous publish: false when the backplane has none.
        virtual bool publish_now(std::string_view, std::string_view, position&, std::error_code&) = 0;
        virtual void fetch(std::string, std::optional<position>, fetch_handler) = 0;
        virtual std::string_view name() const noexcept = 0;
    };
    template <class B>
    struct backplane_model final : backplane_concept {
        explicit backplane_model(B b) : bp(std::move(b)) {}
        void attach(backplane_sink& s) override { bp.attach(s); }
        void detach() override { bp.detach(); }
        void publish(std::string c, std::string d, publish_handler h) override { bp.publish(std::move(c), std::move(d), std::move(h)); }
        bool publish_now(std::string_view c, std::string_view d, position& out, std::error_code& ec) override {
            if constexpr (has_sync_publish_v<B>) {
                out = bp.publish(c, d, ec);
                return true;
            } else {
                return false;
            }
        }
        void fetch(std::string c, std::optional<position> since, fetch_handler h) override {
            bp.fetch(std::move(c), std::move(since), std::move(h));
        }
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

    std::shared_ptr<const authorizer_concept> authorizer() const { return authorizer_.load(); }

    // Publishes a checked message through the backplane's asynchronous form.
    void publish_checked(std::string channel, std::string data, publish_handler done) {
        backplane_->publish(std::move(channel), std::move(data), [this, done = std::move(done)](std::error_code ec, position p) {
            if (ec) publish_errors_.fetch_add(1, std::memory_order_relaxed);
            done(ec, std::move(p));
        });
    }

    std::error_code check_publish(std::string_view channel, std::string_view data) const {
        if (auto ec = validate_channel(channel)) return ec;
        if (data.size() > opts_.max_payload_bytes) return error::payload_too_large;
        if (!detail::is_json_value(data)) return error::invalid_payload;
        return {};
    }

    // The table inside a shard indexes by the hash's low bits; the shard is chosen by high ones.
    shard& shard_for(std::uint64_t hash) { return shards_[(hash >> 48) % shards_.size()]; }

    /// A channel's state, locked (or nothing, from find()). `keep` owns a reference only when
    /// the channel had to be waited for: the common case takes none (two atomic operations
    /// fewer per publish).
    struct locked_channel {
        channel_state* ch = nullptr;
        std::shared_ptr<channel_state> keep;  // declared before `lock`: released after it
        std::unique_lock<std::mutex> lock;
        explicit operator bool() const noexcept { return ch != nullptr; }
        channel_state* operator->() const noexcept { return ch; }
        channel_state& operator*() const noexcept { return *ch; }
    };

    /// The channel's state, created if need be, locked.
    locked_channel acquire(std::string_view channel) { return lock_channel(channel, true); }
    /// The channel's state if it exists, locked; empty otherwise.
    locked_channel find(std::string_view channel) { return lock_channel(channel, false); }

    locked_channel lock_channel(std::string_view channel, bool create) {
        const std::uint64_t hash = std::hash<std::string_view>{}(channel);
        shard& sh = shard_for(hash);
        for (;;) {
            std::shared_ptr<channel_state> ch;
            {
                std::shared_lock<std::shared_mutex> shard_lock(sh.mu);
                if (auto* found = sh.map.find(channel, hash)) {
                    // Locked while the shard lock keeps it in the table, the channel cannot be
                    // swept (sweep needs both locks), so no reference is needed. A busy channel
                    // is waited for with a reference instead, never with the shard held.
                    std::unique_lock<std::mutex> lock((*found)->mu, std::try_to_lock);
                    if (lock.owns_lock()) return {found->get(), nullptr, std::move(lock)};
                    ch = *found;
                }
            }
            if (!ch && !create) return {};
            if (!ch) {
                std::unique_lock<std::shared_mutex> shard_lock(sh.mu);
                if (auto* found = sh.map.find(channel, hash)) ch = *found;
                else ch = sh.map.insert(hash, std::make_shared<channel_state>(channel, hash, opts_.history, orders_here_));
            }
            std::unique_lock<std::mutex> lock(ch->mu);
            if (!ch->dead) {
                channel_state* raw = ch.get();
                return {raw, std::move(ch), std::move(lock)};
            }
        }
    }

    /// Queues `f` to every subscriber that has not had its offset; drops closed sessions.
    /// Called with the channel locked, so each channel's frames go out in offset order.
    void fan_out(channel_state& ch, const frame_ptr& f) {
        std::size_t n = 0;
        bool dropped = false;
        const std::uint64_t offset = f->pos.offset;
        constexpr std::size_t ahead = 4;
        for (std::size_t i = 0; i < ch.subs.size(); ++i) {
            // With many channels the sessions are out of the cache, and each push's lock waits
            // for its misses: ask for the sessions a few pushes ahead, so that they arrive meanwhile.
            if (i + ahead < ch.subs.size()) detail::prefetch_for_write(ch.subs[i + ahead].s.get());
            subscriber& sub = ch.subs[i];
            if (offset <= sub.delivered) continue;
            sub.delivered = offset;
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
        ch.deliveries += n;
    }

    // ---- subscribing: one mechanism for every backplane -----------------------------------
    //
    // A subscribe registers the session as `recovering` and asks the backplane to fetch the
    // channel (head, and the messages after `since`). Live messages that arrive meanwhile are
    // kept in `held`. When the fetch completes, under the channel's lock, the session gets
    // `subscribed`, the replay, then the held messages that follow the replay, and turns live:
    // from then on fan_out gives it every message past the last one it was given.
    //
    // With a remote backplane the live stream itself is checked: a message that is not the
    // next one (a gap: Redis dropped the connection; or another epoch: Redis lost the data)
    // stops the stream and starts a repair, a fetch from the channel's position. The repair
    // either fills the gap or tells every live subscriber `recovered: false`. Never a silent gap.

    struct repair {
        position since;
        std::uint64_t token;
    };

    static void drop_subscriber(channel_state& ch, const session* s) {
        ch.subs.erase(std::remove_if(ch.subs.begin(), ch.subs.end(), [s](const subscriber& x) { return x.s.get() == s; }),
                      ch.subs.end());
        ch.recovering.erase(std::remove_if(ch.recovering.begin(), ch.recovering.end(),
                                           [s](const pending_subscriber& x) { return x.s.get() == s; }),
                            ch.recovering.end());
    }

    /// Forgets the held messages once nobody needs them.
    static void settle(channel_state& ch) {
        if (ch.recovering.empty() && !ch.repairing) ch.held.clear();
    }

    /// Remote ordering: whether any session here follows the channel. When none does, the
    /// position is forgotten (the backplane stops delivering it; the next subscribe fetches).
    static bool followed(channel_state& ch) {
        if (!ch.subs.empty() || !ch.recovering.empty()) return true;
        ch.known = false;
        ch.repairing = false;
        settle(ch);
        return false;
    }

    void remove_subscriber(const std::string& channel, const session* s) {
        auto ch = find(channel);
        if (!ch) return;
        drop_subscriber(*ch, s);
        settle(*ch);
    }

    void finish_subscribe(const std::string& name, std::uint64_t token, std::error_code ec, fetch_result r) {
        std::optional<repair> rep;
        {
            auto ch = find(name);
            if (!ch) return;
            auto it = std::find_if(ch->recovering.begin(), ch->recovering.end(),
                                   [token](const pending_subscriber& x) { return x.token == token; });
            if (it == ch->recovering.end()) return;  // unsubscribed, closed or subscribed again meanwhile
            pending_subscriber p = std::move(*it);
            ch->recovering.erase(it);
            if (ec) {
                p.s->remove_channel(name);
                p.s->push(protocol::make_error(ec, name, p.request_id));
            } else {
                rep = join(*ch, name, p, r);
            }
            settle(*ch);
        }
        if (rep) refetch(name, std::move(*rep));
    }

    /// Queues `subscribed`, the replay and the held messages that follow it, then makes the
    /// session live. The channel is locked. @returns a repair to start, if one is needed.
    std::optional<repair> join(channel_state& ch, const std::string& name, const pending_subscriber& p, fetch_result& r) {
        if (!orders_here_ && ch.subs.empty()) {  // nobody is live here: this fetch sets the position
            ch.known = false;
            ch.repairing = false;
        }
        std::optional<repair> rep;
        std::vector<frame_ptr> out;
        std::uint64_t delivered = r.head.offset;
        if (ch.known && r.head.epoch != ch.epoch) {
            // The fetch and the live stream name different streams: the backplane lost the
            // channel in between. The live position stands; a repair settles which is current.
            out.push_back(protocol::make_subscribed(name, {ch.epoch, ch.head}, false, p.request_id));
            delivered = ch.head;
            if (!ch.repairing) rep = start_repair(ch);
        } else {
            out.push_back(protocol::make_subscribed(name, r.head, r.recovered, p.request_id));
            out.insert(out.end(), std::make_move_iterator(r.messages.begin()), std::make_move_iterator(r.messages.end()));
            bool past_gap = false;  // a held message that does not follow: the live stream broke
            for (std::size_t i = p.held_from; i < ch.held.size(); ++i) {
                const frame_ptr& f = ch.held[i];
                if (f->pos.epoch == r.head.epoch && f->pos.offset <= delivered) continue;
                if (f->pos.epoch == r.head.epoch && f->pos.offset == delivered + 1 && !past_gap) {
                    out.push_back(f);
                    ++delivered;
                } else {
                    past_gap = true;
                }
            }
            if (!ch.known) {
                ch.known = true;
                ch.epoch = r.head.epoch;
                ch.head = delivered;
                if (past_gap) rep = start_repair(ch);
            } else if (delivered < ch.head) {
                // The backplane broke its promise (a message after the head it read did not
                // come): tell the client rather than leave a silent gap.
                out.clear();
                out.push_back(protocol::make_subscribed(name, {ch.epoch, ch.head}, false, p.request_id));
                delivered = ch.head;
            }
        }
        ch.deliveries += out.size() - 1;
        for (frame_ptr& f : out) p.s->push_forced(std::move(f));
        ch.subs.push_back({p.s, delivered});
        return rep;
    }

    /// Stops a remote channel's live stream until a fetch from its position fills the gap.
    /// Messages from held[held.size()..] on are the repair's to replay.
    repair start_repair(channel_state& ch) {
        ch.repairing = true;
        ch.repair_token = next_token_.fetch_add(1, std::memory_order_relaxed) + 1;
        ch.repair_from = ch.held.size();
        refetches_.fetch_add(1, std::memory_order_relaxed);
        return {{ch.epoch, ch.head}, ch.repair_token};
    }

    void refetch(const std::string& name, repair r) {
        backplane_->fetch(name, std::move(r.since), [this, name, token = r.token](std::error_code ec, fetch_result res) {
            finish_repair(name, token, ec, std::move(res));
        });
    }

    /// Remote ordering: gives the live subscribers `f` if it is the next message, drops it if
    /// they had it, and otherwise starts a repair. The channel is locked.
    std::optional<repair> accept_live(channel_state& ch, const frame_ptr& f) {
        if (!ch.known || ch.repairing) return std::nullopt;  // in `held`: a fetch will place it
        if (f->pos.epoch == ch.epoch) {
            if (f->pos.offset <= ch.head) return std::nullopt;
            if (f->pos.offset == ch.head + 1) {
                ch.head = f->pos.offset;
                ++ch.published;
                fan_out(ch, f);
                return std::nullopt;
            }
        }
        return start_repair(ch);
    }

    void finish_repair(const std::string& name, std::uint64_t token, std::error_code ec, fetch_result r) {
        std::optional<repair> rep;
        std::string note;
        {
            auto ch = find(name);
            if (!ch || !ch->repairing || ch->repair_token != token) return;
            ch->repairing = false;
            // Gives `f` to the live stream; held[next..] are still to come if it breaks again.
            auto feed = [&](const frame_ptr& f, std::size_t next) {
                if (auto again = accept_live(*ch, f); again && !rep) {
                    rep = std::move(again);
                    ch->repair_from = next;
                }
            };
            const std::size_t from = ch->repair_from;
            if (ec) {
                // The sessions stay subscribed and wait: the backplane resyncs the channel when
                // it is back, and the next message tries again.
                note = "re-fetch of channel " + name + " failed (" + ec.message() + "); its subscribers wait";
            } else {
                std::string stale;  // the epoch the backplane lost: its held messages are void
                if (r.recovered && r.head.epoch == ch->epoch) {
                    for (const frame_ptr& f : r.messages) feed(f, from);
                } else {
                    note = "channel " + name + " lost history (" + ch->epoch + ":" + std::to_string(ch->head) +
                           " -> " + r.head.epoch + ":" + std::to_string(r.head.offset) + "); " +
                           std::to_string(ch->subs.size()) + " subscriber(s) told to resync";
                    stale = std::exchange(ch->epoch, r.head.epoch);
                    ch->head = r.head.offset;
                    const frame_ptr resync = protocol::make_subscribed(name, r.head, false);
                    for (subscriber& sub : ch->subs) {
                        sub.delivered = r.head.offset;
                        sub.s->push_forced(resync);
                    }
                }
                for (std::size_t i = from; i < ch->held.size(); ++i)
                    if (ch->held[i]->pos.epoch != stale) feed(ch->held[i], i + 1);
            }
            settle(*ch);
        }
        if (!note.empty()) log(log_level::warning, note);
        if (rep) refetch(name, std::move(*rep));
    }

    void log(log_level level, const std::string& text) const {
        if (opts_.log) opts_.log(level, text);
    }

    // ---- backplane_sink ------------------------------------------------------------------

    position order_and_deliver(std::string_view channel, std::string_view data, std::error_code& ec) override {
        ec.clear();
        auto ch = acquire(channel);
        position pos{ch->epoch, ch->head + 1};
        frame_ptr f = protocol::make_message(std::string(channel), pos, data);
        ch->head = pos.offset;
        ++ch->published;
        if (!ch->recovering.empty()) ch->held.push_back(f);
        fan_out(*ch, f);
        const auto created = f->created;
        ch->log.append(std::move(f), created);  // moved last: one reference count operation fewer
        return pos;
    }

    fetch_result read_history(std::string_view channel, const std::optional<position>& since) override {
        auto ch = acquire(channel);
        fetch_result r;
        r.head = {ch->epoch, ch->head};
        if (since) {
            r.recovered = since->epoch == ch->epoch && ch->log.since(since->offset, ch->head, r.messages);
            if (!r.recovered) r.messages.clear();
        }
        return r;
    }

    bool deliver(std::string_view channel, const position& pos, std::string_view data) override {
        std::optional<repair> rep;
        {
            auto ch = find(channel);
            if (!ch || !followed(*ch)) return false;
            frame_ptr f = protocol::make_message(std::string(channel), pos, data);
            if (!ch->recovering.empty() || ch->repairing) ch->held.push_back(f);
            rep = accept_live(*ch, f);
        }
        if (rep) refetch(std::string(channel), std::move(*rep));
        return true;
    }

    bool resync(std::string_view channel) override {
        std::optional<repair> rep;
        {
            auto ch = find(channel);
            if (!ch || !followed(*ch)) return false;
            if (ch->known && !ch->repairing && !ch->subs.empty()) rep = start_repair(*ch);
        }
        if (rep) refetch(std::string(channel), std::move(*rep));
        return true;
    }

    bool following(std::string_view channel) override {
        auto ch = find(channel);
        return ch && followed(*ch);
    }

    history_options history_limits() const override { return opts_.history; }
    log_function logger() const override { return opts_.log; }

    hub_options opts_;
    const bool orders_here_;  // Backplane::orders_locally
    std::unique_ptr<backplane_concept> backplane_;
    detail::atomic_shared_ptr<const authorizer_concept> authorizer_;
    std::array<shard, 64> shards_;

    std::atomic<std::uint64_t> slow_consumers_{0}, publish_errors_{0}, sessions_{0},
        refetches_{0};
    std::atomic<std::uint64_t> next_token_{0};  // names one fetch: subscribe or repair
};

} // namespace herald
