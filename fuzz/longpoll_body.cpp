// herald-fuzz-longpoll-body: a long-poll body, parsed as the long-poll transport parses it
// (herald::protocol::parse_poll). Checks: no crash, no hang, and
//  - the timeout is within [0, the longest hold], whatever number was sent;
//  - a channel has a cursor or an error, not both; a failed parse returns no channel and says why.
#include <herald/protocol.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    constexpr std::chrono::milliseconds max_hold{25000};  // longpoll::options::max_hold
    std::error_code ec;
    const herald::protocol::poll_request p = herald::protocol::parse_poll(body, ec, max_hold);
    if (ec) {
        if (!p.channels.empty() || p.problem.empty()) __builtin_trap();
        return 0;
    }
    if (p.timeout && (p.timeout->count() < 0 || *p.timeout > max_hold)) __builtin_trap();
    for (const auto& c : p.channels)
        if (c.since && c.error) __builtin_trap();
    return 0;
}
