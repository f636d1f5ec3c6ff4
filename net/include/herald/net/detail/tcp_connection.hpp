// herald — one TCP connection of the server: HTTP/1.1 with keep-alive until a transport
// takes it over (a WebSocket upgrade, a held long-poll). herald owns the socket and the
// writes; transports see it as a net::connection (net/connection.hpp). The bytes are
// http1.hpp's (the request reader, the response encoding) and write_queue.hpp's; this file
// keeps the socket, the connection's mode and its handler.
#pragma once

#include <herald/frame.hpp>
#include <herald/net/connection.hpp>
#include <herald/net/http.hpp>
#include <herald/net/server_options.hpp>
#include <herald/net/detail/http1.hpp>
#include <herald/net/detail/tls.hpp>
#include <herald/net/detail/connection_config.hpp>
#include <herald/net/detail/wake_batch.hpp>
#include <herald/net/detail/write_queue.hpp>
#include <herald/options.hpp>

#include <asio.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::net::detail {

class tcp_connection;

/// Wakes batched per I/O thread (see basic_wake_batch).
using wake_batch = basic_wake_batch<tcp_connection>;

class tcp_connection final : public net::connection, public std::enable_shared_from_this<tcp_connection> {
public:
    using executor_type = asio::any_io_executor;  // the connection's strand

    /// `batch`: where the wakes of this connection go when its executor is single-threaded
    /// (null: each wake is posted to the connection's strand). `tls`: https (null: plain).
    tcp_connection(asio::ip::tcp::socket socket, connection_owner& owner, const connection_limits& limits,
               wake_batch* batch = nullptr, const connection_tls* tls = nullptr)
        : socket_(std::move(socket)), owner_(owner), limits_(limits), batch_(batch), since_(clock::now()),
          reader_(std::make_unique<http1::request_reader>(limits_)), tls_config_(tls) {
        if (tls && tls->context) tls_ = std::make_unique<tls_session>(tls->context->native(), tls_session::role::server);
        std::error_code ec;
        socket_.set_option(asio::ip::tcp::no_delay(true), ec);
        socket_.non_blocking(true, ec);
        auto ep = socket_.remote_endpoint(ec);
        if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    }

    ~tcp_connection() override = default;

    executor_type get_executor() { return socket_.get_executor(); }
    wake_batch* batch() const noexcept { return batch_; }
    const std::string& remote() const noexcept override { return remote_; }
    /// The peer's IP address (what the server counts connections by): remote() without its
    /// port. Not kept apart: 32 bytes less per connection.
    std::string_view address() const noexcept {
        const std::size_t colon = remote_.rfind(':');  // an IPv6 address has more: the port's is last
        return std::string_view(remote_).substr(0, colon == std::string::npos ? 0 : colon);
    }
    bool open() const noexcept override { return mode_ != mode::closed; }

    void post(std::function<void()> fn) override {
        asio::post(get_executor(), [w = weak_from_this(), fn = std::move(fn)] {
            if (w.lock()) fn();
        });
    }

    /// Joins the connection's wake batch (one I/O thread), or posts to its strand.
    session::wake_function waker() override {
        // Only the weak pointer is captured: it fits in the wake function's own storage, so a
        // session's wake allocates nothing.
        if (batch_)
            return [w = weak_from_this()] {
                if (auto c = w.lock()) c->batch_->add(std::move(c));
            };
        return [w = weak_from_this()] {
            if (auto c = w.lock())
                asio::post(c->get_executor(), [w] {
                    if (auto c2 = w.lock()) c2->wake();
                });
        };
    }

    /// Starts reading requests. Call once, on the strand.
    void start() { read(); }

    // ---- writing (strand only) --------------------------------------------------------

    void write(std::string bytes) override {
        if (mode_ == mode::closed || bytes.empty()) return;
        queue_.push(std::move(bytes));
        flush();
    }

    void write_shared(std::string_view prefix, frame_ptr f) override {
        if (mode_ == mode::closed) return;
        queue_.push_shared(prefix, std::move(f));
    }

