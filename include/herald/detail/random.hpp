// herald — identifiers: epochs and session ids.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>

namespace herald::detail {

inline std::uint64_t mix64(std::uint64_t x) noexcept {  // splitmix64 finalizer
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/// A 64-bit value unlikely to repeat across processes and restarts: random seed, clock, counter.
inline std::uint64_t unique64() {
    static const std::uint64_t seed = [] {
        std::random_device rd;
        return (std::uint64_t(rd()) << 32) ^ rd();
    }();
    static std::atomic<std::uint64_t> counter{0};
    const auto now = static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
    return mix64(seed ^ mix64(now) ^ mix64(counter.fetch_add(1, std::memory_order_relaxed) + 0x51ed27));
}

/// 13 base-36 characters (fits the small-string buffer, needs no JSON escaping).
inline std::string base36(std::uint64_t v) {
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    std::string s(13, '0');
    for (int i = 12; i >= 0; --i) { s[static_cast<std::size_t>(i)] = digits[v % 36]; v /= 36; }
    return s;
}

inline std::string make_epoch() { return base36(unique64()); }
inline std::string make_session_id() { return base36(unique64()); }

} // namespace herald::detail
