// herald — the long-poll transport: WebSocket's fallback for networks that break it.
//
// Stateless by design: every poll carries the client's cursors, so that any server behind a
// round-robin balancer can answer it with no sticky session. A poll opens a short-lived hub
// session, subscribes each channel from its cursor (the same resume as a WebSocket's), and
// answers at once when something is waiting, or holds until a message comes or the timeout
// passes. Frames are the herald.v1 frames of every transport, written as they were encoded.
#pragma once

#include <herald/hub.hpp>
#include <herald/protocol.hpp>
#include <herald/net/transport.hpp>
#include <herald/detail/json_check.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace herald::transport {

/// Long-poll over HTTP/1.1 (`POST /herald/poll`, `POST /herald/publish`); see docs/protocol.md.
class longpoll {
public:
    static constexpr std::string_view name = "longpoll";
    struct options {
        bool enabled = true;
        std::string path = "/herald/poll";
        std::string publish_path = "/herald/publish";
        /// Longest a poll is held (a client may ask for less). Below typical proxy idle
        /// timeouts (60 s), so that a quiet poll ends before a proxy cuts it.
        std::chrono::milliseconds max_hold{25000};
        std::size_t max_channels_per_poll = 64;
        /// Held polls on this server at once; past it a poll gets 429 with Retry-After.
        std::size_t max_held_polls = 20000;
    };

    longpoll(net::transport_context& ctx, const options& opts) : ctx_(ctx), opts_(opts) {}

    std::size_t held() const noexcept { return held_.load(std::memory_order_relaxed); }

    bool serve(const net::connection_ptr& c, http_request& r) {
        const std::string_view path = r.path();
        if (path != opts_.path && path != opts_.publish_path) return false;
        if (!ctx_.origin_allowed(r)) {
            c->respond(r, http_response::error(403, error::forbidden, "origin not allowed"));
            return true;
        }
        if (r.method != "POST") {
            c->respond(r, http_response::error(405, error::malformed_frame, "POST expected"));
            return true;
        }
        if (ctx_.draining) {
            c->respond(r, draining_response());
            return true;
        }
        std::optional<principal> who = ctx_.hub.authenticate(r);
        if (!who) {
            c->respond(r, http_response::error(401, error::unauthenticated));
            return true;
        }
        if (path == opts_.publish_path) publish(c, r, *who);
        else poll(c, r, std::move(*who));
        return true;
    }

private:
    class held_poll;

    http_response draining_response() {
        auto f = protocol::make_reconnect(ctx_.jitter());
        http_response res = http_response::json(503, "{\"frames\":[" + f->text + "]}");
        res.headers.emplace_back("Retry-After", std::to_string(f->retry_after.count() / 1000 + 1));
        return res;
    }

    static http_response bad_request(std::string_view message) {
        return http_response::error(400, error::malformed_frame, message);
    }

    void publish(const net::connection_ptr& c, const http_request& r, const principal& who) {
        std::error_code ec;
        protocol::request req = protocol::parse_request(inject_type(r.body, "publish"), ec);
        if (ec) {
            c->respond(r, http_response::json(400, "{\"frames\":[" + protocol::make_error(ec, req.channel, req.id)->text + "]}"));
            return;
        }
        if (!ctx_.hub.may(who, action::publish, req.channel)) {
            c->respond(r, http_response::json(403, "{\"frames\":[" + protocol::make_error(error::forbidden, req.channel, req.id)->text + "]}"));
            return;
        }
        // The backplane may answer on another thread: answer on the connection's strand.
        auto request = std::make_shared<http_request>(r);
        ctx_.hub.async_publish(req.channel, std::move(req.data),
            [c, request, channel = req.channel, id = req.id](std::error_code e, position p) {
                frame_ptr f = e ? protocol::make_error(e, channel, id) : protocol::make_published(channel, std::move(p), id);
                const int status = !e ? 200 : e == error::backplane_unavailable ? 503 : 400;
                c->post([c, request, status, f] {
                    c->respond(*request, http_response::json(status, "{\"frames\":[" + f->text + "]}"));
                });
            });
    }

    // `POST /herald/publish` bodies are publish frames whose `type` may be left out. The type
    // goes in as text after the opening brace: the rest (the payload) keeps its bytes, and no
    // recursive dump() runs on client data (a body nested too deep is left to parse_request).
    static std::string inject_type(const std::string& body, std::string_view type) {
        if (!herald::detail::json_depth_within(body, protocol::max_frame_depth)) return body;
        const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
        if (!j.is_object() || j.contains("type")) return body;
        const std::size_t brace = body.find('{') + 1;  // an object: its first '{' opens it
        std::string out = body.substr(0, brace);
        out += "\"type\":";
        out += nlohmann::json(std::string(type)).dump();
        if (!j.empty()) out += ',';
        out.append(body, brace, std::string::npos);
        return out;
    }

    void poll(const net::connection_ptr& c, const http_request& r, principal who);

