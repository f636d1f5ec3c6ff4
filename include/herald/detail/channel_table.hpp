// herald — the hub's channels: each one's state and lock, in a sharded table.
#pragma once

#include <herald/frame.hpp>
#include <herald/options.hpp>
#include <herald/session.hpp>
#include <herald/detail/history.hpp>
#include <herald/detail/name_table.hpp>
#include <herald/detail/random.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace herald::detail {

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

// What a channel needs only while a subscribe waits for its fetch or a repair runs. Most
// channels never need it (and a subscribe is over in a moment), so it is allocated when one
// begins and freed by hub::settle once none runs: ~60 bytes less in every idle channel.
struct channel_recovery {
    std::vector<pending_subscriber> recovering;
    // Remote ordering: a gap or another epoch in the live stream stops it until a re-fetch
    // from {epoch, head} fills it (or tells the subscribers `recovered: false`).
    bool repairing = false;
    std::uint64_t repair_token = 0;
    std::size_t repair_from = 0;  // held[repair_from..] came after the repair's fetch began
    // Every message that came while someone recovers or a repair runs, in arrival order.
    std::vector<frame_ptr> held;
};

struct channel_state {
    channel_state(std::string_view n, std::uint64_t h, std::string first_epoch, const history_options& o,
                  history_budget* budget, bool ordered_here)
        : hash(h), known(ordered_here), epoch(std::move(first_epoch)), log(o, budget) {
        if (n.size() <= sizeof short_name_) {
            std::memcpy(short_name_, n.data(), n.size());
            name = std::string_view(short_name_, n.size());
        } else {
            char* p = new char[n.size()];
            std::memcpy(p, n.data(), n.size());
            name = std::string_view(p, n.size());
        }
    }
    // A long name is owned through `name` itself rather than a pointer of its own: a channel
    // per idle client makes every byte here one per connection.
    ~channel_state() {
        if (name.data() != short_name_) delete[] name.data();
    }
    channel_state(const channel_state&) = delete;
    channel_state& operator=(const channel_state&) = delete;

    /// The recovery state, allocated if need be.
    channel_recovery& recovery() {
        if (!rec) rec = std::make_unique<channel_recovery>();
        return *rec;
    }
    bool recovering() const noexcept { return rec && !rec->recovering.empty(); }
    bool repairing() const noexcept { return rec && rec->repairing; }

    // A lookup compares the name: it is kept inside the state (when it is not long), next
    // to the lock the publish takes next, rather than behind a pointer in another line.
    std::mutex mu;
    const std::uint64_t hash;  // of name
    std::string_view name;     // in short_name_, or (a longer one) allocated
    char short_name_[48];
    bool dead = false;  // swept: look the channel up again
    // {epoch, head}: the last message given to the live subscribers. With a remote backplane
    // it is `known` only while someone follows the channel here; it is set by a fetch, then
    // advanced by each contiguous message.
    bool known;
    std::string epoch;
    std::uint64_t head = 0;
    history log;  // local ordering only: a remote backplane keeps the history
    std::vector<subscriber> subs;
    std::unique_ptr<channel_recovery> rec;  // null while no subscribe waits and no repair runs
    // Counted under the channel's lock, summed by stats(): a hub-wide atomic would be a
    // cache line that every publishing core writes, twice per publish.
    std::uint64_t published = 0, deliveries = 0;
};

// Channels are spread over shards so that finding one rarely waits for another thread.
struct alignas(64) shard {
    mutable std::shared_mutex mu;
    name_table<channel_state> map;
    std::uint64_t swept_published = 0, swept_deliveries = 0;  // counts of forgotten channels
    // How many published streams were forgotten, per slot of names (by hash): a channel's
    // epoch is derived from its slot's count, so that a stream that never held a message
    // comes back under the same epoch after it is forgotten (see channel_table::epoch_of).
    std::array<std::uint32_t, 256> forgotten_streams{};
};

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

