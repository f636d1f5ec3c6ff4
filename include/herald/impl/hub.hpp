// herald — the hub's member bodies: publishing, sessions, fan-out, and the backplane's calls.
// The subscribe/resume/repair state machine is in impl/stream_join.hpp.
#pragma once

#include <herald/hub.hpp>
#include <herald/detail/json_check.hpp>
#include <herald/detail/wait.hpp>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace herald {

// ---- publishing -------------------------------------------------------------------------

inline position hub::publish(std::string_view channel, std::string_view data, std::error_code& ec) {
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
    return detail::wait_for_position([&](publish_handler done) {
        publish_checked(std::string(channel), std::string(data), std::move(done));
    }, opts_.publish_timeout, ec);
}

inline position hub::publish(std::string_view channel, std::string_view data) {
    std::error_code ec;
    position p = publish(channel, data, ec);
    detail::throw_if(ec, "herald::hub::publish");
    return p;
}

inline void hub::async_publish(std::string channel, std::string data, publish_handler done) {
    std::error_code ec = check_publish(channel, data);
    position pos;
    if (ec || backplane_->publish_now(channel, data, pos, ec)) {
        if (ec) publish_errors_.fetch_add(1, std::memory_order_relaxed);
        done(ec, std::move(pos));
        return;
    }
    publish_checked(std::move(channel), std::move(data), std::move(done));
}

inline position hub::head(std::string_view channel, std::error_code& ec) {
    ec.clear();
    if (auto e = validate_channel(channel)) { ec = e; return {}; }
    return detail::wait_for_position([&](publish_handler done) {
        backplane_->fetch(std::string(channel), std::nullopt, [done = std::move(done)](std::error_code e, fetch_result r) {
            done(e, std::move(r.head));
        });
    }, opts_.publish_timeout, ec);
}

inline position hub::head(std::string_view channel) {
    std::error_code ec;
    position p = head(channel, ec);
    detail::throw_if(ec, "herald::hub::head");
    return p;
}

inline void hub::async_fetch(std::string channel, std::optional<position> since, fetch_handler done) {
    if (auto e = validate_channel(channel)) {
        done(e, fetch_result{});
        return;
    }
    backplane_->fetch(std::move(channel), std::move(since), std::move(done));
}

// Publishes a checked message through the backplane's asynchronous form.
inline void hub::publish_checked(std::string channel, std::string data, publish_handler done) {
    backplane_->publish(std::move(channel), std::move(data), [this, done = std::move(done)](std::error_code ec, position p) {
        if (ec) publish_errors_.fetch_add(1, std::memory_order_relaxed);
        done(ec, std::move(p));
    });
}

inline std::error_code hub::check_publish(std::string_view channel, std::string_view data) const {
    if (auto ec = validate_channel(channel)) return ec;
    if (data.size() > opts_.max_payload_bytes) return error::payload_too_large;
    if (!detail::is_json_value(data)) return error::invalid_payload;
    return {};
}

// ---- sessions ---------------------------------------------------------------------------

inline session_ptr hub::open_session(principal who, session::wake_function wake) {
    sessions_.fetch_add(1, std::memory_order_relaxed);
    return std::make_shared<session>(detail::make_session_id(), std::move(who), opts_.session, std::move(wake));
}

inline void hub::close_session(const session_ptr& s, std::error_code reason) {
    s->close(reason);
    const std::vector<std::string> dropped = s->drop_channels();
    for (const std::string& c : dropped) {
        remove_subscriber(c, s.get());
        presence_leave(s.get(), c);
    }
    if (!s->who().anonymous()) per_principal_.give_back(s->who().id, dropped.size());
    if (!s->closed_counted_.exchange(true)) sessions_.fetch_sub(1, std::memory_order_relaxed);
}

inline std::error_code hub::subscribe(const session_ptr& s, std::string_view channel, std::optional<position> since,
                                      std::uint64_t request_id) {
    if (auto ec = validate_channel(channel)) return ec;
    if (!may(s->who(), action::subscribe, channel)) return error::forbidden;
    std::error_code ec;
    const std::string name(channel);
    // The principal's place is taken first, so that a close racing this subscribe gives
    // back only places that were taken.
    const bool counted = !s->who().anonymous();
    if (counted && !per_principal_.take(s->who().id)) return error::too_many_subscriptions;
    const bool added = s->add_channel(name, ec);
    if (counted && !added) per_principal_.give_back(s->who().id);  // a resubscribe, or refused
    if (ec) return ec;

    const std::uint64_t token = next_token_.fetch_add(1, std::memory_order_relaxed) + 1;
    {
        auto ch = channels_.acquire(channel);
        drop_subscriber(*ch, s.get());  // a resubscribe starts over from `since`
        detail::channel_recovery& rec = ch->recovery();
        rec.recovering.push_back({s, token, request_id, rec.held.size()});
    }
    if (added) presence_join(s, name);
    if (!orders_here_) s->begin_join();  // answered later, on the backplane's thread
    backplane_->fetch(name, std::move(since), [this, name, token, s = orders_here_ ? nullptr : s](std::error_code e, fetch_result r) {
        finish_subscribe(name, token, e, std::move(r));
        if (s) s->end_join();
    });
    return {};
}

