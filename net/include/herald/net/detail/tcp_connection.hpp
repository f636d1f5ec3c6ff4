// herald — one TCP connection of the server: HTTP/1.1 with keep-alive until a transport
// takes it over (a WebSocket upgrade, a held long-poll). herald owns the socket and the
// writes; transports see it as a net::connection (net/connection.hpp). The bytes are
// http1.hpp's (the request reader, the response encoding) and write_queue.hpp's; this file
// keeps the socket, the connection's mode and its handler.
#pragma once

#include <herald/frame.hpp>
#include <herald/net/connection.hpp>
#include <herald/net/http.hpp>
#include <herald/net/detail/http1.hpp>
#include <herald/net/detail/tls.hpp>
#include <herald/net/detail/write_queue.hpp>
#include <herald/options.hpp>

#include <asio.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::net::detail {

class tcp_connection;

/// The wakes of connections that run on one single-threaded executor, run together: a
/// publish to 1000 subscribers posts one handler that pumps the 1000 connections, instead
/// of 1000 handlers (and 1000 strand round trips). add() is safe from any thread.
class wake_batch {
public:
    explicit wake_batch(asio::any_io_executor ex) : ex_(std::move(ex)) {}
    wake_batch(const wake_batch&) = delete;
    wake_batch& operator=(const wake_batch&) = delete;

    void add(std::shared_ptr<tcp_connection> c) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            ready_.push_back(std::move(c));
            if (posted_) return;
            posted_ = true;
        }
        asio::post(ex_, [this] { run(); });
    }

    /// Drops what waits (the server stops).
    void clear() {
        std::lock_guard<std::mutex> lock(mu_);
        ready_.clear();
    }

private:
    inline void run();

    asio::any_io_executor ex_;
    std::mutex mu_;
    std::vector<std::shared_ptr<tcp_connection>> ready_, running_;
    bool posted_ = false;
};

/// The server, as a connection sees it.
class connection_owner {
public:
    virtual void route(const std::shared_ptr<tcp_connection>& c, http_request&& r) = 0;
    virtual void forget(tcp_connection* c) noexcept = 0;

protected:
    ~connection_owner() = default;
};

struct connection_limits : http1::reader_limits {
    std::chrono::milliseconds request_timeout{30000};     ///< a request must arrive whole within this
    std::chrono::milliseconds keep_alive_timeout{75000};  ///< idle keep-alive connections close after this
};

/// TLS on the server's connections (server_options::tls), shared by all of them.
struct connection_tls {
    std::unique_ptr<tls_context> context;
    std::chrono::milliseconds handshake_timeout{10000};
    log_function log;
};

class tcp_connection final : public net::connection, public std::enable_shared_from_this<tcp_connection> {
public:
    using executor_type = asio::any_io_executor;  // the connection's strand

