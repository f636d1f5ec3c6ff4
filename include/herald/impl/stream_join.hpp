// herald — the hub's subscribe/resume/repair state machine: how a subscriber joins a
// channel's live stream, and how a remote backplane's stream is kept free of gaps.
//
// These are hub members rather than a detail class of their own: every step needs the hub's
// backplane (fetch), its token counter, its fan-out and its statistics, so a separate class
// would need a reference back to the hub for each of them and would hide nothing.
#pragma once

#include <herald/hub.hpp>

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace herald {

// One mechanism for every backplane.
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

inline void hub::drop_subscriber(detail::channel_state& ch, const session* s) {
    ch.subs.erase(std::remove_if(ch.subs.begin(), ch.subs.end(), [s](const detail::subscriber& x) { return x.s.get() == s; }),
                  ch.subs.end());
    if (!ch.rec) return;
    std::vector<detail::pending_subscriber>& recovering = ch.rec->recovering;
    recovering.erase(std::remove_if(recovering.begin(), recovering.end(),
                                    [s](const detail::pending_subscriber& x) { return x.s.get() == s; }),
                     recovering.end());
}

/// Forgets the held messages once nobody needs them, with the whole recovery state: a
/// subscribe is over in a moment, and a channel that keeps it costs every idle channel.
/// The storage of an empty list of recovering subscribers goes too while a repair runs.
inline void hub::settle(detail::channel_state& ch) {
    if (!ch.rec) return;
    if (ch.rec->recovering.empty() && !ch.rec->repairing) ch.rec.reset();
    else if (ch.rec->recovering.empty() && ch.rec->recovering.capacity())
        std::vector<detail::pending_subscriber>().swap(ch.rec->recovering);
}

/// Remote ordering: whether any session here follows the channel. When none does, the
/// position is forgotten (the backplane stops delivering it; the next subscribe fetches).
inline bool hub::followed(detail::channel_state& ch) {
    if (!ch.subs.empty() || ch.recovering()) return true;
    ch.known = false;
    if (ch.rec) ch.rec->repairing = false;
    settle(ch);
    return false;
}

inline void hub::remove_subscriber(const std::string& channel, const session* s) {
    auto ch = channels_.find(channel);
    if (!ch) return;
    drop_subscriber(*ch, s);
    settle(*ch);
}

inline void hub::finish_subscribe(const std::string& name, std::uint64_t token, std::error_code ec, fetch_result r) {
    std::optional<repair> rep;
    session_ptr failed;
    {
        auto ch = channels_.find(name);
        if (!ch || !ch->rec) return;
        std::vector<detail::pending_subscriber>& recovering = ch->rec->recovering;
        auto it = std::find_if(recovering.begin(), recovering.end(),
                               [token](const detail::pending_subscriber& x) { return x.token == token; });
        if (it == recovering.end()) return;  // unsubscribed, closed or subscribed again meanwhile
        detail::pending_subscriber p = std::move(*it);
        recovering.erase(it);
        if (ec) {
            p.s->remove_channel(name);
            p.s->push(protocol::make_error(ec, name, p.request_id));
            failed = p.s;
        } else {
            rep = join(*ch, name, p, r);
        }
        settle(*ch);
    }
    if (failed) presence_leave(failed.get(), name);  // not followed: not listed either
    if (rep) refetch(name, std::move(*rep));
}

/// Queues `subscribed`, the replay and the held messages that follow it, then makes the
/// session live. The channel is locked. @returns a repair to start, if one is needed.
inline std::optional<hub::repair> hub::join(detail::channel_state& ch, const std::string& name,
                                            const detail::pending_subscriber& p, fetch_result& r) {
    if (!orders_here_ && ch.subs.empty()) {  // nobody is live here: this fetch sets the position
        ch.known = false;
        if (ch.rec) ch.rec->repairing = false;
    }
    std::optional<repair> rep;
    std::vector<frame_ptr> out;
    std::uint64_t delivered = r.head.offset;
    std::string live_epoch = r.head.epoch;  // the stream `delivered` counts in
    if (ch.known && r.head.epoch != ch.epoch) {
        // The fetch and the live stream name different streams: the backplane lost the
        // channel in between. The live position stands; a repair settles which is current.
        out.push_back(protocol::make_subscribed(name, {ch.epoch, ch.head}, false, p.request_id));
        delivered = ch.head;
        live_epoch = ch.epoch;
        if (!ch.repairing()) rep = start_repair(ch);
    } else {
        out.push_back(protocol::make_subscribed(name, r.head, r.recovered, p.request_id));
        out.insert(out.end(), std::make_move_iterator(r.messages.begin()), std::make_move_iterator(r.messages.end()));
        bool past_gap = false;  // a held message that does not follow: the live stream broke
        const std::size_t held = ch.rec ? ch.rec->held.size() : 0;  // `p` was in it: it is there
        for (std::size_t i = p.held_from; i < held; ++i) {
            const frame_ptr& f = ch.rec->held[i];
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
            live_epoch = ch.epoch;
        }
    }
    // The answer and the replay count in the session's caps like live messages. A replay
    // that does not fit is not sent: the answer says recovered:false at the live position
    // (the client refetches), as when the history no longer holds it. Closing instead would
    // bring the client back with the same cursor and the same replay, again and again. Only
    // when even that answer does not fit is the session closed (slow_consumer).
    const std::size_t replayed = out.size() - 1;
    if (p.s->push_all(out)) {
        ch.deliveries += replayed;
    } else if (!p.s->push(protocol::make_subscribed(name, {live_epoch, delivered}, false, p.request_id))) {
        count_slow(*p.s);
        return rep;
    }
    ch.subs.push_back({p.s, delivered});
    return rep;
}

/// Stops a remote channel's live stream until a fetch from its position fills the gap.
/// Messages from held[held.size()..] on are the repair's to replay.
inline hub::repair hub::start_repair(detail::channel_state& ch) {
    detail::channel_recovery& rec = ch.recovery();
    rec.repairing = true;
    rec.repair_token = next_token_.fetch_add(1, std::memory_order_relaxed) + 1;
    rec.repair_from = rec.held.size();
    refetches_.fetch_add(1, std::memory_order_relaxed);
    return {{ch.epoch, ch.head}, rec.repair_token};
}

inline void hub::refetch(const std::string& name, repair r) {
    backplane_->fetch(name, std::move(r.since), [this, name, token = r.token](std::error_code ec, fetch_result res) {
        finish_repair(name, token, ec, std::move(res));
    });
}

/// Remote ordering: gives the live subscribers `f` if it is the next message, drops it if
/// they had it, and otherwise starts a repair. The channel is locked.
inline std::optional<hub::repair> hub::accept_live(detail::channel_state& ch, const frame_ptr& f) {
    if (!ch.known || ch.repairing()) return std::nullopt;  // in `held`: a fetch will place it
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

inline void hub::finish_repair(const std::string& name, std::uint64_t token, std::error_code ec, fetch_result r) {
    std::optional<repair> rep;
    std::string note;
    {
        auto ch = channels_.find(name);
        if (!ch || !ch->repairing() || ch->rec->repair_token != token) return;
        // Not freed before settle() below: the held messages are replayed from it.
        detail::channel_recovery& rec = *ch->rec;
        rec.repairing = false;
        // Gives `f` to the live stream; held[next..] are still to come if it breaks again.
        auto feed = [&](const frame_ptr& f, std::size_t next) {
            if (auto again = accept_live(*ch, f); again && !rep) {
                rep = std::move(again);
                rec.repair_from = next;
            }
        };
        const std::size_t from = rec.repair_from;
        if (ec) {
            // The sessions stay subscribed and wait: the backplane resyncs the channel when
            // it is back, and the next message tries again.
            note = "re-fetch of channel " + name + " failed (" + ec.message() + "); its subscribers wait";
        } else {
            std::string stale;  // the epoch the backplane lost: its held messages are void
            if (r.recovered && r.head.epoch != ch->epoch) {
                // The stream goes on under a new epoch (Redis failed over to a replica: what
                // it replicated keeps its offsets). Subscribers are told the new name at the
                // position they hold, then get what follows.
                stale = std::exchange(ch->epoch, r.head.epoch);
                const frame_ptr renamed = protocol::make_subscribed(name, {ch->epoch, ch->head}, true);
                for (detail::subscriber& sub : ch->subs)
                    if (!sub.s->push(renamed)) count_slow(*sub.s);
            }
            if (r.recovered) {
                for (const frame_ptr& f : r.messages) feed(f, from);
            } else {
                note = "channel " + name + " lost history (" + ch->epoch + ":" + std::to_string(ch->head) +
                       " -> " + r.head.epoch + ":" + std::to_string(r.head.offset) + "); " +
                       std::to_string(ch->subs.size()) + " subscriber(s) told to resync";
                stale = std::exchange(ch->epoch, r.head.epoch);
                ch->head = r.head.offset;
                const frame_ptr resync = protocol::make_subscribed(name, r.head, false);
                for (detail::subscriber& sub : ch->subs) {
                    sub.delivered = r.head.offset;
                    if (!sub.s->push(resync)) count_slow(*sub.s);  // dropped at the next fan-out
                }
            }
            for (std::size_t i = from; i < rec.held.size(); ++i)
                if (rec.held[i]->pos.epoch != stale) feed(rec.held[i], i + 1);
        }
        settle(*ch);
    }
    if (!note.empty()) log(log_level::warning, note);
    if (rep) refetch(name, std::move(*rep));
}

} // namespace herald
