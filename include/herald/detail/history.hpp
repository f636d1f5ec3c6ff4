// herald — a channel's recent past, bounded by count and by age (the hub's, internal).
#pragma once

#include <herald/frame.hpp>
#include <herald/options.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <vector>

namespace herald::detail {

/// The message frames of one channel with consecutive offsets, oldest first. Not
/// thread-safe: the hub guards each channel's history with that channel's lock.
class history {
public:
    explicit history(history_options opts = {}) : opts_(opts) {}

    /// Appends a frame whose offset is one past the last; a frame that leaves a gap (an
    /// offset the backplane skipped) starts the history anew, so that it stays contiguous.
    void append(frame_ptr f, std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
        if (!entries_.empty() && f->pos.offset != last_ + 1) entries_.clear();
        last_ = f->pos.offset;
        const auto created = f->created;
        entries_.push_back({created, std::move(f)});
        while (entries_.size() > opts_.max_messages) entries_.pop_front();
        expire(now);
    }

    /// Drops messages older than max_age.
    void expire(std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
        while (!entries_.empty() && now - entries_.front().created > opts_.max_age) entries_.pop_front();
    }

    /// Appends to `out` every message after `offset`, given that the stream's head is `head`.
    /// @returns false when the history no longer holds all of them (nothing is appended then).
    bool since(std::uint64_t offset, std::uint64_t head, std::vector<frame_ptr>& out,
               std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
        expire(now);
        if (offset >= head) return offset == head;  // nothing missed; ahead of head is not ours
        if (entries_.empty() || first_offset() > offset + 1) return false;
        if (last_ != head) return false;
        const std::size_t first = static_cast<std::size_t>(offset + 1 - first_offset());
        for (auto it = entries_.begin() + static_cast<std::ptrdiff_t>(first); it != entries_.end(); ++it)
            out.push_back(it->frame);
        return true;
    }

    bool empty() const noexcept { return entries_.empty(); }
    std::size_t size() const noexcept { return entries_.size(); }
    const history_options& options() const noexcept { return opts_; }

private:
    // Offsets and ages are kept here, beside the pointers, so that appending and expiring
    // never read the frames themselves: in a hub with many channels the oldest frames are
    // long out of the cache, and reading them was most of the cost of a publish.
    struct entry {
        std::chrono::steady_clock::time_point created;
        frame_ptr frame;
    };

    std::uint64_t first_offset() const noexcept { return last_ + 1 - entries_.size(); }

    history_options opts_;
    std::deque<entry> entries_;
    std::uint64_t last_ = 0;  // offset of the newest entry, when there is one
};

} // namespace herald::detail
