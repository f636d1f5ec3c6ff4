// A herald::net::connection with no socket under it, for driving a transport in process
// (Beast's test::stream is the model): it records what the transport writes and answers,
// runs what the transport posts when the test says so, and plays the peer's part, faults
// included: a peer that stops reading, a peer that leaves, time that passes, a drain.
#pragma once

#include <herald/net/connection.hpp>
#include <herald/net/http.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::test {

/// An HTTP request as a client sends it; `headers` in order, names as given.
inline http_request make_request(std::string method, std::string target,
                                 std::vector<std::pair<std::string, std::string>> headers = {},
                                 std::string body = {}) {
    http_request r;
    r.method = std::move(method);
    r.target = std::move(target);
    r.remote = "127.0.0.1:40000";
    r.headers = std::move(headers);
    r.body = std::move(body);
    return r;
}

/// The bytes of `r` as they came over the wire (what connection::upgrade() replays).
inline std::string wire_bytes(const http_request& r) {
    std::string s = r.method + " " + r.target + " " + r.version + "\r\n";
    for (const auto& [k, v] : r.headers) s += k + ": " + v + "\r\n";
    s += "\r\n";
    return s + r.body;
}

/// One connection, driven by the test on the test's thread.
///
/// What it records: `written`, every byte written (write(), and write_shared() once flushed),
/// in order; `responses`, every HTTP answer with its status, headers and body; and counts of
/// hold(), upgrade(), close_after_flush() and close() calls.
///
/// When things happen: post()ed functions and the on_wake() that waker() asks for are queued,
/// and run when the test calls run() (the strand, as the test sees it). A handler retired by
/// respond() is released there too, as the network host releases it from a posted function.
///
/// Faults: write_budget(n) lets n more bytes through, after which writes wait and writing()
/// stays true (a peer that stopped reading) until peer_reads(); peer_closes() is a peer that
/// vanished (the handler hears on_close()); tick(now) and drain() are the host's timer and
/// the server's stop.
///
/// Thread safety: post() and waker() from any thread, the rest from the test's thread.
class test_connection final : public net::connection, public std::enable_shared_from_this<test_connection> {
public:
    /// An HTTP answer as the transport gave it.
    struct response {
        int status = 0;
        std::string content_type;
        std::vector<std::pair<std::string, std::string>> headers;
        std::string body;
        bool keep_alive = true;  ///< what the transport allowed and the request asked for
        bool in_parts = false;   ///< respond_in_parts(): `body` gathers the parts
        bool ended = false;      ///< in parts: end_parts() came

        /// First value of header `name` (case-insensitive), or empty.
        std::string_view header(std::string_view name) const {
            for (const auto& [k, v] : headers) {
                bool same = k.size() == name.size();
                for (std::size_t i = 0; same && i < k.size(); ++i) same = (k[i] | 0x20) == (name[i] | 0x20);
                if (same) return v;
            }
            return {};
        }
    };

    static std::shared_ptr<test_connection> make() { return std::make_shared<test_connection>(); }

    // ---- what the transport did ------------------------------------------------------

    std::string written;
    std::vector<response> responses;
    int holds = 0, upgrades = 0, closes_after_flush = 0, closes = 0;
    std::size_t wakes = 0;  ///< on_wake() calls delivered by run()

    /// The handler installed by hold(), upgrade() or respond_in_parts(), if any.
    const std::shared_ptr<net::stream_handler>& handler() const noexcept { return handler_; }
    bool upgraded() const noexcept { return mode_ == mode::upgraded; }
    /// Bytes queued and not yet written (held back by the write budget or waiting for flush()).
    std::size_t pending_bytes() const noexcept {
        std::size_t n = 0;
        for (const auto& c : out_) n += c.size();
        return n - skip_;
    }

    // ---- the host's and the peer's part ----------------------------------------------

    /// Remembers `r` as the request being served: its bytes are what upgrade() replays.
    void arrives(const http_request& r) {
        replay_ = wire_bytes(r);
        if (mode_ == mode::http) mode_ = mode::serving;
    }

    /// Runs what was posted (and what that posts), until nothing is left. @returns how many ran.
    std::size_t run() {
        std::size_t ran = 0;
        for (;;) {
            std::deque<std::function<void()>> now;
            {
                std::lock_guard<std::mutex> lock(mu_);
                now.swap(posted_);
            }
            if (now.empty()) return ran;
            for (auto& fn : now) {
                fn();
                ++ran;
            }
        }
    }

    /// The peer sends `bytes` (an upgraded connection: fed to the handler).
    void receive(std::string_view bytes) {
        if (mode_ == mode::upgraded && handler_) handler_->on_read(bytes.data(), bytes.size());
    }

    /// The next `n` bytes are written; after them writes wait (writing() stays true).
    void write_budget(std::size_t n) { budget_ = n; }
    /// The peer reads again: everything queued is written, and the handler hears on_written().
    void peer_reads() {
        budget_.reset();
        const bool was_waiting = !out_.empty();
        flush();
        if (was_waiting && handler_ && mode_ != mode::closed) handler_->on_written();
    }
    /// The peer is gone (a reset, a closed tab): the connection closes and the handler hears on_close().
    void peer_closes() { close(); }

    /// The host's timer: the handler hears on_tick(now).
    void tick(net::clock::time_point now) {
        if (mode_ != mode::closed && handler_) handler_->on_tick(now);
    }
    /// The server drains: the handler hears on_drain(after).
    void drain(std::chrono::milliseconds after) {
        draining_ = true;
        if (mode_ != mode::closed && handler_) handler_->on_drain(after);
    }

    // ---- net::connection ---------------------------------------------------------------

    const std::string& remote() const noexcept override { return remote_; }
    bool open() const noexcept override { return mode_ != mode::closed; }

