// herald — the WebSocket transport: RFC 6455 by websocketpp, socket and writes by herald.
//
// websocketpp runs sans-I/O here, at the level of its RFC 6455 processor (hybi13): herald
// feeds it the bytes it reads, and websocketpp validates the handshake and computes its
// answer, parses frames (masking, fragmentation, limits, UTF-8 of text messages) and prepares
// the control frames. herald keeps the socket, the timers, the write queue, and the few
// state transitions around them (answer a ping, echo a close, close after a protocol error
// with websocketpp's close code). websocketpp's connection class is not used: it costs
// ~4.5 KB per connection (two dozen std::function handlers, the handshake's header maps kept
// for the connection's life, a std::deque send queue), more than all the rest of an idle
// herald connection; the processor costs ~200 bytes and the handshake's request and
// response live only while it is answered.
//
// Message frames bypass websocketpp: each herald frame is encoded once per publish and
// written, with a header made by websocketpp's frame helpers, to every connection from the
// same buffer, all pending frames of a connection in one gathered write.
#pragma once

#include <herald/hub.hpp>
#include <herald/peer.hpp>
#include <herald/net/transport.hpp>

#include <websocketpp/close.hpp>
#include <websocketpp/common/network.hpp>
#include <websocketpp/config/core.hpp>
#include <websocketpp/frame.hpp>
#include <websocketpp/http/request.hpp>
#include <websocketpp/http/response.hpp>
#include <websocketpp/processors/hybi13.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::detail {

/// websocketpp configuration: the types of its hybi13 processor (message buffers, the HTTP
/// parser, no permessage-deflate).
using websocket_config = websocketpp::config::core;
using websocket_processor = websocketpp::processor::hybi13<websocket_config>;

/// The header of an unmasked, final text frame of `size` bytes (2 to 10 bytes), made with
/// websocketpp's frame helpers: written before a herald frame's shared text.
struct text_frame_header {
    explicit text_frame_header(std::size_t size) {
        websocketpp::frame::basic_header h(websocketpp::frame::opcode::text, size, true, false);
        websocketpp::frame::extended_header e(size);
        bytes[0] = static_cast<char>(h.b0);
        bytes[1] = static_cast<char>(h.b1);
        const std::size_t ext = websocketpp::frame::get_header_len(h) - websocketpp::frame::BASIC_HEADER_LENGTH;
        for (std::size_t i = 0; i < ext; ++i) bytes[2 + i] = static_cast<char>(e.bytes[i]);
        len = 2 + ext;
    }
    std::string_view view() const noexcept { return {bytes, len}; }
    char bytes[10]{};
    std::size_t len = 0;
};

/// Queues herald frame `f` on `c` as one WebSocket text message (written by the next flush).
inline void queue_text_frame(herald::net::connection& c, frame_ptr f) {
    const text_frame_header h(f->text.size());
    c.write_shared(h.view(), std::move(f));
}

} // namespace herald::detail

namespace herald::transport {

/// The WebSocket transport (`/herald/ws`, subprotocols `herald.v2` and `herald.v1`: the newest
/// the client offers, protocol::negotiate; an offer of none known is refused with 400).
/// Close codes: 4000 idle, 4001 drain (after a `reconnect` frame), 4003 credentials expired
/// (after a `credentials_expired` error frame), 4008 slow consumer, 1003 binary frame, 1009
/// frame over `server_options::max_request_bytes`, 1002/1007 protocol and UTF-8 violations.
class websocket {
public:
    static constexpr std::string_view name = "websocket";
    struct options {
        bool enabled = true;
        std::string path = "/herald/ws";
    };

    static constexpr std::uint16_t close_idle = 4000;
    static constexpr std::uint16_t close_drain = 4001;
    static constexpr std::uint16_t close_credentials_expired = 4003;
    static constexpr std::uint16_t close_slow_consumer = 4008;

