// The baseline of the core benchmark: what a naive in-process pub/sub does, written the
// plain way, with nothing of herald in it.
//
// Per publish: builds the message text once (the same bytes as herald's message frame, so
// both sides copy and free the same sizes; no JSON validation, no history, no per-channel
// offsets: a global counter stands in for the offset), takes the map's mutex, looks the
// channel up by a std::string key, and calls each subscriber's std::function, still
// holding the map's mutex.
// Per delivery: the subscriber's function locks its connection's queue, pushes a copy of
// the message (one allocation + memcpy) and, when the queue was empty, raises the
// connection's ready flag (what a transport's "wake" does).
// Per drain: the consumer swaps the queue out under its lock, reads each message (its size
// and first byte) and frees the copies.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace bench {

/// One subscriber of the naive server: the outbound queue a connection object holds.
struct naive_connection {
    std::mutex mu;
    std::vector<std::string> queue;
    std::atomic<bool> ready{false};
};

class naive_server {
public:
    explicit naive_server(std::string epoch) : epoch_(std::move(epoch)) {}

    void subscribe(const std::string& channel, naive_connection& c) {
        std::lock_guard<std::mutex> lock(mu_);
        subs_[channel].push_back([&c](const std::string& message) {
            bool wake;
            {
                std::lock_guard<std::mutex> queue_lock(c.mu);
                wake = c.queue.empty();
                c.queue.push_back(message);  // the per-connection copy
            }
            if (wake) c.ready.store(true, std::memory_order_release);
        });
    }

    void publish(std::string_view channel, std::string_view data) {
        const std::uint64_t offset = seq_.fetch_add(1, std::memory_order_relaxed) + 1;
        std::string message;
        message.reserve(64 + channel.size() + epoch_.size() + data.size());
        message += "{\"type\":\"message\",\"channel\":\"";
        message += channel;
        message += "\",\"epoch\":\"";
        message += epoch_;
        message += "\",\"offset\":";
        message += std::to_string(offset);
        message += ",\"data\":";
        message += data;
        message += '}';
        std::lock_guard<std::mutex> lock(mu_);
        auto it = subs_.find(std::string(channel));
        if (it == subs_.end()) return;
        for (auto& deliver : it->second) deliver(message);
    }

private:
    const std::string epoch_;
    std::atomic<std::uint64_t> seq_{0};
    std::mutex mu_;
    std::unordered_map<std::string, std::vector<std::function<void(const std::string&)>>> subs_;
};

/// Takes what `c` has queued, reads it, frees it. @returns how many messages it took.
inline std::size_t drain(naive_connection& c, std::vector<std::string>& batch, std::uint64_t& checksum) {
    if (!c.ready.load(std::memory_order_relaxed) || !c.ready.exchange(false, std::memory_order_acquire)) return 0;
    {
        std::lock_guard<std::mutex> lock(c.mu);
        batch.swap(c.queue);
    }
    for (const std::string& m : batch) checksum += m.size() + static_cast<unsigned char>(m[0]);
    const std::size_t n = batch.size();
    batch.clear();
    return n;
}

} // namespace bench
