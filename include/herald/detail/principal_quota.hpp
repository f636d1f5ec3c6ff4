// herald — subscriptions counted per signed-in principal, over all of its sessions.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

namespace herald::detail {

/// How many subscriptions each principal holds on a hub, against one cap
/// (hub_options::max_subscriptions_per_principal): a signed-in user who opens many
/// connections cannot multiply session_options::max_subscriptions by them. Entries go when
/// they reach zero, so memory follows the principals that hold subscriptions now.
/// Thread safety: all members are safe to call concurrently.
class principal_quota {
public:
    explicit principal_quota(std::size_t max) : max_(max) {}

    /// Takes one place for `id`. @returns false when `id` holds `max` already.
    bool take(const std::string& id) {
        std::lock_guard<std::mutex> lock(mu_);
        std::size_t& n = held_[id];
        if (n >= max_) {
            if (n == 0) held_.erase(id);
            return false;
        }
        ++n;
        return true;
    }

    /// Gives back `count` places taken for `id`.
    void give_back(const std::string& id, std::size_t count = 1) {
        if (count == 0) return;
        std::lock_guard<std::mutex> lock(mu_);
        auto it = held_.find(id);
        if (it == held_.end()) return;
        it->second = it->second > count ? it->second - count : 0;
        if (it->second == 0) held_.erase(it);
    }

    /// Places `id` holds now.
    std::size_t held(const std::string& id) const {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = held_.find(id);
        return it == held_.end() ? 0 : it->second;
    }

private:
    const std::size_t max_;
    mutable std::mutex mu_;
    std::unordered_map<std::string, std::size_t> held_;
};

} // namespace herald::detail