    net::transport_context& ctx_;
    options opts_;
    std::atomic<std::size_t> held_{0};
};

/// One poll in progress: its session, its deadline, the request to answer.
class longpoll::held_poll final : public net::stream_handler {
public:
    using clock = net::clock;

    held_poll(longpoll& t, net::connection_ptr c, http_request r, session_ptr s,
              std::set<std::string> resumed, clock::time_point deadline)
        : t_(t), conn_(c), request_(std::move(r)), session_(std::move(s)), resumed_(std::move(resumed)),
          deadline_(deadline) {
        t_.held_.fetch_add(1, std::memory_order_relaxed);
    }
    ~held_poll() override {
        end();
        t_.held_.fetch_sub(1, std::memory_order_relaxed);
    }

    /// Queues `extra` first (errors found while parsing), takes what the session holds, and
    /// answers if there is anything worth an answer. @returns true when it answered.
    bool answer_if_ready(std::vector<frame_ptr> extra = {}) {
        if (!session_) return true;
        std::vector<frame_ptr> frames = std::move(extra);
        session_->take(frames);
        // On a poll every channel is subscribed again: a `subscribed` that merely confirms a
        // resume is noise. New channels and failed resumes are news.
        for (const frame_ptr& f : frames)
            if (!(f->type == frame_type::subscribed && f->recovered && resumed_.count(f->channel))) kept_.push_back(f);
        if (session_->closed() && session_->close_reason() == error::slow_consumer) {
            // More waited than one answer may carry: send what was kept; the next poll resumes.
            respond();
            return true;
        }
        if (kept_.empty()) return false;
        respond();
        return true;
    }

    /// Answers with what was kept, even nothing.
    void answer_now() { respond(); }

    void on_read(const char*, std::size_t) override {}
    void on_wake() override { answer_if_ready(); }
    void on_tick(clock::time_point now) override {
        if (now >= deadline_) respond();
    }
    void on_drain(std::chrono::milliseconds after) override {
        kept_.push_back(protocol::make_reconnect(after));
        respond(503, after);
    }
    void on_close() override { end(); }

private:
    void respond(int status = 200, std::optional<std::chrono::milliseconds> retry_after = std::nullopt) {
        auto c = conn_.lock();
        if (!c || !session_) return;
        std::string body = "{\"frames\":[";
        for (std::size_t i = 0; i < kept_.size(); ++i) {
            if (i) body += ',';
            body += kept_[i]->text;
        }
        body += "]}";
        kept_.clear();
        end();
        http_response res = http_response::json(status, std::move(body));
        if (retry_after) res.headers.emplace_back("Retry-After", std::to_string(retry_after->count() / 1000 + 1));
        c->respond(request_, std::move(res));
    }

    void end() {
        if (session_) {
            t_.ctx_.hub.close_session(session_);
            session_.reset();
        }
    }

    longpoll& t_;
    std::weak_ptr<net::connection> conn_;
    http_request request_;
    session_ptr session_;
    std::set<std::string> resumed_;
    clock::time_point deadline_;
    std::vector<frame_ptr> kept_;
};

inline void longpoll::poll(const net::connection_ptr& c, const http_request& r, principal who) {
    std::error_code ec;
    protocol::poll_request req = protocol::parse_poll(r.body, ec, opts_.max_hold);
    if (ec) return c->respond(r, bad_request(req.problem));
    if (req.channels.size() > opts_.max_channels_per_poll)
        return c->respond(r, bad_request("too many channels in one poll"));
    const auto hold = req.timeout.value_or(opts_.max_hold);  // parse_poll clamped it to max_hold
    if (held() >= opts_.max_held_polls) {
        http_response res = http_response::error(429, error::timed_out, "too many held polls");
        res.headers.emplace_back("Retry-After", "2");
        return c->respond(r, std::move(res));
    }

    session_ptr s = ctx_.hub.open_session(std::move(who), c->waker());
    std::vector<frame_ptr> errors;
    std::set<std::string> resumed;
    for (protocol::poll_channel& ch : req.channels) {
        if (ch.error) {
            errors.push_back(protocol::make_error(ch.error, ch.name, 0, "cursor must be {epoch, offset} or null"));
            continue;
        }
        if (ch.since) resumed.insert(ch.name);
        if (std::error_code e = ctx_.hub.subscribe(s, ch.name, std::move(ch.since))) errors.push_back(protocol::make_error(e, ch.name));
    }
    auto h = std::make_shared<held_poll>(*this, c, r, std::move(s), std::move(resumed),
                                         net::clock::now() + hold);
    c->hold(h);  // before answering: a wake may come at once
    // `timeout: 0` asks for what is there now, held or not (clients use it for their first
    // poll, so that going live is not delayed by a held request).
    if (!h->answer_if_ready(std::move(errors)) && hold.count() == 0) h->answer_now();
}

} // namespace herald::transport