    /// The write is attempted at once, non-blocking, from the caller's stack: gathered, up to
    /// 32 frames per system call, with no asio operation, allocation or posted completion on
    /// the way (a fan-out to 1000 subscribers is 1000 of these in a row). Only what the socket
    /// does not take waits for writability; the handler hears on_written() once that is out.
    /// A write error closes the connection from a posted handler, never under the caller.
    void flush() override {
        if (waiting_ || failed_ || mode_ == mode::closed) return;
        if (tls_) return flush_tls();
        while (!queue_.empty()) {
            std::size_t n = 0;
            if (!write_now(queue_.buffers(), n)) return;
            queue_.consume(n);
        }
        flushed();
    }

    /// Whether bytes wait to be written (the peer is not reading as fast as we write).
    bool writing() const noexcept override {
        return waiting_ || queue_.queued() || (tls_ && !tls_->pending_ciphertext().empty());
    }

    /// Answers the request being served. Keeps the connection for the next request when
    /// the client wants it (and `keep_alive` allows), else closes once written.
    void respond(const http_request& req, http_response&& res, bool keep_alive = true) override {
        if (mode_ == mode::closed) return;
        keep_alive = keep_alive && req.keep_alive() && !draining_;
        std::string head = http1::response_head(res, keep_alive, "Content-Length: " + std::to_string(res.body_size()));
        if (req.method == "HEAD") {
        } else if (!res.frame_body) {
            head += res.body;  // small: one buffer beats two
        } else if (mode_ != mode::closed) {
            // {"frames":[f1,f2,…]}: each frame's text from its shared buffer, behind its comma.
            head += res.envelope;
            queue_.push(std::move(head));
            const std::vector<frame_ptr>& fs = *res.frame_body;
            for (std::size_t i = 0; i < fs.size(); ++i) queue_.push_shared(i ? std::string_view(",") : std::string_view(), fs[i]);
            head = std::string(http_response::envelope_close);
        }
        retire_handler();
        write(std::move(head));
        next_request(keep_alive);
    }

    /// Answers the request being served in parts: the head (and `res.body`, if any) now, the
    /// rest with write_part(), the end with end_parts(). HTTP/1.1 clients get
    /// `Transfer-Encoding: chunked`; HTTP/1.0 ones (nginx's default to its upstreams) know no
    /// chunks, so their body ends when the connection closes. Until end_parts(), `h` holds the
    /// connection as with hold(): it hears of a peer that leaves through on_close().
    void respond_in_parts(const http_request& req, http_response&& res, std::shared_ptr<stream_handler> h) override {
        if (mode_ == mode::closed) return;
        chunked_ = req.version != "HTTP/1.0";
        parts_keep_alive_ = chunked_ && req.keep_alive() && !draining_;
        write(http1::response_head(res, parts_keep_alive_, chunked_ ? "Transfer-Encoding: chunked" : ""));
        hold(std::move(h));
        write_part(res.body);
    }

    /// Writes one part of a response begun with respond_in_parts().
    void write_part(std::string_view bytes) override {
        if (mode_ != mode::held || bytes.empty()) return;
        write(chunked_ ? http1::chunk(bytes) : std::string(bytes));
    }

    /// Ends a response begun with respond_in_parts(); the connection goes on to the next request.
    void end_parts() override {
        if (mode_ != mode::held) return;
        if (chunked_) write(std::string(http1::last_chunk));
        retire_handler();
        next_request(parts_keep_alive_);
    }

    /// Hands the connection to a transport for good (WebSocket). `replay` — the request head
    /// as received, and anything after it — is fed to the handler first.
    void upgrade(std::shared_ptr<stream_handler> h) override {
        handler_ = std::move(h);
        mode_ = mode::upgraded;
        std::string bytes = reader_->take_raw();
        bytes += pending_;
        std::string().swap(pending_);
        reader_.reset();  // an upgraded connection speaks HTTP no more: its reader goes
        if (!bytes.empty()) handler_->on_read(bytes.data(), bytes.size());
    }

    /// Keeps the request open while a transport waits to answer it (long-poll). The handler
    /// answers later with respond(); it hears of a peer that leaves through on_close().
    void hold(std::shared_ptr<stream_handler> h) override {
        handler_ = std::move(h);
        mode_ = mode::held;
    }

    stream_handler* handler() const noexcept { return handler_.get(); }