/// Every channel the hub holds, by name. A channel is created by its first acquire() and
/// forgotten by sweep() once it has neither history nor subscribers.
class channel_table {
public:
    /// `ordered_here`: Backplane::orders_locally (a new channel's position is then known).
    /// `max_history_bytes`: what all the channels' histories may keep together.
    channel_table(history_options history, std::size_t max_history_bytes, bool ordered_here)
        : history_(history), ordered_here_(ordered_here), budget_(max_history_bytes) {}

    /// Bytes of history kept now, over every channel.
    std::size_t history_bytes() const noexcept { return budget_.used.load(std::memory_order_relaxed); }

    /// The channel's state, created if need be, locked.
    locked_channel acquire(std::string_view channel) { return lock_channel(channel, true); }
    /// The channel's state if it exists, locked; empty otherwise.
    locked_channel find(std::string_view channel) { return lock_channel(channel, false); }

    /// Expires old history and forgets channels with neither history nor subscribers.
    void sweep(std::chrono::steady_clock::time_point now) {
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
                if (ch.subs.empty() && !ch.recovering() && !ch.repairing() && ch.log.empty()) {
                    ch.dead = true;
                    // Messages were given in this epoch: whoever saw them must be told, when
                    // it resumes, that the stream they belonged to is gone.
                    if (ch.head != 0) ++sh.forgotten_streams[ch.hash % sh.forgotten_streams.size()];
                    sh.swept_published += ch.published;
                    sh.swept_deliveries += ch.deliveries;
                    forgotten.push_back(state);
                }
            });
            // Erased after the walk; `forgotten` keeps each state alive until its lock is released.
            for (const auto& ch : forgotten) sh.map.erase(ch->name, ch->hash);
        }
    }

    /// Adds the channels held now, their subscribers now, and the messages published and
    /// delivered in them (forgotten channels included), to the counts.
    void count(std::uint64_t& channels, std::uint64_t& subscriptions, std::uint64_t& published,
               std::uint64_t& deliveries) const {
        for (auto& sh : shards_) {
            std::shared_lock<std::shared_mutex> lock(sh.mu);
            channels += sh.map.size();
            published += sh.swept_published;
            deliveries += sh.swept_deliveries;
            sh.map.for_each([&](const std::shared_ptr<channel_state>& ch) {
                std::lock_guard<std::mutex> lock(ch->mu);
                for (const subscriber& x : ch->subs) subscriptions += x.s->closed() ? 0 : 1;
                if (ch->rec) subscriptions += ch->rec->recovering.size();
                published += ch->published;
                deliveries += ch->deliveries;
            });
        }
    }

private:
    // The table inside a shard indexes by the hash's low bits; the shard is chosen by high ones.
    shard& shard_for(std::uint64_t hash) { return shards_[(hash >> 48) % shards_.size()]; }

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
                else ch = sh.map.insert(hash, std::make_shared<channel_state>(channel, hash, epoch_of(sh, hash), history_,
                                                                              &budget_, ordered_here_));
            }
            std::unique_lock<std::mutex> lock(ch->mu);
            if (!ch->dead) {
                channel_state* raw = ch.get();
                return {raw, std::move(ch), std::move(lock)};
            }
        }
    }

    // A new channel's epoch. A stream that was forgotten without ever holding a message lost
    // nothing, so it comes back under the same epoch: a page that read the head of a quiet
    // channel ({epoch, 0}) and subscribes after a sweep (or resumes after a blip, the channel
    // forgotten meanwhile) is not told to resync for nothing. A stream that held messages
    // gets another epoch when it comes back (its slot's count moved on). Slots are shared by
    // names: a collision costs a needless resync, never a missed message. A restart draws a
    // new `boot_`: every epoch changes.
    std::string epoch_of(const shard& sh, std::uint64_t hash) const {
        const std::uint32_t n = sh.forgotten_streams[hash % sh.forgotten_streams.size()];
        return base36(boot_ ^ mix64(hash ^ mix64(n)));
    }

    const history_options history_;
    const bool ordered_here_;
    const std::uint64_t boot_ = unique64();
    history_budget budget_;  // before shards_: the channels' histories give it back as they go
    std::array<shard, 64> shards_;
};

} // namespace herald::detail
