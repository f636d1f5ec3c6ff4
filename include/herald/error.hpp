// herald — errors as values, with their own category.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <system_error>

namespace herald {

/// Every failure herald reports. Values are stable: they appear in logs and, by name
/// (`to_wire`), in `error` frames of the herald.v1 protocol.
enum class error {
    invalid_channel = 1,   ///< channel name empty, too long, or with a character outside [A-Za-z0-9_.:-]
    invalid_payload,       ///< published data is not one JSON value
    payload_too_large,     ///< published data exceeds hub_options::max_payload_bytes
    malformed_frame,       ///< client frame is not a JSON object of a known shape
    unknown_frame_type,    ///< client frame has a `type` herald.v1 does not define
    frame_too_large,       ///< client frame exceeds the transport's inbound limit
    unauthenticated,       ///< the authorizer refused the connection
    forbidden,             ///< the authorizer refused this subscribe or publish
    not_subscribed,        ///< unsubscribe from a channel the session does not follow
    too_many_subscriptions,///< session is at session_options::max_subscriptions
    slow_consumer,         ///< outbound queue passed its cap; the session was closed
    session_closed,        ///< operation on a closed session
    backplane_unavailable, ///< the backplane cannot take the publish (e.g. Redis is down)
    shutting_down,         ///< the server is draining; reconnect elsewhere
    timed_out,             ///< an operation did not complete in time
    credentials_expired,   ///< the principal's credentials expired and were not refreshed in time
};

/// One past the largest herald::error value (internal_error, for other categories, is 0).
inline constexpr int error_count = static_cast<int>(error::credentials_expired) + 1;

} // namespace herald

template <> struct std::is_error_code_enum<herald::error> : std::true_type {};

namespace herald {

namespace detail {
class error_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "herald"; }
    std::string message(int ev) const override {
        switch (static_cast<error>(ev)) {
        case error::invalid_channel: return "invalid channel name";
        case error::invalid_payload: return "payload is not valid JSON";
        case error::payload_too_large: return "payload too large";
        case error::malformed_frame: return "malformed frame";
        case error::unknown_frame_type: return "unknown frame type";
        case error::frame_too_large: return "frame too large";
        case error::unauthenticated: return "not authenticated";
        case error::forbidden: return "forbidden";
        case error::not_subscribed: return "not subscribed";
        case error::too_many_subscriptions: return "too many subscriptions";
        case error::slow_consumer: return "slow consumer: outbound queue over its cap";
        case error::session_closed: return "session closed";
        case error::backplane_unavailable: return "backplane unavailable";
        case error::shutting_down: return "server shutting down";
        case error::timed_out: return "timed out";
        case error::credentials_expired: return "credentials expired: sign in again";
        }
        return "unknown herald error";
    }
};
} // namespace detail

/// The category of herald's errors (`name()` is "herald").
inline const std::error_category& error_category() noexcept {
    static const detail::error_category_impl instance;
    return instance;
}

/// Makes an `std::error_code` of herald's category from `e`; found by argument-dependent
/// lookup, so that `std::error_code ec = error::forbidden;` and `ec == error::forbidden` work.
inline std::error_code make_error_code(error e) noexcept {
    return {static_cast<int>(e), error_category()};
}

/// The snake_case name of an error, as it appears in the `code` field of an `error` frame.
inline const char* to_wire(error e) noexcept {
    switch (e) {
    case error::invalid_channel: return "invalid_channel";
    case error::invalid_payload: return "invalid_payload";
    case error::payload_too_large: return "payload_too_large";
    case error::malformed_frame: return "malformed_frame";
    case error::unknown_frame_type: return "unknown_frame_type";
    case error::frame_too_large: return "frame_too_large";
    case error::unauthenticated: return "unauthenticated";
    case error::forbidden: return "forbidden";
    case error::not_subscribed: return "not_subscribed";
    case error::too_many_subscriptions: return "too_many_subscriptions";
    case error::slow_consumer: return "slow_consumer";
    case error::session_closed: return "session_closed";
    case error::backplane_unavailable: return "backplane_unavailable";
    case error::shutting_down: return "shutting_down";
    case error::timed_out: return "timed_out";
    case error::credentials_expired: return "credentials_expired";
    }
    return "internal_error";
}

/// Wire name of any error code: herald's own by name, others as "internal_error".
inline const char* to_wire(const std::error_code& ec) noexcept {
    return ec.category() == error_category() ? to_wire(static_cast<error>(ec.value()))
                                             : "internal_error";
}

namespace detail {
/// `error` frames this process has sent, by code (index: the herald::error value; 0 for
/// codes of other categories, sent as internal_error). Counted by protocol::make_error, the
/// one maker of error frames: refusals, acks and subscribe answers alike. Process-wide.
inline std::array<std::atomic<std::uint64_t>, error_count>& errors_sent() noexcept {
    static std::array<std::atomic<std::uint64_t>, error_count> counts{};
    return counts;
}
} // namespace detail

/// Thrown by the throwing overloads (those without an `std::error_code&` parameter).
class system_error : public std::system_error {
public:
    using std::system_error::system_error;
};

namespace detail {
inline void throw_if(const std::error_code& ec, const char* what) {
    if (ec) throw herald::system_error(ec, what);
}
} // namespace detail

} // namespace herald