inline std::error_code hub::unsubscribe(const session_ptr& s, std::string_view channel, std::uint64_t request_id) {
    if (auto ec = validate_channel(channel)) return ec;
    const std::string name(channel);
    if (!s->remove_channel(name)) return error::not_subscribed;
    if (!s->who().anonymous()) per_principal_.give_back(s->who().id);
    remove_subscriber(name, s.get());
    presence_leave(s.get(), name);
    s->push(protocol::make_unsubscribed(name, request_id));
    return {};
}

// ---- maintenance ------------------------------------------------------------------------

inline hub_stats hub::stats() const {
    hub_stats st;
    st.slow_consumers = slow_consumers_.load(std::memory_order_relaxed);
    st.publish_errors = publish_errors_.load(std::memory_order_relaxed);
    st.refetches = refetches_.load(std::memory_order_relaxed);
    st.sessions = sessions_.load(std::memory_order_relaxed);
    channels_.count(st.channels, st.subscriptions, st.published, st.deliveries);
    st.history_bytes = channels_.history_bytes();
    std::size_t pc = 0, pm = 0;
    presence_.count(pc, pm);
    st.presence_channels = pc;
    st.presence_members = pm;
    return st;
}

// ---- presence ---------------------------------------------------------------------------

// A session is listed once per channel, when it starts following it (a resubscribe changes
// nothing), and unlisted when it stops (unsubscribe, close, a failed subscribe). With a
// backplane that shares presence the hub announces nothing itself: it tells the backplane of
// its principals' first and last sessions here, and announces what the backplane says
// (presence_changed), so that every server tells the same joins and leaves, once.
inline void hub::presence_join(const session_ptr& s, const std::string& channel) {
    const session::presence_role role = s->presence();
    if (role == session::presence_role::none || s->who().anonymous()) return;
    if (!may(s->who(), action::presence, channel)) return;
    std::string info = "null";
    const std::string& wanted = s->who().presence_info;
    if (!wanted.empty()) {
        if (wanted.size() <= opts_.presence.max_info_bytes && detail::is_json_value(wanted))
            info = wanted;
        else if (!presence_info_logged_.exchange(true))  // the CMS's mistake, the same for many: once
            log(log_level::warning, "presence: the info of principal '" + s->who().id.substr(0, 64) +
                                        "' is not one JSON value of at most " +
                                        std::to_string(opts_.presence.max_info_bytes) +
                                        " bytes: null instead (logged once)");
    }
    const bool shared = backplane_->shares_presence();
    const bool listed = presence_.join(channel, s, info, role == session::presence_role::listener,
                                       [&](const presence_member& m) {
        if (shared) backplane_->presence_join(channel, m.user, m.info);
        else presence_.tell_locked(channel, protocol::make_presence_event(channel, {true, m}));
    });
    if (!listed && !presence_cap_logged_.exchange(true))  // a crowd would log once per subscribe
        log(log_level::warning, "presence: channel " + channel + " lists " + std::to_string(opts_.presence.max_members) +
                                    " members already (presence_options::max_members): '" + s->who().id.substr(0, 64) +
                                    "' is not listed, nor anyone past the bound in any channel (logged once)");
}

inline void hub::presence_leave(const session* s, const std::string& channel) {
    if (s->presence() == session::presence_role::none || s->who().anonymous()) return;
    presence_.leave(channel, s, detail::presence_table::clock::now(), opts_.presence.linger,
                    [&](const std::string& user) { presence_gone(channel, user); });
}

// A member's last session left (after its linger): the backplane that shares presence tells
// every server, else this hub tells its listeners. Runs under the presence table's lock.
inline void hub::presence_gone(const std::string& channel, const std::string& user) {
    if (backplane_->shares_presence()) backplane_->presence_leave(channel, user);
    else presence_.tell_locked(channel, protocol::make_presence_event(channel, {false, {user, {}}}));
}

inline void hub::sweep() {
    const auto now = std::chrono::steady_clock::now();
    channels_.sweep(now);
    presence_.sweep(now, [&](const std::string& channel, const std::string& user) { presence_gone(channel, user); });
}

inline void hub::presence_changed(std::string_view channel, const presence_event& e) {
    presence_.tell(channel, protocol::make_presence_event(std::string(channel), e));
}