    /// `batch`: where the wakes of this connection go when its executor is single-threaded
    /// (null: each wake is posted to the connection's strand). `tls`: https (null: plain).
    tcp_connection(asio::ip::tcp::socket socket, connection_owner& owner, const connection_limits& limits,
               wake_batch* batch = nullptr, const connection_tls* tls = nullptr)
        : socket_(std::move(socket)), owner_(owner), limits_(limits), batch_(batch), since_(clock::now()),
          reader_(limits_), tls_config_(tls) {
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
    bool open() const noexcept override { return mode_ != mode::closed; }

    void post(std::function<void()> fn) override {
        asio::post(get_executor(), [w = weak_from_this(), fn = std::move(fn)] {
            if (w.lock()) fn();
        });
    }

    /// Joins the connection's wake batch (one I/O thread), or posts to its strand.
    session::wake_function waker() override {
        if (batch_)
            return [w = weak_from_this(), b = batch_] {
                if (auto c = w.lock()) b->add(std::move(c));
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
        std::string head = http1::response_head(res, keep_alive, "Content-Length: " + std::to_string(res.body.size()));
        if (req.method != "HEAD") head += res.body;
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
        std::string bytes = reader_.take_raw();
        bytes += pending_;
        pending_.clear();
        reader_.reset();
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
        if (!writing()) asio::post(get_executor(), [self = shared_from_this()] { self->close(); });
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

    void tick(clock::time_point now) {
        if (mode_ == mode::closed) return;
        if (tls_ && !tls_->established() && now - since_ > tls_config_->handshake_timeout) {
            tls_failed("no TLS handshake in time");
            return;
        }
        if (handler_) { handler_->on_tick(now); return; }
        if (mode_ == mode::http) {
            const bool mid_request = reader_.started();
            if (mid_request && now - since_ > limits_.request_timeout) {
                http_request dummy;
                respond(dummy, http_response::error(408, error::timed_out, "request not received in time"), false);
            } else if (!mid_request && now - since_ > limits_.keep_alive_timeout) {
                close();
            }
        }
    }

    void drain(std::chrono::milliseconds after) {
        draining_ = true;
        if (mode_ == mode::closed) return;
        if (handler_) { handler_->on_drain(after); return; }
        if (mode_ == mode::http && !reader_.started()) close();
    }

private:
    enum class mode { http, serving, held, upgraded, finishing, closed };

    // After a response: close once written, or wait for the next request (which may have
    // come, pipelined, while this one was served).
    void next_request(bool keep_alive) {
        if (!keep_alive) { close_after_flush(); return; }
        mode_ = mode::http;
        since_ = clock::now();
        if (!pending_.empty()) {
            std::string p;
            p.swap(pending_);
            asio::post(get_executor(), [self = shared_from_this(), p = std::move(p)] { self->feed(p.data(), p.size()); });
        }
    }

    // One non-blocking write_some: false when the socket is full (the rest waits for
    // writability) or failed (the connection closes from a posted handler).
    template <class Buffers>
    bool write_now(const Buffers& buffers, std::size_t& n) {
        std::error_code ec;
        n = socket_.write_some(buffers, ec);
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
        if (close_when_flushed_) asio::post(get_executor(), [self = shared_from_this()] { self->close(); });
    }

    void wait_writable() {
        waiting_ = true;
        socket_.async_wait(asio::ip::tcp::socket::wait_write, [self = shared_from_this()](std::error_code ec) {
            self->waiting_ = false;
            if (ec) { self->close(); return; }
            self->flush();
            if (!self->writing() && self->handler_ && self->mode_ != mode::closed) self->handler_->on_written();
        });
    }

    // Waits for readability, then reads into one buffer per thread: an idle connection holds
    // no read buffer.
    void read() {
        if (reading_ || mode_ == mode::closed || mode_ == mode::finishing) return;
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
            if (ec) { close(); return; }
            if (tls_) {
                if (!decrypt(buffer.data(), n)) return;
            } else {
                feed(buffer.data(), n);
            }
            if (n < buffer.size()) break;
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
            // flood instead of waiting is cut off.
            if (pending_.size() + n > 65536) { close(); return; }
            pending_.append(data, n);
            return;
        case mode::finishing:
        case mode::closed:
            return;
        case mode::http:
            break;
        }
        while (n > 0 && mode_ == mode::http) {
            if (!reader_.started()) since_ = clock::now();
            const http1::request_reader::result r = reader_.feed(data, n);
            if (r.what == http1::request_reader::error) {
                refuse(r.code, r.why);
                return;
            }
            data += r.used;
            n -= r.used;
            if (r.what == http1::request_reader::ready) {
                http_request req = reader_.take(remote_);
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
        if (failed_) return;
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
    bool chunked_ = false, parts_keep_alive_ = false;  // of a response in parts
    clock::time_point since_;

    http1::request_reader reader_;
    const connection_tls* tls_config_;
    std::unique_ptr<tls_session> tls_;  // null: plain HTTP
    std::string pending_;  // bytes after the current request

    std::shared_ptr<stream_handler> handler_;
    write_queue queue_;
};

inline void wake_batch::run() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        running_.swap(ready_);
        posted_ = false;
    }
    for (auto& c : running_) c->wake();
    running_.clear();
    if (running_.capacity() > 4096) std::vector<std::shared_ptr<tcp_connection>>().swap(running_);
}

} // namespace herald::net::detail
