// herald — one TCP connection of the server: HTTP/1.1 with keep-alive until a transport
// takes it over (a WebSocket upgrade, a held long-poll). herald owns the socket and the
// writes; transports see it as a net::connection (net/connection.hpp).
#pragma once

#include <herald/frame.hpp>
#include <herald/net/connection.hpp>
#include <herald/net/http.hpp>

#include <asio.hpp>
#include <websocketpp/http/request.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
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

struct connection_limits {
    std::size_t max_body_bytes = 64 * 1024;
    std::chrono::milliseconds request_timeout{30000};     ///< a request must arrive whole within this
    std::chrono::milliseconds keep_alive_timeout{75000};  ///< idle keep-alive connections close after this
};

class tcp_connection final : public net::connection, public std::enable_shared_from_this<tcp_connection> {
public:
    using executor_type = asio::any_io_executor;  // the connection's strand

    /// `batch`: where the wakes of this connection go when its executor is single-threaded
    /// (null: each wake is posted to the connection's strand).
    tcp_connection(asio::ip::tcp::socket socket, connection_owner& owner, const connection_limits& limits,
               wake_batch* batch = nullptr)
        : socket_(std::move(socket)), owner_(owner), limits_(limits), batch_(batch), since_(clock::now()) {
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
        out_.emplace_back();
        out_.back().owned = std::move(bytes);
        flush();
    }

    void write_shared(std::string_view prefix, frame_ptr f) override {
        if (mode_ == mode::closed) return;
        chunk c;
        const std::size_t n = std::min(prefix.size(), c.hdr.size());
        std::copy_n(prefix.data(), n, c.hdr.data());
        c.hdr_len = static_cast<std::uint8_t>(n);
        c.frame = std::move(f);
        out_.push_back(std::move(c));
    }

    /// The write is attempted at once, non-blocking, from the caller's stack: gathered, up to
    /// 32 frames per system call, with no asio operation, allocation or posted completion on
    /// the way (a fan-out to 1000 subscribers is 1000 of these in a row). Only what the socket
    /// does not take waits for writability; the handler hears on_written() once that is out.
    /// A write error closes the connection from a posted handler, never under the caller.
    void flush() override {
        if (waiting_ || failed_ || mode_ == mode::closed) return;
        while (head_ < out_.size()) {
            bufs_.clear();
            std::size_t skip = skip_;
            for (std::size_t i = head_; i < out_.size() && bufs_.size() + 2 <= max_write_buffers; ++i, skip = 0) {
                const chunk& c = out_[i];
                if (!c.frame) {
                    bufs_.emplace_back(c.owned.data() + skip, c.owned.size() - skip);
                } else if (skip < c.hdr_len) {
                    bufs_.emplace_back(c.hdr.data() + skip, c.hdr_len - skip);
                    bufs_.emplace_back(c.frame->text.data(), c.frame->text.size());
                } else {
                    bufs_.emplace_back(c.frame->text.data() + (skip - c.hdr_len), c.frame->text.size() - (skip - c.hdr_len));
                }
            }
            std::error_code ec;
            const std::size_t n = socket_.write_some(bufs_, ec);
            if (ec == asio::error::would_block || ec == asio::error::try_again) {
                wait_writable();
                return;
            }
            if (ec) {
                failed_ = true;
                asio::post(get_executor(), [self = shared_from_this()] { self->close(); });
                return;
            }
            consume(n);
        }
        out_.clear();
        head_ = skip_ = 0;
        if (out_.capacity() > 256) std::vector<chunk>().swap(out_);
        if (bufs_.capacity() > 2 * max_write_buffers) std::vector<asio::const_buffer>().swap(bufs_);
        if (close_when_flushed_) asio::post(get_executor(), [self = shared_from_this()] { self->close(); });
    }

    /// Whether bytes wait to be written (the peer is not reading as fast as we write).
    bool writing() const noexcept override { return waiting_ || !out_.empty(); }

    /// Answers the request being served. Keeps the connection for the next request when
    /// the client wants it (and `keep_alive` allows), else closes once written.
    void respond(const http_request& req, http_response&& res, bool keep_alive = true) override {
        if (mode_ == mode::closed) return;
        keep_alive = keep_alive && req.keep_alive() && !draining_;
        std::string head = response_head(res, keep_alive, "Content-Length: " + std::to_string(res.body.size()));
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
        write(response_head(res, parts_keep_alive_, chunked_ ? "Transfer-Encoding: chunked" : ""));
        hold(std::move(h));
        write_part(res.body);
    }

    /// Writes one part of a response begun with respond_in_parts().
    void write_part(std::string_view bytes) override {
        if (mode_ != mode::held || bytes.empty()) return;
        if (!chunked_) return write(std::string(bytes));
        char size[20];
        const int n = std::snprintf(size, sizeof size, "%zx\r\n", bytes.size());
        std::string chunk(size, static_cast<std::size_t>(n));
        chunk.append(bytes);
        chunk += "\r\n";
        write(std::move(chunk));
    }