inline std::vector<presence_member> hub::presence(std::string_view channel, std::error_code& ec) {
    ec.clear();
    if (auto e = validate_channel(channel)) { ec = e; return {}; }
    if (!backplane_->shares_presence()) return presence_.members(channel);
    return detail::wait_for<std::vector<presence_member>>([&](presence_handler done) {
        backplane_->presence(std::string(channel), std::move(done));
    }, opts_.publish_timeout, ec);
}

inline std::vector<presence_member> hub::presence(std::string_view channel) {
    std::error_code ec;
    auto m = presence(channel, ec);
    detail::throw_if(ec, "herald::hub::presence");
    return m;
}

inline void hub::async_presence(std::string channel, presence_handler done) {
    if (auto e = validate_channel(channel)) return done(e, {});
    if (!backplane_->shares_presence()) return done({}, presence_.members(channel));
    backplane_->presence(std::move(channel), std::move(done));
}

inline void hub::log(log_level level, const std::string& text) const {
    if (opts_.log) opts_.log(level, text);
}

// ---- fan-out ----------------------------------------------------------------------------

/// Queues `f` to every subscriber that has not had its offset; drops closed sessions.
/// Called with the channel locked, so each channel's frames go out in offset order.
inline void hub::fan_out(detail::channel_state& ch, const frame_ptr& f) {
    std::size_t n = 0;
    bool dropped = false;
    const std::uint64_t offset = f->pos.offset;
    constexpr std::size_t ahead = 4;
    for (std::size_t i = 0; i < ch.subs.size(); ++i) {
        // With many channels the sessions are out of the cache, and each push's lock waits
        // for its misses: ask for the sessions a few pushes ahead, so that they arrive meanwhile.
        if (i + ahead < ch.subs.size()) detail::prefetch_for_write(ch.subs[i + ahead].s.get());
        detail::subscriber& sub = ch.subs[i];
        if (offset <= sub.delivered) continue;
        sub.delivered = offset;
        if (sub.s->push(f)) {
            ++n;
        } else {
            dropped = true;
            count_slow(*sub.s);
        }
    }
    if (dropped)
        ch.subs.erase(std::remove_if(ch.subs.begin(), ch.subs.end(), [](const detail::subscriber& x) { return x.s->closed(); }),
                      ch.subs.end());
    ch.deliveries += n;
}

/// Counts `s` in hub_stats::slow_consumers, once, if a cap closed it.
inline void hub::count_slow(session& s) {
    if (s.close_reason() == error::slow_consumer && !s.slow_counted_.exchange(true))
        slow_consumers_.fetch_add(1, std::memory_order_relaxed);
}

// ---- backplane_sink ---------------------------------------------------------------------

inline position hub::order_and_deliver(std::string_view channel, std::string_view data, std::error_code& ec) {
    ec.clear();
    auto ch = channels_.acquire(channel);
    position pos{ch->epoch, ch->head + 1};
    frame_ptr f = protocol::make_message(std::string(channel), pos, data);
    ch->head = pos.offset;
    ++ch->published;
    if (ch->recovering()) ch->rec->held.push_back(f);
    fan_out(*ch, f);
    const auto created = f->created;
    ch->log.append(std::move(f), created);  // moved last: one reference count operation fewer
    return pos;
}

inline fetch_result hub::read_history(std::string_view channel, const std::optional<position>& since) {
    auto ch = channels_.acquire(channel);
    fetch_result r;
    r.head = {ch->epoch, ch->head};
    if (since) {
        r.recovered = since->epoch == ch->epoch && ch->log.since(since->offset, ch->head, r.messages);
        if (!r.recovered) r.messages.clear();
    }
    return r;
}

inline bool hub::deliver(std::string_view channel, const position& pos, std::string_view data) {
    std::optional<repair> rep;
    {
        auto ch = channels_.find(channel);
        if (!ch || !followed(*ch)) return false;
        frame_ptr f = protocol::make_message(std::string(channel), pos, data);
        if (ch->recovering() || ch->repairing()) ch->rec->held.push_back(f);
        rep = accept_live(*ch, f);
    }
    if (rep) refetch(std::string(channel), std::move(*rep));
    return true;
}

inline bool hub::resync(std::string_view channel) {
    std::optional<repair> rep;
    {
        auto ch = channels_.find(channel);
        if (!ch || !followed(*ch)) return false;
        if (ch->known && !ch->repairing() && !ch->subs.empty()) rep = start_repair(*ch);
    }
    if (rep) refetch(std::string(channel), std::move(*rep));
    return true;
}

inline bool hub::following(std::string_view channel) {
    auto ch = channels_.find(channel);
    return ch && followed(*ch);
}

} // namespace herald
