// herald — one client connection, as a transport sees it: the public half of the transport
// plug-in interface (with transport_context.hpp and transport.hpp beside it).
//
// herald's network host owns the socket, the HTTP/1.1 codec, the write queue and the timers
// (net/detail/tcp_connection.hpp). A transport gets each request it is offered as an
// `http_request` plus the `connection` it came on, and either answers it (respond), keeps it
// open to answer later (hold: a long-poll), or takes the connection over for good (upgrade: a
// WebSocket). From then on the host calls the transport's `stream_handler`; the transport
// writes through the connection. Nothing here names Asio, so a test can drive a transport
// through a connection of its own (tests/support/test_connection.hpp).
#pragma once

#include <herald/frame.hpp>
#include <herald/session.hpp>
#include <herald/net/http.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace herald::net {

using clock = std::chrono::steady_clock;

/// How often the network host ticks every connection (stream_handler::on_tick): deadlines
/// and heartbeats hold to within one tick.
inline constexpr std::chrono::seconds tick_interval{1};

/// What a transport installs on a connection it holds or takes over. Every call comes on
/// the connection's strand, never two at once.
class stream_handler {
public:
    virtual ~stream_handler() = default;
    /// Bytes from the peer (upgraded connections only; the first call replays the request
    /// head that asked for the upgrade, and anything after it).
    virtual void on_read(const char* data, std::size_t n) = 0;
    /// Everything queued so far was written: the moment to queue more (flow control).
    virtual void on_written() {}
    /// The hub queued frames for this connection's session (see connection::waker()).
    virtual void on_wake() {}
    /// Every tick_interval: heartbeats, idle timeouts, deadlines.
    virtual void on_tick(clock::time_point) {}
    /// The server drains: say goodbye (a `reconnect` frame, a 503...) and close.
    virtual void on_drain(std::chrono::milliseconds /*reconnect_after*/) {}
    /// The socket is gone. No write after this.
    virtual void on_close() {}
};

/// One client connection. Owned by the network host; a transport keeps a `std::weak_ptr`.
///
/// Thread safety: post() and waker() may be called from any thread; every other member only
/// on the connection's strand (in a stream_handler call, in serve(), or in a posted function).
class connection {
public:
    virtual ~connection() = default;

    /// The peer's address as `host:port`.
    virtual const std::string& remote() const noexcept = 0;
    /// False once closed.
    virtual bool open() const noexcept = 0;

    /// Runs `fn` on the connection's strand (from any thread; dropped if the connection is gone).
    virtual void post(std::function<void()> fn) = 0;
    /// A wake function for a hub session of this connection: it never blocks the publisher,
    /// and makes the installed handler hear on_wake() on the strand.
    virtual session::wake_function waker() = 0;

    // ---- writing --------------------------------------------------------------------

    /// Queues `bytes` and writes at once what the socket takes.
    virtual void write(std::string bytes) = 0;
    /// Queues `prefix` (at most max_prefix bytes, copied) followed by the frame's shared text
    /// (not copied: every connection writes the same bytes). Written by the next flush().
    /// A WebSocket header before a herald frame; a `,` between frames of a long-poll answer.
    virtual void write_shared(std::string_view prefix, frame_ptr f) = 0;
    static constexpr std::size_t max_prefix = 14;
    /// Writes what write_shared() queued, gathered, without blocking; what the socket does not
    /// take waits, and the handler hears on_written() once it is out.
    virtual void flush() = 0;
    /// Whether bytes wait to be written (the peer reads slower than we write).
    virtual bool writing() const noexcept = 0;

    // ---- HTTP -------------------------------------------------------------------------

    /// Answers the request being served. The connection stays for the next request when the
    /// client wants it and `keep_alive` allows; else it closes once written.
    virtual void respond(const http_request& req, http_response&& res, bool keep_alive = true) = 0;
    /// Answers in parts: the head (and `res.body`) now, more with write_part(), the end with
    /// end_parts(). `h` holds the connection meanwhile, as with hold().
    virtual void respond_in_parts(const http_request& req, http_response&& res, std::shared_ptr<stream_handler> h) = 0;
    virtual void write_part(std::string_view bytes) = 0;
    virtual void end_parts() = 0;

    // ---- taking the connection ----------------------------------------------------------

    /// Keeps the request open while `h` waits to answer it with respond() (a long-poll); `h`
    /// hears of a peer that leaves through on_close().
    virtual void hold(std::shared_ptr<stream_handler> h) = 0;
    /// Hands the connection to `h` for good (a WebSocket): the request head as received, and
    /// anything after it, is fed to `h->on_read` first.
    virtual void upgrade(std::shared_ptr<stream_handler> h) = 0;
    /// Closes once everything queued is written.
    virtual void close_after_flush() = 0;
    /// Closes at once; queued writes are dropped.
    virtual void close() = 0;
};

using connection_ptr = std::shared_ptr<connection>;

} // namespace herald::net
