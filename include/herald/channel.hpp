// herald — channel names.
#pragma once

#include <herald/error.hpp>

#include <cstddef>
#include <string_view>
#include <system_error>

namespace herald {

/// Longest channel name accepted, in bytes.
inline constexpr std::size_t max_channel_length = 200;

/// Checks a channel name. A valid name is 1..max_channel_length bytes of `[A-Za-z0-9_:-]`,
/// in dot-separated segments none of which is empty: `projects`, `project.42.items`,
/// `user.alice.notifications`. Names are case-sensitive. Because no valid name needs JSON
/// escaping, frames embed them verbatim.
/// @returns `error::invalid_channel` or an empty code.
inline std::error_code validate_channel(std::string_view name) noexcept {
    if (name.empty() || name.size() > max_channel_length) return error::invalid_channel;
    bool segment_empty = true;
    for (char c : name) {
        if (c == '.') {
            if (segment_empty) return error::invalid_channel;
            segment_empty = true;
            continue;
        }
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '_' || c == '-' || c == ':';
        if (!ok) return error::invalid_channel;
        segment_empty = false;
    }
    if (segment_empty) return error::invalid_channel;
    return {};
}

/// True when `validate_channel(name)` reports no error.
inline bool is_valid_channel(std::string_view name) noexcept { return !validate_channel(name); }

} // namespace herald
