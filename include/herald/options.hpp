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
/// when there are more than `max_messages` newer ones, when it is older than `max_age`, or
/// when the channel's history passes `max_bytes`; the channel's epoch survives as long as the
/// channel has history or subscribers, and for as long as the process runs if it never held a
/// message. A resume from a message the history no longer holds gets `subscribed` with
/// `recovered: false` (the client refetches).
///
/// A replay goes through the subscriber's queue like any frame, so a channel's whole history
/// must fit a fresh session: keep `max_messages` below session_options::max_queued_messages
/// and `max_bytes` below session_options::max_queued_bytes (the defaults: 1000 < 4096 and
/// 1 MiB < 4 MiB). A replay that does not fit the session's queue (several resumes at once,
/// unread) is not sent: the answer is `subscribed` with `recovered: false` at the head.
struct history_options {
    /// Messages kept per channel.
    std::size_t max_messages = 1000;
    /// Age past which a message leaves the history (checked at append, resume and sweep).
    std::chrono::milliseconds max_age = std::chrono::minutes(5);
    /// Bytes kept per channel, counting each message frame's wire text (payload + ~100 bytes
    /// of envelope). The oldest messages go first. Local backplane only: Redis trims by
    /// count and age.
    std::size_t max_bytes = 1024 * 1024;
};

/// Limits of one session (one client connection, on any transport).
struct session_options {
    /// Outbound queue caps, in frames and in bytes of wire text: past either, the session is
    /// closed with error::slow_consumer (WebSocket close code 4008) and its queue is dropped;
    /// the client resumes from its cursor. Everything
    /// queued counts: live messages, replays on resume, and the answers to the client's
    /// requests (`subscribed`, `unsubscribed`, `error`), so a client that sends requests and
    /// never reads is closed instead of growing memory.
    std::size_t max_queued_messages = 4096;
    std::size_t max_queued_bytes = 4 * 1024 * 1024;
    /// Channels one session may follow at once (error::too_many_subscriptions past it).
    std::size_t max_subscriptions = 512;
    /// How long before its credentials expire (principal::expires) a session is sent a
    /// `refresh` frame asking for new ones; half their remaining life, when that is shorter.
    std::chrono::milliseconds refresh_before = std::chrono::seconds(60);
};

/// Presence ("who else is here", herald.v2): its bounds, and how a remote backplane (Redis)
/// keeps the members of every server alive. The memory presence may take is bounded by
/// `max_members` × (the principal's id + `max_info_bytes`) per channel, on this server and in
/// Redis alike.
struct presence_options {
    /// Members (distinct principals) one channel lists: a principal that would be one more
    /// is not listed (its sessions are still served; no `join` is sent for it).
    std::size_t max_members = 1000;
    /// Largest principal::presence_info, in bytes of JSON text: larger (or not one JSON value)
    /// is replaced by null, with a warning in the log.
    std::size_t max_info_bytes = 512;
    /// How long a member stays listed after its last session here ended, before its `leave`
    /// is told: a page that reconnects (a network blip, a tab taking over the shared
    /// connection, a long-poll client between two polls) comes back within it, and nobody
    /// sees it leave and join again. The leave is told by hub::sweep(), which a server calls
    /// once a second: `linger` to `linger` + 1 s after the last session. 0: at once.
    std::chrono::milliseconds linger = std::chrono::seconds(5);
    /// Remote backplane: a server's entries live this long in Redis unless refreshed. A server
    /// killed without a goodbye drops out of every channel within `ttl` + `sweep_interval`
    /// (10 s + 2 s by default: the bound stated in backplanes/redis/README.md).
    std::chrono::milliseconds ttl = std::chrono::seconds(10);
    /// Remote backplane: how often a server renews its entries (well under `ttl`).
    std::chrono::milliseconds refresh_interval = std::chrono::seconds(3);
    /// Remote backplane: how often a server looks for expired entries in the channels it has
    /// members in, and announces their `leave`.
    std::chrono::milliseconds sweep_interval = std::chrono::seconds(2);
};

/// Options of a hub (hub::hub); servers pass theirs on. The defaults suit one server.
struct hub_options {
    /// How much of each channel's past is kept for resume (local backplane; Redis applies its
    /// count and age).
    history_options history;
    /// Bytes of history the hub keeps over all its channels (local backplane), counted as
    /// history_options::max_bytes. A channel whose append would pass it drops its own oldest
    /// messages first; when it has none left, the new message is delivered live but not kept
    /// (a resume that needed it gets `recovered: false`). Age, sweep and the per-channel bounds
    /// free room again. hub_stats::history_bytes reports the count.
    std::size_t max_history_bytes = 64 * 1024 * 1024;
    /// Limits of every session the hub opens.
    session_options session;
    /// Subscriptions one signed-in principal (a non-empty principal::id) may hold over all its
    /// sessions at once: past it, error::too_many_subscriptions, as for one session's cap.
    /// Anonymous clients are bounded per connection and by connections per address instead
    /// (a shared anonymous quota would let one page starve every other).
    std::size_t max_subscriptions_per_principal = 4096;
    /// Presence: its bounds, and its timing on a remote backplane.
    presence_options presence;
    /// Largest `data` accepted by publish, in bytes (error::payload_too_large past it).
    std::size_t max_payload_bytes = 64 * 1024;
    /// How long the blocking publish() waits for an asynchronous backplane to order a message.
    std::chrono::milliseconds publish_timeout = std::chrono::seconds(5);
    /// Receives the hub's and the backplane's log lines; empty: nothing is logged.
    log_function log = log_to_stderr;
};

} // namespace herald
