// herald — a session: one client, on any transport, as the hub sees it.
#pragma once

#include <herald/authorizer.hpp>
#include <herald/error.hpp>
#include <herald/frame.hpp>
#include <herald/options.hpp>
#include <herald/detail/inline_function.hpp>
#include <herald/detail/spin_lock.hpp>

#include <atomic>
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace herald {

class hub;

/// One client of the hub. The hub pushes frames into the session's outbound queue (from any
/// thread); the transport that owns the client takes them out, all pending at once, and
/// writes them in one go. The queue is capped (session_options), and every frame counts —
/// live messages, replays and the answers to the client's requests: a session whose
/// transport cannot keep up is closed with error::slow_consumer rather than grow without
/// bound, and its client resumes from its cursor.
///
/// Thread safety: all members are safe to call concurrently.
class session {
public:
    /// Called when the queue goes from empty to non-empty and when the session is closed, on
    /// the publisher's thread and possibly under the channel's lock (so that a fan-out wakes
    /// without extra reference counting). It must not block nor call into the hub: post to
    /// the transport's loop or notify a condition variable.
    /// Move-only; a callable of up to two pointers (a std::weak_ptr) is kept without allocating.
    using wake_function = detail::inline_function;

    session(std::string id, principal who, session_options opts, wake_function wake)
        : opts_(opts), wake_(std::move(wake)), id_(std::move(id)), who_(std::move(who)) {}

    session(const session&) = delete;
    session& operator=(const session&) = delete;

    /// How a session takes part in presence (herald.v2). `none`: not listed (the default);
    /// `member`: listed while subscribed to a channel that carries presence (a herald.v1
    /// WebSocket, which cannot hear `join`/`leave`; a poll, whose session lasts one poll and
    /// whose principal presence_options::linger keeps listed until the next);
    /// `listener`: listed, and hears the channel's `join` and `leave` (herald.v2 WebSocket).
    enum class presence_role : std::uint8_t { none, member, listener };

    /// Set by the transport before the session subscribes (peer::take_part_in_presence).
    void set_presence_role(presence_role r) noexcept { role_.store(r, std::memory_order_relaxed); }
    presence_role presence() const noexcept { return role_.load(std::memory_order_relaxed); }

    const std::string& id() const noexcept { return id_; }
    const herald::principal& who() const noexcept { return who_; }

    /// Moves every queued frame to the end of `out`, oldest first.
    /// @returns false once the session is closed (nothing more will come).
    bool take(std::vector<frame_ptr>& out) {
        std::lock_guard<detail::spin_lock> lock(mu_);
        if (out.empty()) out.swap(queue_);
        else { out.insert(out.end(), queue_.begin(), queue_.end()); queue_.clear(); }
        queued_bytes_ = 0;
        return !closed_;
    }

    /// Gives the queue's storage back when nothing waits. take() swaps storage with the
    /// transport's batch, so a session keeps a buffer after its last message: a transport
    /// calls this now and then (once a second), so that an idle client keeps none.
    void trim() {
        std::vector<frame_ptr> spare;  // freed after the lock
        std::lock_guard<detail::spin_lock> lock(mu_);
        if (queue_.empty()) spare.swap(queue_);
    }

    /// Why the session closed (empty while open). error::slow_consumer after an overflow.
    std::error_code close_reason() const {
        std::lock_guard<detail::spin_lock> lock(mu_);
        return reason_;
    }
    bool closed() const {
        std::lock_guard<detail::spin_lock> lock(mu_);
        return closed_;
    }
    std::size_t queued_messages() const {
        std::lock_guard<detail::spin_lock> lock(mu_);
        return queue_.size();
    }
    std::size_t queued_bytes() const {
        std::lock_guard<detail::spin_lock> lock(mu_);
        return queued_bytes_;
    }
    /// Subscribes of this session whose answer is still to come (a remote backplane is
    /// reading the channel). A transport that answers with "what is there now" (a long-poll
    /// with `timeout: 0`) waits until it is 0: the session is woken when it gets there.
    std::size_t joining() const noexcept { return joining_.load(std::memory_order_acquire); }
    /// Channels this session follows now.
    std::vector<std::string> channels() const {
        std::lock_guard<detail::spin_lock> lock(mu_);
        return {channels_.begin(), channels_.end()};
    }

    /// Queues one frame. @returns false when the session is closed, or closes now because
    /// the frame would pass a cap (the hub then drops the session from its channels).
    bool push(frame_ptr f) {
        bool queued;
        {
            std::lock_guard<detail::spin_lock> lock(mu_);
            if (closed_) return false;
            queued = queue_.size() < opts_.max_queued_messages &&
                     queued_bytes_ + f->text.size() <= opts_.max_queued_bytes;
            if (queued) {
                const bool was_empty = queue_.empty();
                queued_bytes_ += f->text.size();
                queue_.push_back(std::move(f));
                if (!was_empty) return true;  // the consumer was woken already
            } else {
                close_locked(error::slow_consumer);
            }
        }
        if (wake_) wake_();
        return queued;
    }

    /// Queues `frames`, in order, if all of them fit under the caps; otherwise queues none and
    /// leaves the session open (the hub then answers something smaller). @returns whether
    /// they were queued (false too when the session is closed).
    bool push_all(std::vector<frame_ptr>& frames) {
        {
            std::lock_guard<detail::spin_lock> lock(mu_);
            if (closed_) return false;
            std::size_t bytes = 0;
            for (const frame_ptr& f : frames) bytes += f->text.size();
            if (queue_.size() + frames.size() > opts_.max_queued_messages || queued_bytes_ + bytes > opts_.max_queued_bytes)
                return false;
            const bool was_empty = queue_.empty();
            queued_bytes_ += bytes;
            queue_.insert(queue_.end(), std::make_move_iterator(frames.begin()), std::make_move_iterator(frames.end()));
            frames.clear();
            if (!was_empty) return true;
        }
        if (wake_) wake_();
        return true;
    }

    /// Closes the session: nothing more is queued; frames already queued can still be taken.
    /// @returns false when it was already closed.
    bool close(std::error_code reason = {}) {
        {
            std::lock_guard<detail::spin_lock> lock(mu_);
            if (closed_) return false;
            close_locked(reason);
        }
        if (wake_) wake_();
        return true;
    }

private:
    friend class hub;

    void close_locked(std::error_code reason) {
        closed_ = true;
        reason_ = reason;
        if (reason == error::slow_consumer) {
            queue_.clear();  // what it had not taken, it will get again on resume
            queued_bytes_ = 0;
        }
    }

    // Subscribes under way, counted by the hub around the backplane's fetch.
    void begin_join() noexcept { joining_.fetch_add(1, std::memory_order_acq_rel); }
    void end_join() {
        if (joining_.fetch_sub(1, std::memory_order_acq_rel) == 1 && wake_) wake_();
    }

    // Channel bookkeeping, used by the hub only.
    bool add_channel(const std::string& c, std::error_code& ec) {
        std::lock_guard<detail::spin_lock> lock(mu_);
        if (closed_) { ec = error::session_closed; return false; }
        auto at = std::lower_bound(channels_.begin(), channels_.end(), c);
        if (at != channels_.end() && *at == c) return false;
        if (channels_.size() >= opts_.max_subscriptions) { ec = error::too_many_subscriptions; return false; }
        channels_.insert(at, c);
        return true;
    }
    bool remove_channel(const std::string& c) {
        std::lock_guard<detail::spin_lock> lock(mu_);
        auto at = std::lower_bound(channels_.begin(), channels_.end(), c);
        if (at == channels_.end() || *at != c) return false;
        channels_.erase(at);
        if (channels_.empty()) channels_.shrink_to_fit();
        return true;
    }
    std::vector<std::string> drop_channels() {
        std::lock_guard<detail::spin_lock> lock(mu_);
        std::vector<std::string> out;
        out.swap(channels_);
        return out;
    }

    // What every push and take touches comes first, together (the hub pushes into thousands
    // of sessions per publish; each cache line more is a miss more).
    mutable detail::spin_lock mu_;
    std::vector<frame_ptr> queue_;
    std::size_t queued_bytes_ = 0;
    bool closed_ = false;
    const session_options opts_;
    const wake_function wake_;

    const std::string id_;
    const herald::principal who_;
    std::error_code reason_;
    // Sorted. A vector, not a hash set: most sessions follow a few channels, and a hash set
    // cost ~150 bytes (its bucket array, a node per name) per idle client.
    std::vector<std::string> channels_;
    std::atomic<bool> slow_counted_{false}, closed_counted_{false};  // hub statistics, counted once
    // Beside the flags above rather than after joining_: 16 bytes less per session (the
    // allocation falls to a smaller malloc size class).
    std::atomic<presence_role> role_{presence_role::none};
    std::atomic<std::size_t> joining_{0};
};

using session_ptr = std::shared_ptr<session>;

namespace detail {
/// A hint that `s` is about to be pushed to: loads the lines a push touches.
inline void prefetch_for_write(const session* s) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(s, 1);
    __builtin_prefetch(reinterpret_cast<const char*>(s) + 64, 1);
#else
    (void)s;
#endif
}
} // namespace detail

} // namespace herald