    /// Ends a response begun with respond_in_parts(); the connection goes on to the next request.
    void end_parts() override {
        if (mode_ != mode::held) return;
        if (chunked_) write("0\r\n\r\n");
        retire_handler();
        next_request(parts_keep_alive_);
    }

    /// Hands the connection to a transport for good (WebSocket). `replay` — the request head
    /// as received, and anything after it — is fed to the handler first.
    void upgrade(std::shared_ptr<stream_handler> h) override {
        handler_ = std::move(h);
        mode_ = mode::upgraded;
        std::string bytes = std::move(raw_);
        bytes += pending_;
        pending_.clear();
        raw_.clear();
        raw_.shrink_to_fit();
        request_.reset();
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
        std::error_code ec;
        socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
        socket_.close(ec);
        out_.clear();
        head_ = skip_ = 0;
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
        if (handler_) { handler_->on_tick(now); return; }
        if (mode_ == mode::http) {
            const bool mid_request = request_ && request_bytes_ > 0;
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
        if (mode_ == mode::http && !(request_ && request_bytes_ > 0)) close();
    }

private:
    enum class mode { http, serving, held, upgraded, finishing, closed };

    // The status line and headers of `res`, with `framing` (Content-Length or
    // Transfer-Encoding; none: the body ends with the connection).
    static std::string response_head(const http_response& res, bool keep_alive, std::string_view framing) {
        std::string head;
        head.reserve(160 + res.body.size());
        head += "HTTP/1.1 ";
        head += std::to_string(res.status);
        head += ' ';
        head += http_reason(res.status);
        head += "\r\nServer: herald\r\nCache-Control: no-store\r\nContent-Type: ";
        head += res.content_type;
        if (!framing.empty()) { head += "\r\n"; head += framing; }
        head += keep_alive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
        for (const auto& [k, v] : res.headers) { head += k; head += ": "; head += v; head += "\r\n"; }
        head += "\r\n";
        return head;
    }

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

    struct chunk {
        std::string owned;
        frame_ptr frame;
        std::array<char, net::connection::max_prefix> hdr{};
        std::uint8_t hdr_len = 0;
        std::size_t size() const noexcept { return frame ? hdr_len + frame->text.size() : owned.size(); }
    };
    static constexpr std::size_t max_write_buffers = 64;  // asio's gather limit per system call

    // Drops what was written from the front of out_.
    void consume(std::size_t n) {
        while (n > 0 && head_ < out_.size()) {
            const std::size_t left = out_[head_].size() - skip_;
            if (n < left) { skip_ += n; return; }
            n -= left;
            out_[head_].frame.reset();
            out_[head_].owned = std::string();
            ++head_;
            skip_ = 0;
        }
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
            feed(buffer.data(), n);
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
            if (!request_) {
                request_ = std::make_unique<websocketpp::http::parser::request>();
                request_->set_max_body_size(limits_.max_body_bytes);
                raw_.clear();
                request_bytes_ = 0;
                since_ = clock::now();
            }
            std::size_t used = 0;
            try {
                used = request_->consume(data, n);
            } catch (const websocketpp::http::exception& e) {
                refuse(static_cast<int>(e.m_error_code), e.what());
                return;
            } catch (const std::exception& e) {
                refuse(400, e.what());
                return;
            }
            if (raw_.size() + used <= 16384 + limits_.max_body_bytes) raw_.append(data, used);
            request_bytes_ += used;
            data += used;
            n -= used;
            if (request_->ready()) {
                http_request r = make_request(*request_);
                pending_.assign(data, n);
                n = 0;
                mode_ = mode::serving;
                auto keep = std::move(request_);
                owner_.route(shared_from_this(), std::move(r));
            } else if (used == 0) {
                break;
            }
        }
    }

    void refuse(int status, const std::string& why) {
        if (status < 400 || status > 599) status = 400;
        http_request dummy;
        mode_ = mode::serving;
        respond(dummy, http_response::error(status, "malformed_request", why), false);
    }

    http_request make_request(websocketpp::http::parser::request& p) {
        http_request r;
        r.method = p.get_method();
        r.target = p.get_uri();
        r.version = p.get_version();
        r.remote = remote_;
        for (const auto& [k, v] : p.get_headers()) r.headers.emplace_back(k, v);
        r.body = p.get_body();
        return r;
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

    std::unique_ptr<websocketpp::http::parser::request> request_;
    std::size_t request_bytes_ = 0;
    std::string raw_;      // the current request as received (for the WebSocket handshake)
    std::string pending_;  // bytes after the current request

    std::shared_ptr<stream_handler> handler_;
    std::vector<chunk> out_;                  // queued; [head_] is partly written (skip_ bytes)
    std::size_t head_ = 0, skip_ = 0;
    std::vector<asio::const_buffer> bufs_;
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
