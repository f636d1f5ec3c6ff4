// herald — detail: presence on this server. Per channel, which sessions of which principal
// are in it (a principal is one member however many sessions it has), and which sessions
// hear its joins and leaves.
#pragma once

#include <herald/backplane.hpp>
#include <herald/frame.hpp>
#include <herald/session.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace herald::detail {

// One mutex for the table: presence changes on subscribe, unsubscribe and close, not per
// publish. The callbacks of join() and leave() run under it, so that the changes of one
// channel are announced (to this server's listeners, or to the backplane) in the order they
// were made.
class presence_table {
public:
    using clock = std::chrono::steady_clock;

    explicit presence_table(std::size_t max_members) : max_members_(max_members) {}

    /// Lists session `s` in `channel`: `first(member)` runs when it is its principal's first
    /// session here; `listens`: `s` hears the channel's joins and leaves. @returns false when
    /// the channel is at max_members (the principal is not listed; `s` hears nothing).
    template <class First>
    bool join(const std::string& channel, const session_ptr& s, const std::string& info, bool listens, First&& first) {
        std::lock_guard<std::mutex> lock(mu_);
        channel_entry& ch = channels_[channel];
        auto it = ch.members.find(s->who().id);
        if (it == ch.members.end()) {
            if (ch.members.size() >= max_members_) {
                if (ch.members.empty() && ch.listeners.empty()) channels_.erase(channel);
                return false;
            }
            it = ch.members.emplace(s->who().id, member_entry{info, {}}).first;
        }
        member_entry& m = it->second;
        // A member that lingers (its last session ended less than `linger` ago) is back: it
        // was never told gone, so it is not told again.
        const bool announce = m.sessions.empty() && !m.lingering;
        m.lingering = false;
        if (std::find(m.sessions.begin(), m.sessions.end(), s.get()) == m.sessions.end()) m.sessions.push_back(s.get());
        if (listens && std::find(ch.listeners.begin(), ch.listeners.end(), s) == ch.listeners.end())
            ch.listeners.push_back(s);
        if (announce) first(presence_member{it->first, m.info});
        return true;
    }

    /// Unlists `s` from `channel`. When it was its principal's last session here, the member
    /// lingers until sweep() past `now` + `linger` (a session of the same principal joining
    /// meanwhile keeps it, untold); with `linger` 0 `last(user)` runs at once. Nothing
    /// happens for a session that was not listed.
    template <class Last>
    void leave(const std::string& channel, const session* s, clock::time_point now, clock::duration linger, Last&& last) {
        std::lock_guard<std::mutex> lock(mu_);
        auto c = channels_.find(channel);
        if (c == channels_.end()) return;
        channel_entry& ch = c->second;
        ch.listeners.erase(std::remove_if(ch.listeners.begin(), ch.listeners.end(),
                                          [s](const session_ptr& x) { return x.get() == s; }),
                           ch.listeners.end());
        auto it = ch.members.find(s->who().id);
        if (it != ch.members.end()) {
            auto& ss = it->second.sessions;
            const auto at = std::find(ss.begin(), ss.end(), s);
            if (at != ss.end()) {
                ss.erase(at);
                if (ss.empty() && linger > clock::duration::zero()) {
                    it->second.lingering = true;
                    it->second.gone_at = now + linger;
                } else if (ss.empty()) {
                    const std::string user = it->first;
                    ch.members.erase(it);
                    last(user);
                }
            }
        }
        if (ch.members.empty() && ch.listeners.empty()) channels_.erase(c);
    }

    /// Ends the members whose linger is over: `last(channel, user)` runs for each, under the
    /// table's lock as leave()'s does.
    template <class Last>
    void sweep(clock::time_point now, Last&& last) {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto c = channels_.begin(); c != channels_.end();) {
            auto& ms = c->second.members;
            for (auto it = ms.begin(); it != ms.end();) {
                if (it->second.lingering && it->second.gone_at <= now) {
                    const std::string user = it->first;
                    it = ms.erase(it);
                    last(c->first, user);
                } else {
                    ++it;
                }
            }
            if (ms.empty() && c->second.listeners.empty()) c = channels_.erase(c);
            else ++c;
        }
    }

    /// Queues `f` to every session that hears `channel`'s presence (those closed are dropped).
    void tell(std::string_view channel, const frame_ptr& f) {
        std::lock_guard<std::mutex> lock(mu_);
        tell_locked(channel, f);
    }

    /// This server's members of `channel`, by user.
    std::vector<presence_member> members(std::string_view channel) const {
        std::lock_guard<std::mutex> lock(mu_);
        std::vector<presence_member> out;
        auto c = channels_.find(std::string(channel));
        if (c == channels_.end()) return out;
        for (const auto& [user, m] : c->second.members) out.push_back({user, m.info});
        return out;
    }

    /// Channels with members or listeners here, and members summed over them.
    void count(std::size_t& channels, std::size_t& members) const {
        std::lock_guard<std::mutex> lock(mu_);
        channels = channels_.size();
        members = 0;
        for (const auto& [name, ch] : channels_) members += ch.members.size();
    }

    /// tell(), for the callbacks of join() and leave(), which run under the lock.
    void tell_locked(std::string_view channel, const frame_ptr& f) {
        auto c = channels_.find(std::string(channel));
        if (c == channels_.end()) return;
        auto& ls = c->second.listeners;
        bool dropped = false;
        for (const session_ptr& s : ls) dropped |= !s->push(f);
        if (dropped) ls.erase(std::remove_if(ls.begin(), ls.end(), [](const session_ptr& x) { return x->closed(); }), ls.end());
    }

private:
    struct member_entry {
        std::string info;                     // of the session that made it a member
        std::vector<const session*> sessions; // its sessions here, each once
        bool lingering = false;               // no session here since gone_at - linger
        clock::time_point gone_at{};          // when a lingering member is told gone
    };
    struct channel_entry {
        std::map<std::string, member_entry> members;  // by principal id: members() comes sorted
        std::vector<session_ptr> listeners;
    };

    const std::size_t max_members_;
    mutable std::mutex mu_;
    std::unordered_map<std::string, channel_entry> channels_;
};

} // namespace herald::detail