    /// Closes once everything queued is written (from a posted handler: the caller may be
    /// the handler that is about to be closed).
    void close_after_flush() override {
        if (mode_ == mode::closed) return;
        close_when_flushed_ = true;
        mode_ = mode::finishing;
        since_ = clock::now();
        if (!writing()) asio::post(get_executor(), [self = shared_from_this()] { self->linger(); });
        else flush();
    }

    /// Closes at once (queued writes are dropped).
    void close() override {
        if (mode_ == mode::closed) return;
        mode_ = mode::closed;
        if (tls_) say_goodbye();
        std::error_code ec;
        socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
        socket_.close(ec);
        queue_.clear();
        if (handler_) {
            std::shared_ptr<stream_handler> h = handler_;
            retire_handler();
            h->on_close();
        }
        owner_.forget(this);
    }

    /// Drops the handler without destroying it under its own feet (it may be the caller).
    void retire_handler() {
        if (handler_) asio::post(get_executor(), [h = std::move(handler_)] {});
    }

    /// Posted by the session's wake.
    void wake() {
        if (handler_ && mode_ != mode::closed) handler_->on_wake();
    }

    /// Once a second: the deadlines (server_options: header_timeout, body_timeout,
    /// keep_alive_timeout; linger_timeout), then the handler's.
    void tick(clock::time_point now) {
        if (mode_ == mode::closed) return;
        if (!writing()) queue_.trim();  // idle for a second or more, likely: keep no write storage
        // A closing connection: its peer had body_timeout to take the last answer, then
        // linger_timeout to close its side.
        if (mode_ == mode::finishing && now - since_ > (lingering_ ? linger_timeout : limits_.body_timeout)) {
            close();
            return;
        }
        if (tls_ && !tls_->established() && now - since_ > tls_config_->handshake_timeout) {
            tls_failed("no TLS handshake in time");
            return;
        }
        if (handler_) { handler_->on_tick(now); return; }
        if (mode_ != mode::http) return;
        if (reader_->started()) {
            // since_: the request's first byte (the accept, for a connection's first request).
            if (now - since_ > (reader_->head_done() ? limits_.body_timeout : limits_.header_timeout)) {
                http_request dummy;
                respond(dummy, http_response::error(408, error::timed_out, "request not received in time"), false);
            }
        } else if (now - since_ > (served_ ? limits_.keep_alive_timeout : limits_.header_timeout)) {
            close();  // a silent new socket, or an idle kept-alive one
        }
    }

    void drain(std::chrono::milliseconds after) {
        draining_ = true;
        if (mode_ == mode::closed) return;
        if (handler_) { handler_->on_drain(after); return; }
        if (mode_ == mode::http && !reader_->started()) close();
    }

private:
    enum class mode : std::uint8_t { http, serving, held, upgraded, finishing, closed };

    // After a response: close once written, or wait for the next request (which may have
    // come, pipelined, while this one was served).
    void next_request(bool keep_alive) {
        if (!keep_alive) { close_after_flush(); return; }
        mode_ = mode::http;
        served_ = true;
        since_ = clock::now();
        parse_pending();
    }

    // Whether the peer has more unwritten output than it may (it is not reading): then the
    // connection reads nothing until that is written. Its requests, pings and frames stay
    // in its kernel buffers, which are bounded, rather than ours as answers, which are not.
    bool over_cap() const noexcept { return queue_.bytes() > limits_.max_unwritten_bytes; }

    // Parses pipelined bytes that came with an answered request, from a posted handler (the
    // answer may be on the stack), and only while the peer takes its answers.
    void parse_pending() {
        if (pending_.empty() || parse_posted_) return;
        if (over_cap()) { read_paused_ = true; return; }  // resume_reading() comes back
        parse_posted_ = true;
        asio::post(get_executor(), [self = shared_from_this()] {
            self->parse_posted_ = false;
            if (self->mode_ != mode::http) return;
            std::string p;
            p.swap(self->pending_);
            self->feed(p.data(), p.size());
            self->read();
        });
    }

    void resume_reading() {
        if (over_cap()) return;
        read_paused_ = false;
        if (mode_ == mode::http) parse_pending();
        read();
    }

    // The last answer is written: half-close, and wait (reading and dropping what comes) for
    // the peer to close, at most linger_timeout. Closing with unread bytes would send a reset,
    // which may destroy the answer before the peer reads it.
    void linger() {
        if (mode_ == mode::closed) return;
        if (tls_) say_goodbye();  // the close_notify goes before the half-close
        std::error_code ec;
        socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
        if (ec) { close(); return; }
        lingering_ = true;
        since_ = clock::now();
        read();
    }

