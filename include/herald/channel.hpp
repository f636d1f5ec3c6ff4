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
    // One table look-up per byte: this runs on every publish.
    struct table {
        bool ok[256] = {};
        constexpr table() {
            for (int c = 'a'; c <= 'z'; ++c) ok[c] = true;
            for (int c = 'A'; c <= 'Z'; ++c) ok[c] = true;
            for (int c = '0'; c <= '9'; ++c) ok[c] = true;
            ok[static_cast<unsigned char>('_')] = ok[static_cast<unsigned char>('-')] = ok[static_cast<unsigned char>(':')] = true;
        }
    };
    static constexpr table name_chars;
    if (name.empty() || name.size() > max_channel_length) return error::invalid_channel;
    bool segment_empty = true;
    for (char c : name) {
        if (c == '.') {
            if (segment_empty) return error::invalid_channel;
            segment_empty = true;
        } else if (name_chars.ok[static_cast<unsigned char>(c)]) {
            segment_empty = false;
        } else {
            return error::invalid_channel;
        }
    }
    if (segment_empty) return error::invalid_channel;
    return {};
}

/// True when `validate_channel(name)` reports no error.
inline bool is_valid_channel(std::string_view name) noexcept { return !validate_channel(name); }

} // namespace herald
