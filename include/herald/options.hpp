// herald — options of the hub and its sessions.
#pragma once

#include <chrono>
#include <cstddef>

namespace herald {

/// How much of each channel's past the hub keeps for resume. A message leaves the history
/// when there are more than `max_messages` newer ones, or when it is older than `max_age`;
/// the channel's epoch survives as long as the channel has history or subscribers.
struct history_options {
    std::size_t max_messages = 1000;
    std::chrono::milliseconds max_age = std::chrono::minutes(5);
};

/// Limits of one session (one client connection, on any transport).
struct session_options {
    /// Outbound queue caps: past either, the session is closed with error::slow_consumer
    /// (WebSocket close code 4008); the client resumes from its cursor.
    std::size_t max_queued_messages = 4096;
    std::size_t max_queued_bytes = 4 * 1024 * 1024;
    /// Channels one session may follow at once (error::too_many_subscriptions past it).
    std::size_t max_subscriptions = 512;
};

struct hub_options {
    history_options history;
    session_options session;
    /// Largest `data` accepted by publish, in bytes (error::payload_too_large past it).
    std::size_t max_payload_bytes = 64 * 1024;
    /// How long the blocking publish() waits for an asynchronous backplane to order a message.
    std::chrono::milliseconds publish_timeout = std::chrono::seconds(5);
};

} // namespace herald