    void post(std::function<void()> fn) override {
        std::lock_guard<std::mutex> lock(mu_);
        posted_.push_back([w = weak_from_this(), fn = std::move(fn)] {
            if (w.lock()) fn();
        });
    }

    session::wake_function waker() override {
        return [w = weak_from_this()] {
            if (auto c = w.lock())
                c->post([w] {
                    auto self = w.lock();
                    if (self && self->handler_ && self->mode_ != mode::closed) {
                        ++self->wakes;
                        self->handler_->on_wake();
                    }
                });
        };
    }

    void write(std::string bytes) override {
        if (mode_ == mode::closed || bytes.empty()) return;
        out_.push_back({std::move(bytes), nullptr});
        flush();
    }

    void write_shared(std::string_view prefix, frame_ptr f) override {
        if (mode_ == mode::closed) return;
        out_.push_back({std::string(prefix.substr(0, max_prefix)), std::move(f)});
    }

    void flush() override {
        while (!out_.empty()) {
            const chunk& c = out_.front();
            std::string bytes = c.prefix;
            if (c.frame) bytes += c.frame->text;
            std::size_t n = bytes.size() - skip_;
            if (budget_) n = std::min(n, *budget_);
            written.append(bytes, skip_, n);
            if (budget_) *budget_ -= n;
            skip_ += n;
            if (skip_ < bytes.size()) return;  // the peer stopped reading
            out_.pop_front();
            skip_ = 0;
        }
        if (mode_ == mode::finishing) post([this] { close(); });
    }

    bool writing() const noexcept override { return !out_.empty(); }

    void respond(const http_request& req, http_response&& res, bool keep_alive = true) override {
        if (mode_ == mode::closed) return;
        keep_alive = keep_alive && req.keep_alive() && !draining_;
        responses.push_back({res.status, std::move(res.content_type), std::move(res.headers), res.body_text(),
                             keep_alive});
        retire_handler();
        if (keep_alive) mode_ = mode::http;
        else close_after_flush();
    }

    void respond_in_parts(const http_request& req, http_response&& res, std::shared_ptr<net::stream_handler> h) override {
        if (mode_ == mode::closed) return;
        responses.push_back({res.status, std::move(res.content_type), std::move(res.headers), std::move(res.body),
                             req.keep_alive() && !draining_, true});
        hold(std::move(h));
        --holds;  // counted as parts, not as a hold
    }

    void write_part(std::string_view bytes) override {
        if (mode_ == mode::held && !responses.empty()) responses.back().body.append(bytes);
    }

    void end_parts() override {
        if (mode_ != mode::held || responses.empty()) return;
        responses.back().ended = true;
        retire_handler();
        if (responses.back().keep_alive) mode_ = mode::http;
        else close_after_flush();
    }

    void hold(std::shared_ptr<net::stream_handler> h) override {
        ++holds;
        handler_ = std::move(h);
        mode_ = mode::held;
    }

    void upgrade(std::shared_ptr<net::stream_handler> h) override {
        ++upgrades;
        handler_ = std::move(h);
        mode_ = mode::upgraded;
        std::string bytes = std::move(replay_);
        replay_.clear();
        if (!bytes.empty()) handler_->on_read(bytes.data(), bytes.size());
    }

    void close_after_flush() override {
        ++closes_after_flush;
        if (mode_ == mode::closed) return;
        mode_ = mode::finishing;
        if (!writing()) post([this] { close(); });
    }

    void close() override {
        if (mode_ == mode::closed) return;
        ++closes;
        mode_ = mode::closed;
        out_.clear();
        skip_ = 0;
        if (handler_) {
            std::shared_ptr<net::stream_handler> h = handler_;
            retire_handler();
            h->on_close();
        }
    }

private:
    enum class mode { http, serving, held, upgraded, finishing, closed };
    struct chunk {
        std::string prefix;  // or the whole of a write()
        frame_ptr frame;
        std::size_t size() const noexcept { return prefix.size() + (frame ? frame->text.size() : 0); }
    };

    // The handler may be the caller: release it later, from run().
    void retire_handler() {
        if (!handler_) return;
        std::lock_guard<std::mutex> lock(mu_);
        posted_.push_back([h = std::move(handler_)] {});
        handler_.reset();
    }

    std::string remote_ = "127.0.0.1:40000";
    mode mode_ = mode::http;
    bool draining_ = false;
    std::string replay_;
    std::shared_ptr<net::stream_handler> handler_;
    std::deque<chunk> out_;
    std::size_t skip_ = 0;  // bytes of out_.front() already written
    std::optional<std::size_t> budget_;

    std::mutex mu_;
    std::deque<std::function<void()>> posted_;
};

namespace detail {
inline std::string first_code(const nlohmann::json& j) {
    if (j.is_object())
        if (auto c = j.find("code"); c != j.end() && c->is_string()) return c->get<std::string>();
    if (j.is_object() || j.is_array())
        for (const nlohmann::json& v : j)
            if (std::string c = first_code(v); !c.empty()) return c;
    return {};
}
} // namespace detail

/// The error code an answer names (`"malformed_frame"`, `"forbidden"`...), wherever its body
/// puts it: tests check the status and the code, not the shape of the body. Empty if none.
inline std::string error_code_of(const test_connection::response& r) {
    return detail::first_code(nlohmann::json::parse(r.body, nullptr, false));
}

/// Offers `r` to transport `t` on `c`, as the network host does (see basic_server::route).
/// @returns whether `t` took it.
template <class Transport>
bool offer(Transport& t, const std::shared_ptr<test_connection>& c, http_request r) {
    c->arrives(r);
    return t.serve(c, r);
}

} // namespace herald::test
