// herald — a channel's recent past, bounded by count and by age.
#pragma once

#include <herald/frame.hpp>
#include <herald/options.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <vector>

namespace herald {

/// The message frames of one channel with consecutive offsets, oldest first. Not
/// thread-safe: the hub guards each channel's history with that channel's lock.
class history {
public:
    explicit history(history_options opts = {}) : opts_(opts) {}

    /// Appends a frame whose offset is one past the last; a frame that leaves a gap (an
    /// offset the backplane skipped) starts the history anew, so that it stays contiguous.
    void append(frame_ptr f, std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
        if (!frames_.empty() && f->pos.offset != frames_.back()->pos.offset + 1) frames_.clear();
        frames_.push_back(std::move(f));
        while (frames_.size() > opts_.max_messages) frames_.pop_front();
        expire(now);
    }

    /// Drops messages older than max_age.
    void expire(std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
        while (!frames_.empty() && now - frames_.front()->created > opts_.max_age) frames_.pop_front();
    }

    /// Appends to `out` every message after `offset`, given that the stream's head is `head`.
    /// @returns false when the history no longer holds all of them (nothing is appended then).
    bool since(std::uint64_t offset, std::uint64_t head, std::vector<frame_ptr>& out,
               std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
        expire(now);
        if (offset >= head) return offset == head;  // nothing missed; ahead of head is not ours
        if (frames_.empty() || frames_.front()->pos.offset > offset + 1) return false;
        if (frames_.back()->pos.offset != head) return false;
        const std::size_t first = static_cast<std::size_t>(offset + 1 - frames_.front()->pos.offset);
        out.insert(out.end(), frames_.begin() + static_cast<std::ptrdiff_t>(first), frames_.end());
        return true;
    }

    bool empty() const noexcept { return frames_.empty(); }
    std::size_t size() const noexcept { return frames_.size(); }
    const history_options& options() const noexcept { return opts_; }

private:
    history_options opts_;
    std::deque<frame_ptr> frames_;
};

} // namespace herald
