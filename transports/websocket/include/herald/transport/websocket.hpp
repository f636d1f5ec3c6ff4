// herald — the WebSocket transport: RFC 6455 by websocketpp, socket and writes by herald.
//
// websocketpp runs sans-I/O here (its iostream transport): herald feeds it the bytes it reads
// and writes what it hands back, so websocketpp does the handshake validation, frame parsing,
// UTF-8 checks, control frames and the close handshake, while herald keeps the socket, the
// timers and the write queue. Message frames bypass websocketpp's send(): each herald frame is
// encoded once per publish and written, with a header made by websocketpp's frame helpers,
// to every connection from the same buffer, all pending frames of a connection in one
// gathered write.
#pragma once

#include <herald/hub.hpp>
#include <herald/transport.hpp>
#include <herald/detail/connection.hpp>
#include <herald/detail/server_context.hpp>

#include <websocketpp/concurrency/none.hpp>
#include <websocketpp/config/core.hpp>
#include <websocketpp/logger/stub.hpp>
#include <websocketpp/server.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace herald::transport {

namespace detail {

/// websocketpp configuration: single-threaded per connection (herald serializes on the
/// connection's strand), no logging, a small read buffer (bytes are fed synchronously, so a
/// large one buys nothing and costs memory on every idle connection).
struct websocket_config : websocketpp::config::core {
    typedef websocket_config type;
    typedef websocketpp::concurrency::none concurrency_type;
    typedef websocketpp::log::stub elog_type;
    typedef websocketpp::log::stub alog_type;
    struct transport_config : websocketpp::config::core::transport_config {
        typedef type::concurrency_type concurrency_type;
        typedef type::elog_type elog_type;
        typedef type::alog_type alog_type;
        static bool const enable_multithreading = false;
    };
    typedef websocketpp::transport::iostream::endpoint<transport_config> transport_type;
    static bool const enable_multithreading = false;
    static const size_t connection_read_buffer_size = 1024;
};

using websocket_endpoint = websocketpp::server<websocket_config>;

} // namespace detail

/// The WebSocket transport (`/herald/ws`, subprotocol `herald.v1`). Close codes: 4000 idle,
/// 4001 drain (after a `reconnect` frame), 4008 slow consumer, 1003 binary frame, 1009 frame
/// over `server_options::max_request_bytes`, 1002/1007 protocol and UTF-8 violations.
class websocket {
public:
    static constexpr std::string_view name = "websocket";
    struct options {
        bool enabled = true;
        std::string path = "/herald/ws";
    };

    static constexpr std::uint16_t close_idle = 4000;
    static constexpr std::uint16_t close_drain = 4001;
    static constexpr std::uint16_t close_slow_consumer = 4008;

    websocket(herald::detail::server_context& ctx, const options& opts) : ctx_(ctx), opts_(opts) {
        endpoint_.clear_access_channels(websocketpp::log::alevel::all);
        endpoint_.clear_error_channels(websocketpp::log::elevel::all);
        endpoint_.set_user_agent("herald");
    }

    /// Takes `GET <path>` requests. Without `Upgrade: websocket` (a proxy dropped it) the
    /// answer is 426 naming the cause, so that clients fall back and herald-doctor can tell.
    bool serve(const std::shared_ptr<herald::detail::connection>& c, http_request& r);

private:
    class stream;

    static bool equal_nocase(std::string_view a, std::string_view b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
        return true;
    }

    herald::detail::server_context& ctx_;
    options opts_;
    detail::websocket_endpoint endpoint_;
};

