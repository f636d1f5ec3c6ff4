// herald — positions in a channel's stream, and the frames sessions receive.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

namespace herald {

namespace protocol::detail {
struct frame_access;
} // namespace protocol::detail

/// A place in one channel's stream: the history stream it belongs to (`epoch`) and the
/// offset of the last message seen in it (0: before the first). Clients keep one per
/// channel and send it back to resume.
struct position {
    std::string epoch;
    std::uint64_t offset = 0;

    friend bool operator==(const position& a, const position& b) {
        return a.offset == b.offset && a.epoch == b.epoch;
    }
    friend bool operator!=(const position& a, const position& b) { return !(a == b); }
};

/// What a frame is. Text frames of herald.v1 carry the same names in their `type` field.
enum class frame_type : std::uint8_t {
    message,      ///< a published message (channel, position, data)
    subscribed,   ///< subscribe accepted: position is the channel head, `recovered` tells resume
    unsubscribed, ///< unsubscribe done
    published,    ///< acknowledgement of a client's publish: position of the message
    error,        ///< a request failed: `code`, optional channel, `data` is a readable text
    welcome,      ///< first frame of a connection
    ping,         ///< heartbeat
    reconnect,    ///< the server is draining: reconnect after `retry_after`
    refresh,      ///< the session's credentials expire soon: send new ones (`retry_after`: in how long)
    refreshed,    ///< answer to a client's refresh: the new credentials were taken
    presence,     ///< herald.v2: answer to a client's presence request, a channel's members
    join,         ///< herald.v2: a principal joined a channel's presence
    leave,        ///< herald.v2: a principal left a channel's presence
};

/// One outbound frame, immutable once made. A message frame is built once per publish and
/// shared, by pointer, by the channel history and every subscriber's queue; remote transports
/// write `text` as is, in-process consumers read the decoded fields.
struct frame {
    frame_type type = frame_type::message;
    std::string text;        ///< herald.v1 JSON encoding
    std::string channel;     ///< empty for connection-level frames
    position pos;            ///< message: its own; subscribed: channel head; published: the new message's
    bool recovered = true;   ///< subscribed: false when the requested resume could not be served
    std::error_code code;    ///< error: what failed
    std::uint64_t request_id = 0; ///< the client's `id`, echoed (0: none)
    std::chrono::milliseconds retry_after{0}; ///< reconnect: how long to wait
    std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now();

    /// message: the publisher's JSON; error: the readable message. A view into `text`.
    std::string_view data() const noexcept { return std::string_view(text).substr(data_at_, data_len_); }

private:
    friend struct protocol::detail::frame_access;  // the encoder, which knows where it wrote data
    std::size_t data_at_ = 0, data_len_ = 0;       // where data() lies in text
};

using frame_ptr = std::shared_ptr<const frame>;

} // namespace herald
