// herald — options of the hub and its sessions.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <string_view>

namespace herald {

/// How much a log line matters.
enum class log_level { debug, info, warning, error };

/// Where herald's log lines go: the hub and its backplane report through it (a Redis that
/// went away, a channel whose history was lost). Called from any thread (the backplane's
/// included), never under a channel's lock; it must not block for long.
using log_function = std::function<void(log_level, std::string_view)>;

/// The default log_function: warnings and errors to stderr, one line each.
inline void log_to_stderr(log_level level, std::string_view text) {
    if (level < log_level::warning) return;
    std::fprintf(stderr, "herald %s: %.*s\n", level == log_level::error ? "error" : "warning",
                 static_cast<int>(text.size()), text.data());
}

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

/// Options of a hub (hub::hub); servers pass theirs on. The defaults suit one server.
struct hub_options {
    /// How much of each channel's past is kept for resume (local backplane; Redis applies it too).
    history_options history;
    /// Limits of every session the hub opens.
    session_options session;
    /// Largest `data` accepted by publish, in bytes (error::payload_too_large past it).
    std::size_t max_payload_bytes = 64 * 1024;
    /// How long the blocking publish() waits for an asynchronous backplane to order a message.
    std::chrono::milliseconds publish_timeout = std::chrono::seconds(5);
    /// Receives the hub's and the backplane's log lines; empty: nothing is logged.
    log_function log = log_to_stderr;
};

} // namespace herald
