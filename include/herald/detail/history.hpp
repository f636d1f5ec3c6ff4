// herald — a channel's recent past, bounded by count, by age and by bytes (the hub's, internal).
#pragma once

#include <herald/frame.hpp>
#include <herald/options.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

namespace herald::detail {

/// The bytes of history a whole hub keeps (hub_options::max_history_bytes), shared by its
/// channels' histories. Each history adds what it keeps and subtracts what it drops.
struct history_budget {
    explicit history_budget(std::size_t max = std::numeric_limits<std::size_t>::max()) : max(max) {}
    const std::size_t max;
    std::atomic<std::size_t> used{0};
};

/// The message frames of one channel with consecutive offsets, oldest first. Not
/// thread-safe: the hub guards each channel's history with that channel's lock.
class history {
public:
    /// `opts` is referred to, not copied (a hub's channels share their table's): it must
    /// outlive the history.
    explicit history(const history_options& opts, history_budget* budget = nullptr) : opts_(&opts), budget_(budget) {}
    history(history_options&&, history_budget* = nullptr) = delete;  // it would dangle
    ~history() { clear(); }
    history(const history&) = delete;
    history& operator=(const history&) = delete;

    /// Appends a frame whose offset is one past the last; a frame that leaves a gap (an
    /// offset the backplane skipped) starts the history anew, so that it stays contiguous.
    /// Then drops the oldest messages past max_messages, max_bytes and the hub's budget: when
    /// the budget is spent by other channels, this one drops its own messages, the new one
    /// included (the history is then empty and a resume gets recovered: false).
    void append(frame_ptr f, std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
        if (!entries_.empty() && f->pos.offset != last_ + 1) clear();
        last_ = f->pos.offset;
        const auto created = f->created;
        const std::size_t size = f->text.size();
        entries_.push_back({created, size, std::move(f)});
        bytes_ += size;
        // The per-channel bounds first, without the budget: one atomic operation per append.
        std::size_t dropped = 0;
        while (entries_.size() > opts_->max_messages || bytes_ > opts_->max_bytes) dropped += drop_front();
        if (!budget_) return expire(now);
        const std::size_t delta = size - dropped;  // modulo arithmetic: `dropped` may be larger
        if (budget_->used.fetch_add(delta, std::memory_order_relaxed) + delta > budget_->max)
            while (!entries_.empty() && budget_->used.load(std::memory_order_relaxed) > budget_->max) pop_front();
        expire(now);
    }

    /// Drops messages older than max_age.
    void expire(std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
        while (!entries_.empty() && now - entries_.front().created > opts_->max_age) pop_front();
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
        for (std::size_t i = first; i < entries_.size(); ++i) out.push_back(entries_[i].frame);
        return true;
    }

    bool empty() const noexcept { return entries_.empty(); }
    std::size_t size() const noexcept { return entries_.size(); }
    /// Bytes kept: the wire text of the frames held.
    std::size_t bytes() const noexcept { return bytes_; }
    const history_options& options() const noexcept { return *opts_; }

private:
    // Offsets, ages and sizes are kept here, beside the pointers, so that appending and
    // expiring never read the frames themselves: in a hub with many channels the oldest
    // frames are long out of the cache, and reading them was most of the cost of a publish.
    struct entry {
        std::chrono::steady_clock::time_point created;
        std::size_t size;
        frame_ptr frame;
    };

    // The entries, oldest first, in a ring that grows by doubling and is given back once
    // empty. A std::deque allocates ~600 bytes (its map and a first block) when the history
    // is created, before any message: a hub with a personal channel per client (10k idle
    // clients) paid that per client for histories that were empty.
    class ring {
    public:
        ring() = default;
        ring(const ring&) = delete;
        ring& operator=(const ring&) = delete;
        ~ring() { clear(); }

        bool empty() const noexcept { return size_ == 0; }
        std::size_t size() const noexcept { return size_; }
        entry& front() noexcept { return slots_[head_]; }
        const entry& operator[](std::size_t i) const noexcept { return slots_[(head_ + i) & (cap_ - 1)]; }

        void push_back(entry e) {
            if (size_ == cap_) grow();
            slots_[(head_ + size_) & (cap_ - 1)] = std::move(e);
            ++size_;
        }
        void pop_front() {
            slots_[head_].frame.reset();
            head_ = (head_ + 1) & (cap_ - 1);
            if (--size_ == 0) release();
        }
        void clear() {
            for (std::size_t i = 0; i < size_; ++i) slots_[(head_ + i) & (cap_ - 1)].frame.reset();
            size_ = 0;
            release();
        }

    private:
        void grow() {
            const std::uint32_t cap = cap_ ? 2 * cap_ : 4;
            std::unique_ptr<entry[]> slots(new entry[cap]);
            for (std::size_t i = 0; i < size_; ++i) slots[i] = std::move(slots_[(head_ + i) & (cap_ - 1)]);
            slots_ = std::move(slots);
            cap_ = cap;
            head_ = 0;
        }
        void release() noexcept {
            slots_.reset();
            cap_ = head_ = 0;
        }

        // 32-bit counts (2^31 entries would be tens of gigabytes): 8 bytes less in each
        // channel, with a channel per idle client.
        std::unique_ptr<entry[]> slots_;
        std::uint32_t cap_ = 0;  // a power of two (or 0: nothing allocated)
        std::uint32_t head_ = 0, size_ = 0;
    };

    // Drops the oldest entry from this history's count only. @returns its size.
    std::size_t drop_front() {
        const std::size_t size = entries_.front().size;
        bytes_ -= size;
        entries_.pop_front();
        return size;
    }
    void pop_front() {
        const std::size_t size = drop_front();
        if (budget_) budget_->used.fetch_sub(size, std::memory_order_relaxed);
    }
    void clear() {
        if (budget_) budget_->used.fetch_sub(bytes_, std::memory_order_relaxed);
        bytes_ = 0;
        entries_.clear();
    }

    std::uint64_t first_offset() const noexcept { return last_ + 1 - entries_.size(); }

    // A pointer, not a copy: 16 bytes less in each channel (a hub with a channel per idle
    // client holds one per connection).
    const history_options* opts_;
    history_budget* budget_;
    ring entries_;
    std::size_t bytes_ = 0;
    std::uint64_t last_ = 0;  // offset of the newest entry, when there is one
};

} // namespace herald::detail