    websocket(net::transport_context& ctx, const options& opts)
        : ctx_(ctx), opts_(opts), messages_(std::make_shared<detail::websocket_config::con_msg_manager_type>()) {
        // websocketpp's _htonll (frame headers over 125 bytes) detects the byte order into a
        // function-local static on its first call: made here, before the I/O threads start,
        // so that they only read it (ThreadSanitizer saw two threads' first calls race).
        (void)websocketpp::lib::net::_htonll(0);
    }

    /// Takes `GET <path>` requests, through the admission gate (transport_context::admit:
    /// origin 403, no `Upgrade: websocket` 426, draining 503, authenticate 401).
    bool serve(const net::connection_ptr& c, http_request& r);

private:
    class stream;

    static bool equal_nocase(std::string_view a, std::string_view b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
        return true;
    }

    net::transport_context& ctx_;
    options opts_;
    // Shared by every connection's processor: the message allocator is stateless, and the
    // random generator is for client-side masking, which a server never does.
    std::shared_ptr<detail::websocket_config::con_msg_manager_type> messages_;
    detail::websocket_config::rng_type rng_;
};

/// One WebSocket connection: websocketpp's processor, fed and drained by herald.
class websocket::stream final : public net::stream_handler,
                                public std::enable_shared_from_this<websocket::stream> {
public:
    using clock = net::clock;
    using message_ptr = detail::websocket_config::message_type::ptr;

    stream(websocket& t, const net::connection_ptr& c, principal who)
        : t_(t), conn_(c), who_(std::make_unique<principal>(std::move(who))), proc_(false, true, t.messages_, t.rng_),
          last_rx_(clock::now()), last_tx_(last_rx_) {
        proc_.set_max_message_size(t_.ctx_.opts.max_request_bytes);
    }

    ~stream() override { finish(); }

    void on_read(const char* data, std::size_t n) override {
        last_rx_ = clock::now();
        if (state_ == state::handshake) {
            const std::size_t used = handshake(data, n);
            data += used;
            n -= used;
        }
        if (state_ == state::closed || state_ == state::failed || n == 0) return;
        // The processor unmasks in place: it works on a copy (inbound frames are small and few).
        thread_local std::string scratch;
        scratch.assign(data, n);
        auto* p = reinterpret_cast<std::uint8_t*>(scratch.data());
        std::size_t left = n;
        bool whole = false;  // the bytes ended with a message
        while (left > 0 && state_ != state::closed && state_ != state::failed) {
            std::error_code ec;
            const std::size_t used = proc_.consume(p, left, ec);
            if (ec) {
                fail(websocketpp::processor::error::to_ws(ec), ec.message());
                break;
            }
            p += used;
            left -= used;
            whole = false;
            if (proc_.ready()) {
                whole = left == 0;
                if (message_ptr m = proc_.get_message()) dispatch(m);
            } else if (used == 0) {
                break;
            }
        }
        if (whole) partial_since_ = unset;
        else if (partial_since_ == unset) partial_since_ = last_rx_;
        if (scratch.capacity() > 65536) std::string().swap(scratch);
    }

    void on_written() override { pump(); }
    void on_wake() override { pump(); }

    void on_tick(clock::time_point now) override {
        // A frame begun and not finished in time (server_options::websocket_frame_timeout):
        // a peer that dribbles a frame would hold the connection and its buffer forever.
        if (partial_since_ != unset && now - partial_since_ > t_.ctx_.opts.websocket_frame_timeout) {
            if (auto c = conn_.lock()) c->close();
            return;
        }
        if (closing_since_ != unset) {
            // The peer did not complete the close handshake in time.
            if (now - closing_since_ > std::chrono::seconds(5))
                if (auto c = conn_.lock()) c->close();
            return;
        }
        if (!peer_.session()) return;
        peer_.session()->trim();  // an idle client keeps no queue storage
        // Credentials that expire before the next tick end the session now (pump closes
        // with 4003); before that, the client is asked once to refresh them.
        if (!peer_.check_credentials(principal::clock::now(), net::tick_interval)) return;
        // Two heartbeats, one per direction: a quiet server sends a herald `ping` (the page
        // cannot see WebSocket pings, and uses it to notice a dead connection); a quiet client
        // gets a WebSocket ping, which browsers answer by themselves. Any frame from the peer
        // counts as alive; silence past two heartbeats means it is gone. This tick comes once
        // a second, so the ping goes a tick early: the server is never quiet for longer than
        // the `heartbeat` it announced in `welcome` (docs/protocol.md, "Heartbeats").
        const auto hb = t_.ctx_.opts.heartbeat;
        if (now - last_rx_ > 2 * hb + std::chrono::seconds(1)) {
            close(close_idle, "idle: nothing received for two heartbeats");
            return;
        }
        if (now - last_tx_ + net::tick_interval >= hb) send(protocol::make_ping());
        if (now - last_rx_ >= hb && state_ == state::open) control(websocketpp::frame::opcode::ping, "");
    }

    void on_drain(std::chrono::milliseconds after) override {
        if (!peer_.session()) {
            close(websocketpp::close::status::going_away, "server stopping");
            return;
        }
        send(protocol::make_reconnect(after));
        close(close_drain, "server draining: reconnect");
    }

    void on_close() override {
        state_ = state::closed;
        finish();
    }

private:
    enum class state : std::uint8_t { handshake, open, closing, closed, failed };

    // Validates the upgrade request and answers it (websocketpp's processor does both).
    // websocketpp checks GET, HTTP/1.1, the version and that a Sec-WebSocket-Key is there;
    // herald adds the `Connection: Upgrade` token (websocketpp's is_websocket_handshake) and
    // the key's form, RFC 6455 4.2.1: 16 bytes in base64, 24 characters. Refused: 400.
    // @returns the bytes of `data` that were the request.
    std::size_t handshake(const char* data, std::size_t n) {
        auto c = conn_.lock();
        if (!c) return n;
        // 16 bytes in base64: 21 characters, one whose low 4 bits are zero, then "==".
        auto valid_key = [](std::string_view k) {
            constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            if (k.size() != 24 || k.substr(22) != "==") return false;
            for (std::size_t i = 0; i < 22; ++i)
                if (alphabet.find(k[i]) == std::string_view::npos) return false;
            return std::string_view("AQgw").find(k[21]) != std::string_view::npos;
        };
        websocketpp::http::parser::request req;
        websocketpp::http::parser::response res;
        std::size_t used = 0;
        std::error_code ec;
        try {
            used = req.consume(data, n);
        } catch (const std::exception&) {
            used = n;
        }
        if (!req.ready()) {
            res.set_status(websocketpp::http::status_code::bad_request);
        } else if (websocketpp::processor::get_websocket_version(req) != proc_.get_version()) {
            res.set_status(websocketpp::http::status_code::bad_request);
            res.replace_header("Sec-WebSocket-Version", std::to_string(proc_.get_version()));
        } else if ((ec = proc_.validate_handshake(req)) || !websocketpp::processor::is_websocket_handshake(req) ||
                   !valid_key(req.get_header("Sec-WebSocket-Key"))) {
            res.set_status(websocketpp::http::status_code::bad_request);
        } else if (std::vector<std::string> offered; proc_.extract_subprotocols(req, offered),
                   !(version_ = protocol::negotiate(offered, t_.ctx_.opts.max_protocol_version))) {
            // Versions offered, none known here: a browser would fail an upgrade answered
            // without one of them, so the refusal says which this server speaks.
            res.set_status(websocketpp::http::status_code::bad_request);
            res.replace_header("Sec-WebSocket-Protocol", protocol::spoken(t_.ctx_.opts.max_protocol_version));
        } else {
            // The newest version both know; a client that offered none (not a browser's
            // herald.js) speaks herald.v1 and is answered without the header.
            const std::string chosen = offered.empty() ? std::string() : std::string(protocol::name_of(version_));
            res.set_status(websocketpp::http::status_code::switching_protocols);
            if ((ec = proc_.process_handshake(req, chosen, res)))
                res.set_status(websocketpp::http::status_code::internal_server_error);
        }
        res.set_version("HTTP/1.1");
        res.replace_header("Server", "herald");
        const bool ok = res.get_status_code() == websocketpp::http::status_code::switching_protocols;
        if (!ok) res.replace_header("Connection", "close");
        c->write(proc_.get_raw(res));
        if (!ok) {
            state_ = state::failed;
            c->close_after_flush();
            return n;
        }
        state_ = state::open;
        on_open();
        return used;
    }

    void on_open() {
        auto c = conn_.lock();
        if (!c) return;
        peer_ = herald::peer(t_.ctx_.hub, std::move(*who_), c->waker(), version_);
        who_.reset();
        // A WebSocket lasts: its principal is listed in presence; a herald.v2 client also
        // hears join/leave and may ask the members (a v1 client knows no such frames).
        peer_.take_part_in_presence(peer_.version() >= 2 ? session::presence_role::listener
                                                         : session::presence_role::member);
        t_.ctx_.metrics.websockets_open.fetch_add(1, std::memory_order_relaxed);
        t_.ctx_.metrics.websockets_opened.fetch_add(1, std::memory_order_relaxed);
        send(protocol::make_welcome(peer_.session()->id(), t_.ctx_.opts.heartbeat, t_.ctx_.transports, t_.ctx_.server_id, version_));
    }

    void dispatch(const message_ptr& m) {
        switch (m->get_opcode()) {
        case websocketpp::frame::opcode::text:
            if (state_ == state::open && peer_.session()) peer_.apply(m->get_payload());
            return;
        case websocketpp::frame::opcode::ping:
            if (state_ == state::open) control(websocketpp::frame::opcode::pong, m->get_payload());
            return;
        case websocketpp::frame::opcode::pong:
            return;  // last_rx_ is set already
        case websocketpp::frame::opcode::close:
            on_close_frame(m->get_payload());
            return;
        default:
            if (state_ == state::open) close(websocketpp::close::status::unsupported_data, "herald.v1 frames are text");
            return;
        }
    }

    // The peer's close: echo it (or answer 1002 for a malformed one) and end the connection;
    // or, when we sent ours first, it completes the handshake.
    void on_close_frame(const std::string& payload) {
        auto c = conn_.lock();
        if (!c) return;
        if (state_ == state::open) {
            std::error_code ec;
            auto code = websocketpp::close::extract_code(payload, ec);
            if (!ec) websocketpp::close::extract_reason(payload, ec);  // validates its UTF-8
            // Echo the code (an empty close for an empty one); 1002 for a malformed one.
            write_close(ec ? websocketpp::close::status::protocol_error : code, "");
        }
        state_ = state::closed;
        finish();
        c->close_after_flush();
    }

    // Moves what the hub queued onto the socket: all of it in one gathered write, and only
    // when the previous write is done, so that a stalled peer leaves its backlog in the
    // session's capped queue (where the slow-consumer rule sees it).
    void pump() {
        auto c = conn_.lock();
        const session_ptr& session = peer_.session();
        if (!c || !session || state_ != state::open || c->writing()) return;
        // One batch vector per thread: pump never re-enters itself (writes complete or wait
        // without calling back), and idle connections keep none.
        thread_local std::vector<frame_ptr> batch;
        batch.clear();
        const bool open = session->take(batch);
        if (!batch.empty()) {
            net::observe_delivery(t_.ctx_.metrics, batch);
            for (frame_ptr& f : batch) detail::queue_text_frame(*c, std::move(f));
            c->flush();
            last_tx_ = clock::now();
        }
        batch.clear();
        if (batch.capacity() > 4096) std::vector<frame_ptr>().swap(batch);
        if (!open) {
            if (session->close_reason() == error::slow_consumer)
                close(close_slow_consumer, "slow consumer: resume from your cursors");
            else if (session->close_reason() == error::credentials_expired)
                close(close_credentials_expired, "credentials expired");
            else
                close(close_drain, "session closed");
        }
    }

    void send(frame_ptr f) {
        auto c = conn_.lock();
        if (!c || state_ != state::open) return;
        detail::queue_text_frame(*c, std::move(f));
        c->flush();
        last_tx_ = clock::now();
    }

    // A ping or pong, prepared by websocketpp.
    void control(websocketpp::frame::opcode::value op, const std::string& payload) {
        auto c = conn_.lock();
        message_ptr m = t_.messages_->get_message();
        if (!c || !m) return;
        const std::error_code ec = op == websocketpp::frame::opcode::ping ? proc_.prepare_ping(payload, m) : proc_.prepare_pong(payload, m);
        if (!ec) c->write(m->get_header() + m->get_payload());
    }

    void write_close(websocketpp::close::status::value code, const std::string& reason) {
        auto c = conn_.lock();
        message_ptr m = t_.messages_->get_message();
        if (!c || !m) return;
        if (proc_.prepare_close(code, reason, m)) return;  // websocketpp refused it: nothing was sent
        t_.ctx_.metrics.close_sent(static_cast<std::uint16_t>(code));
        c->write(m->get_header() + m->get_payload());
    }

    // Starts the close handshake: our close frame now, the connection ends when the peer
    // answers (or after 5 s, see on_tick).
    void close(std::uint16_t code, const std::string& reason) {
        if (closing_since_ != unset) return;
        closing_since_ = clock::now();
        if (state_ == state::open) {
            write_close(code, reason);
            state_ = state::closing;
        }
        finish();
    }

    // A protocol violation: websocketpp's close code, then the connection ends (the stream
    // cannot be parsed any further).
    void fail(websocketpp::close::status::value code, const std::string& reason) {
        auto c = conn_.lock();
        if (state_ == state::open) write_close(code, reason);
        state_ = state::failed;
        finish();
        if (c) c->close_after_flush();
    }

    void finish() {
        // Open from on_open (which made the session) until here, the one place that ends it.
        if (peer_.session()) t_.ctx_.metrics.websockets_open.fetch_sub(1, std::memory_order_relaxed);
        peer_.release();
    }

    websocket& t_;
    std::weak_ptr<net::connection> conn_;
    std::unique_ptr<principal> who_;  // until the handshake is answered (then the peer's)
    detail::websocket_processor proc_;
    herald::peer peer_;  // from the handshake on
    // Here rather than last: beside version_, in what was padding, 16 bytes less per
    // connection (the allocation falls to a smaller malloc size class).
    state state_ = state::handshake;
    int version_ = 1;       // the protocol version negotiated at the upgrade
    clock::time_point last_rx_, last_tx_;
    // Times that may be unset, without std::optional's flag and its padding: 16 bytes less
    // per connection (the allocation falls to a smaller malloc size class).
    static constexpr clock::time_point unset = clock::time_point::min();
    clock::time_point closing_since_ = unset;
    clock::time_point partial_since_ = unset;  // a frame began to arrive (and is not whole)
};

inline bool websocket::serve(const net::connection_ptr& c, http_request& r) {
    if (r.path() != opts_.path) return false;
    // Without `Upgrade: websocket` (a proxy dropped it) the answer is 426 naming the cause, so
    // that clients fall back and herald-doctor can tell.
    auto upgrade_asked = [](const http_request& r) -> std::optional<http_response> {
        const std::string_view upgrade = r.header("upgrade");
        if (r.method == "GET" && upgrade.size() == 9 && equal_nocase(upgrade, "websocket")) return std::nullopt;
        return http_response::refusal(426, error::malformed_frame,
            "WebSocket upgrade expected: the Upgrade/Connection headers did not arrive (a proxy in between may drop them)");
    };
    net::admission a = ctx_.admit(r, upgrade_asked);
    if (!a) {
        c->respond(r, std::move(a.refusal), false);
        return true;
    }
    auto s = std::make_shared<stream>(*this, c, std::move(*a.who));
    c->upgrade(s);  // feeds the handshake bytes to websocketpp
    return true;
}

} // namespace herald::transport