    // One non-blocking write_some: false when the socket is full (the rest waits for
    // writability) or failed (the connection closes from a posted handler).
    template <class Buffers>
    bool write_now(const Buffers& buffers, std::size_t& n) {
        std::error_code ec;
        n = socket_.write_some(buffers, ec);
        if (n) owner_.metrics().bytes_written.fetch_add(n, std::memory_order_relaxed);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
            wait_writable();
            return false;
        }
        if (ec) { fail_write(); return false; }
        return true;
    }
    void fail_write() {
        failed_ = true;
        asio::post(get_executor(), [self = shared_from_this()] { self->close(); });
    }
    // Everything queued is out.
    void flushed() {
        queue_.clear();
        if (close_when_flushed_) asio::post(get_executor(), [self = shared_from_this()] { self->linger(); });
        else if (read_paused_) resume_reading();
    }

    void wait_writable() {
        waiting_ = true;
        socket_.async_wait(asio::ip::tcp::socket::wait_write, [self = shared_from_this()](std::error_code ec) {
            self->waiting_ = false;
            if (ec) { self->close(); return; }
            self->flush();
            if (self->read_paused_ && !self->close_when_flushed_) self->resume_reading();
            if (!self->writing() && self->handler_ && self->mode_ != mode::closed) self->handler_->on_written();
        });
    }

    // Waits for readability, then reads into one buffer per thread: an idle connection holds
    // no read buffer.
    void read() {
        if (reading_ || mode_ == mode::closed || (mode_ == mode::finishing && !lingering_)) return;
        if (!lingering_) {
            if (over_cap()) { read_paused_ = true; return; }     // resume_reading() goes on
            if (mode_ == mode::http && !pending_.empty()) return;  // parse_pending() goes on
        }
        reading_ = true;
        socket_.async_wait(asio::ip::tcp::socket::wait_read, [self = shared_from_this()](std::error_code ec) {
            self->reading_ = false;
            if (ec) { self->close(); return; }
            self->read_available();
        });
    }

    void read_available() {
        thread_local std::array<char, 16384> buffer;
        for (int rounds = 0; rounds < 16 && mode_ != mode::closed; ++rounds) {
            std::error_code ec;
            const std::size_t n = socket_.read_some(asio::buffer(buffer), ec);
            if (ec == asio::error::would_block || ec == asio::error::try_again) break;
            if (ec) { close(); return; }  // the peer's close (a lingering close ends here)
            if (tls_) {
                if (!decrypt(buffer.data(), n)) return;
            } else {
                feed(buffer.data(), n);
            }
            if (n < buffer.size() || over_cap() || (mode_ == mode::http && !pending_.empty())) break;
        }
        read();
    }

    void feed(const char* data, std::size_t n) {
        switch (mode_) {
        case mode::upgraded:
            handler_->on_read(data, n);
            return;
        case mode::serving:
        case mode::held:
            // Pipelined bytes wait for the answer to the current request; a peer that sends a
            // flood instead of waiting is cut off (server_options::max_pipelined_bytes).
            if (pending_.size() + n > limits_.max_pipelined_bytes) { close(); return; }
            pending_.append(data, n);
            return;
        case mode::finishing:
        case mode::closed:
            return;
        case mode::http:
            if (!pending_.empty()) {  // earlier bytes wait to be parsed: these go after them
                if (pending_.size() + n > limits_.max_pipelined_bytes) { close(); return; }
                pending_.append(data, n);
                return;
            }
            break;
        }
        while (n > 0 && mode_ == mode::http) {
            if (!reader_->started() && served_) since_ = clock::now();
            const http1::request_reader::result r = reader_->feed(data, n);
            if (r.what == http1::request_reader::error) {
                refuse(r.code, r.why);
                return;
            }
            data += r.used;
            n -= r.used;
            if (r.what == http1::request_reader::ready) {
                http_request req = reader_->take(remote_);
                req.secure = tls_ != nullptr;
                pending_.assign(data, n);
                n = 0;
                mode_ = mode::serving;
                owner_.route(shared_from_this(), std::move(req));
            } else if (r.used == 0) {
                break;
            }
        }
    }

    // ---- TLS (tls_ set): the codec and the handlers see plaintext; the socket ciphertext ----

    // Decrypts what was read and feeds the plaintext on; sends what the handshake answers.
    // False when the connection closed.
    bool decrypt(const char* data, std::size_t n) {
        tls_->feed_ciphertext(data, n);
        const tls_session::state st = tls_->read_plaintext([this](const char* p, std::size_t m) {
            if (mode_ != mode::closed) feed(p, m);
        });
        if (mode_ == mode::closed) return false;
        if (st == tls_session::state::failed) { tls_failed(tls_->error()); return false; }
        flush();
        if (st == tls_session::state::closed) { close(); return false; }  // the peer's close_notify
        return true;
    }

    // The write loop under TLS: plaintext from the queue is encrypted (shared frames are read
    // in place, gathered into records) while less than 64 KB of ciphertext waits; the
    // ciphertext goes out with the same non-blocking write_some. A slow peer's plaintext stays
    // in the queue, uncopied.
    void flush_tls() {
        for (;;) {
            while (!queue_.empty() && tls_->established()) {
                const std::size_t n = tls_->write_plaintext(queue_.buffers());
                if (n == 0) break;
                queue_.consume(n);
            }
            if (tls_->failed()) { fail_write(); return; }
            const std::string_view out = tls_->pending_ciphertext();
            if (out.empty()) break;
            std::size_t n = 0;
            if (!write_now(asio::buffer(out.data(), out.size()), n)) return;
            tls_->consume_ciphertext(n);
        }
        if (!queue_.empty()) return;  // before the handshake is done: the plaintext waits
        flushed();
    }

    // A handshake that failed or did not come in time: logged once (debug), and closed. A
    // plain HTTP request on the TLS port gets a plain 400 first, saying so.
    void tls_failed(const std::string& why) {
        if (tls_config_->log) tls_config_->log(log_level::debug, "TLS with " + remote_ + " failed: " + why);
        if (tls_->plain_http()) {
            static constexpr std::string_view answer =
                "HTTP/1.1 400 Bad Request\r\nServer: herald\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                "Content-Length: 47\r\n\r\nThis port speaks TLS: use https:// or wss://.\r\n";
            std::error_code ec;
            socket_.write_some(asio::buffer(answer.data(), answer.size()), ec);
        }
        failed_ = true;
        close();
    }

    // On close: the close_notify, with whatever ciphertext waits, in one non-blocking write.
    void say_goodbye() {
        if (failed_ || goodbye_said_) return;
        goodbye_said_ = true;
        tls_->close();
        const std::string_view out = tls_->pending_ciphertext();
        std::error_code ec;
        if (!out.empty()) socket_.write_some(asio::buffer(out.data(), out.size()), ec);
    }

    void refuse(int status, const std::string& why) {
        http_request dummy;
        mode_ = mode::serving;
        respond(dummy, http_response::error(status, "malformed_request", why), false);
    }

    asio::ip::tcp::socket socket_;
    connection_owner& owner_;
    const connection_limits& limits_;
    wake_batch* batch_;
    std::string remote_;

    mode mode_ = mode::http;
    bool reading_ = false, waiting_ = false, failed_ = false, close_when_flushed_ = false, draining_ = false;
    bool served_ = false;        // a request was answered (the next one's head deadline starts at its first byte)
    bool read_paused_ = false;   // over_cap(): resume_reading() once the peer takes its answers
    bool parse_posted_ = false;  // parse_pending() will run
    bool lingering_ = false;     // half-closed after the last answer (linger())
    bool chunked_ = false, parts_keep_alive_ = false;  // of a response in parts
    // Here with the other flags (and `mode` in one byte), not in padding of its own: 16 bytes
    // less per connection (the allocation falls to a smaller malloc size class).
    bool goodbye_said_ = false;  // the close_notify is written (linger, then close)
    clock::time_point since_;

    std::unique_ptr<http1::request_reader> reader_;  // HTTP mode only (null once upgraded)
    const connection_tls* tls_config_;
    std::unique_ptr<tls_session> tls_;  // null: plain HTTP
    std::string pending_;  // bytes after the current request

    std::shared_ptr<stream_handler> handler_;
    write_queue queue_;
};

} // namespace herald::net::detail