/// One WebSocket connection: websocketpp's connection, fed and drained by herald.
class websocket::stream final : public herald::detail::stream_handler,
                                public std::enable_shared_from_this<websocket::stream> {
public:
    using clock = herald::detail::clock;
    using ws_connection = detail::websocket_endpoint::connection_type;

    stream(websocket& t, const std::shared_ptr<herald::detail::connection>& c, principal who)
        : t_(t), conn_(c), who_(std::move(who)), last_rx_(clock::now()), last_tx_(last_rx_) {
        ws_ = t_.endpoint_.get_connection();
        ws_->set_max_message_size(t_.ctx_.opts.max_request_bytes);
        // All callbacks run inside ws_->read_all / close, on this connection's strand.
        ws_->set_write_handler([this](websocketpp::connection_hdl, const char* data, std::size_t n) {
            if (auto c2 = conn_.lock()) c2->write(std::string(data, n));
            return std::error_code();
        });
        ws_->set_vector_write_handler([this](websocketpp::connection_hdl, const std::vector<websocketpp::transport::buffer>& bufs) {
            std::string bytes;
            for (const auto& b : bufs) bytes.append(b.buf, b.len);
            if (auto c2 = conn_.lock()) c2->write(std::move(bytes));
            return std::error_code();
        });
        ws_->set_shutdown_handler([this](websocketpp::connection_hdl) {
            if (auto c2 = conn_.lock()) c2->close_after_flush();
            return std::error_code();
        });
        ws_->set_validate_handler([this](websocketpp::connection_hdl) {
            for (const std::string& p : ws_->get_requested_subprotocols())
                if (p == protocol::name) { ws_->select_subprotocol(std::string(protocol::name)); break; }
            return true;
        });
        ws_->set_open_handler([this](websocketpp::connection_hdl) { on_open(); });
        ws_->set_message_handler([this](websocketpp::connection_hdl, ws_connection::message_ptr m) { on_message(m); });
        ws_->set_pong_handler([this](websocketpp::connection_hdl, std::string) { last_rx_ = clock::now(); return; });
        ws_->set_close_handler([this](websocketpp::connection_hdl) { finish(); });
        ws_->set_fail_handler([this](websocketpp::connection_hdl) {
            finish();
            if (auto c2 = conn_.lock()) c2->close_after_flush();
        });
        ws_->start();
    }

    ~stream() override { finish(); }

    void on_read(const char* data, std::size_t n) override {
        last_rx_ = clock::now();
        ws_->read_all(data, n);
    }

    void on_written() override { pump(); }
    void on_wake() override { pump(); }

    void on_tick(clock::time_point now) override {
        if (closing_since_) {
            // The peer did not complete the close handshake in time.
            if (now - *closing_since_ > std::chrono::seconds(5))
                if (auto c = conn_.lock()) c->close();
            return;
        }
        if (!session_) return;
        // Two heartbeats, one per direction: a quiet server sends a herald `ping` (the page
        // cannot see WebSocket pings, and uses it to notice a dead connection); a quiet client
        // gets a WebSocket ping, which browsers answer by themselves. Silence past two
        // heartbeats means the peer is gone.
        const auto hb = t_.ctx_.opts.heartbeat;
        if (now - last_rx_ > 2 * hb + std::chrono::seconds(1)) {
            close(close_idle, "idle: nothing received for two heartbeats");
            return;
        }
        if (now - last_tx_ >= hb) send(protocol::make_ping());
        if (now - last_rx_ >= hb && ws_->get_state() == websocketpp::session::state::open) {
            std::error_code ec;
            ws_->ping("", ec);
        }
    }

    void on_drain(std::chrono::milliseconds after) override {
        if (!session_) {
            close(websocketpp::close::status::going_away, "server stopping");
            return;
        }
        send(protocol::make_reconnect(after));
        close(close_drain, "server draining: reconnect");
    }

    void on_close() override {
        // The socket is gone: let websocketpp finish its state machine, then the session goes.
        if (ws_->get_state() != websocketpp::session::state::closed) ws_->eof();
        finish();
    }

private:
    void on_open() {
        auto c = conn_.lock();
        if (!c) return;
        session_ = t_.ctx_.hub.open_session(who_, herald::detail::server_context::waker(c));
        send(protocol::make_welcome(session_->id(), t_.ctx_.opts.heartbeat, t_.ctx_.transports, t_.ctx_.server_id));
    }

    void on_message(const ws_connection::message_ptr& m) {
        last_rx_ = clock::now();
        if (m->get_opcode() != websocketpp::frame::opcode::text) {
            close(websocketpp::close::status::unsupported_data, "herald.v1 frames are text");
            return;
        }
        if (session_) t_.ctx_.hub.handle(session_, m->get_payload());
    }

    // Moves what the hub queued onto the socket: all of it in one gathered write, and only
    // when the previous write is done, so that a stalled peer leaves its backlog in the
    // session's capped queue (where the slow-consumer rule sees it).
    void pump() {
        auto c = conn_.lock();
        if (!c || !session_ || closing_since_ || c->writing()) return;
        batch_.clear();
        const bool open = session_->take(batch_);
        if (!batch_.empty() && ws_->get_state() == websocketpp::session::state::open) {
            for (frame_ptr& f : batch_) c->write_websocket(std::move(f));
            c->flush();
            last_tx_ = clock::now();
        }
        batch_.clear();
        if (batch_.capacity() > 64) std::vector<frame_ptr>().swap(batch_);
        if (!open) {
            if (session_->close_reason() == error::slow_consumer)
                close(close_slow_consumer, "slow consumer: resume from your cursors");
            else
                close(close_drain, "session closed");
        }
    }

    void send(frame_ptr f) {
        auto c = conn_.lock();
        if (!c || ws_->get_state() != websocketpp::session::state::open) return;
        c->write_websocket(std::move(f));
        c->flush();
        last_tx_ = clock::now();
    }

    void close(std::uint16_t code, const std::string& reason) {
        if (closing_since_) return;
        closing_since_ = clock::now();
        std::error_code ec;
        if (ws_->get_state() == websocketpp::session::state::open) ws_->close(code, reason, ec);
        finish();
    }

    void finish() {
        if (session_) {
            t_.ctx_.hub.close_session(session_);
            session_.reset();
        }
    }

    websocket& t_;
    std::weak_ptr<herald::detail::connection> conn_;
    principal who_;
    ws_connection::ptr ws_;
    session_ptr session_;
    std::vector<frame_ptr> batch_;
    clock::time_point last_rx_, last_tx_;
    std::optional<clock::time_point> closing_since_;
};

inline bool websocket::serve(const std::shared_ptr<herald::detail::connection>& c, http_request& r) {
    if (r.path() != opts_.path) return false;
    using herald::detail::server_context;
    if (!ctx_.origin_allowed(r)) {
        c->respond(r, server_context::error_response(403, error::forbidden, "origin not allowed"));
        return true;
    }
    if (ctx_.draining) {
        c->respond(r, server_context::error_response(503, error::shutting_down), false);
        return true;
    }
    const std::string_view upgrade = r.header("upgrade");
    if (r.method != "GET" || upgrade.size() != 9 || !equal_nocase(upgrade, "websocket")) {
        c->respond(r, server_context::error_response(426, error::malformed_frame,
            "WebSocket upgrade expected: the Upgrade/Connection headers did not arrive (a proxy in between may drop them)"),
            false);
        return true;
    }
    std::optional<principal> who = ctx_.hub.authenticate(r);
    if (!who) {
        c->respond(r, server_context::error_response(401, error::unauthenticated), false);
        return true;
    }
    auto s = std::make_shared<stream>(*this, c, std::move(*who));
    c->upgrade(s);  // feeds the handshake bytes to websocketpp
    return true;
}

} // namespace herald::transport
