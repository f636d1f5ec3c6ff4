// herald — the long-poll transport: WebSocket's fallback for networks that break it.
//
// Stateless by design: every poll carries the client's cursors, so that any server behind a
// round-robin balancer can answer it with no sticky session. A poll opens a short-lived hub
// session, subscribes each channel from its cursor (the same resume as a WebSocket's), and
// answers at once when something is waiting, or holds until a message comes or the timeout
// passes. Frames are the herald.v1 frames of every transport, written as they were encoded.
#pragma once

#include <herald/hub.hpp>
#include <herald/peer.hpp>
#include <herald/protocol.hpp>
#include <herald/net/transport.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <map>
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
        /// Bytes of frames one answer carries (at least one frame, whatever its size). What
        /// does not fit is not lost: the answer stops before it, in order, and the client's
        /// next poll (at once: something is waiting) resumes each channel from its cursor.
        std::size_t max_answer_bytes = 1024 * 1024;
    };

    longpoll(net::transport_context& ctx, const options& opts) : ctx_(ctx), opts_(opts) {}

    /// Polls held now (the server's metrics count them: herald_longpoll_held_polls).
    std::size_t held() const noexcept {
        return static_cast<std::size_t>(ctx_.metrics.polls_held.load(std::memory_order_relaxed));
    }

    /// Takes `<path>` (polls) and `<publish_path>` (publishes), through the admission gate
    /// (transport_context::admit: origin 403, not POST 405, draining 503, authenticate 401).
    /// A publish with `Authorization: Bearer …` is the server's own (admit_server: the
    /// publish secret, no authorizer check). Every answer is `{"frames":[…]}`.
    bool serve(const net::connection_ptr& c, http_request& r) {
        const std::string_view path = r.path();
        const bool publishing = path == opts_.publish_path;
        if (path != opts_.path && !publishing) return false;
        auto post_only = [](const http_request& r) -> std::optional<http_response> {
            if (r.method == "POST") return std::nullopt;
            return http_response::refusal(405, error::malformed_frame, "POST expected");
        };
        const bool from_server = publishing && r.header("authorization").substr(0, 7) == "Bearer ";
        net::admission a = from_server ? ctx_.admit_server(r, post_only) : ctx_.admit(r, post_only);
        if (!a) c->respond(r, std::move(a.refusal));
        else if (publishing) publish(c, r, a.who ? &*a.who : nullptr);
        else poll(c, r, std::move(*a.who));
        return true;
    }

private:
    class held_poll;

    static http_response bad_request(std::string_view message) {
        return http_response::refusal(400, error::malformed_frame, message);
    }

    // A publish for `who`, or as the server when null. The body is a publish frame whose
    // `type` may be left out; it is parsed once.
    void publish(const net::connection_ptr& c, const http_request& r, const principal* who) {
        std::error_code ec;
        protocol::request req = protocol::parse_request(r.body, ec, protocol::request::kind::publish);
        if (!ec && req.type != protocol::request::kind::publish) ec = error::malformed_frame;
        if (ec) return c->respond(r, http_response::frames(400, {protocol::make_error(ec, req.channel, req.id)}));
        // The backplane may answer on another thread: answer on the connection's strand.
        auto request = std::make_shared<http_request>(r);
        publish_for(ctx_.hub, who, std::move(req), [c, request](frame_ptr ack) {
            c->post([c, request, ack = std::move(ack)] {
                c->respond(*request, http_response::frames(publish_status(*ack), {ack}));
            });
        });
    }

    static int publish_status(const frame& ack) {
        if (ack.type != frame_type::error) return 200;
        return ack.code == error::forbidden ? 403 : ack.code == error::backplane_unavailable ? 503 : 400;
    }

    void poll(const net::connection_ptr& c, const http_request& r, principal who);

    net::transport_context& ctx_;
    options opts_;
};

/// One poll in progress: its peer, its deadline, the request to answer.
/// How long a `timeout: 0` poll waits for its subscribes' answers at most (a backplane that
/// does not answer fails them sooner: the Redis backplane after its command_timeout).
inline constexpr std::chrono::seconds joining_wait{5};

class longpoll::held_poll final : public net::stream_handler {
public:
    using clock = net::clock;

    held_poll(longpoll& t, net::connection_ptr c, http_request r, herald::peer p,
              std::map<std::string, std::string> resumed, clock::time_point deadline, std::string_view envelope)
        : t_(t), conn_(c), request_(std::move(r)), peer_(std::move(p)), resumed_(std::move(resumed)),
          deadline_(deadline), envelope_(envelope) {
        t_.ctx_.metrics.polls_held.fetch_add(1, std::memory_order_relaxed);
    }
    ~held_poll() override { t_.ctx_.metrics.polls_held.fetch_sub(1, std::memory_order_relaxed); }

    /// Takes what the session holds, and answers if there is anything worth an answer.
    /// Once the poll has seen a tick, an answer says where the credentials stand too: one
    /// answered by a message near the expiry carries the `refresh` that the next poll might
    /// get no tick for. Not before: a `refresh` alone answers a poll at its first tick at the
    /// earliest, so that a client with no new credentials polls about once a second, never
    /// in a loop. @returns true when it answered.
    bool answer_if_ready() {
        const session_ptr& s = peer_.session();
        if (!s) return true;
        // Every subscribe of the poll answered first (with a remote backplane each is a round
        // trip): an answer then says what became of each channel, not of the quickest ones.
        if (!joined() && clock::now() < joined_by_ && !s->closed()) return false;
        if (ticked_) peer_.check_credentials(principal::clock::now(), net::tick_interval);
        std::vector<frame_ptr> frames;
        s->take(frames);
        // On a poll every channel is subscribed again: a `subscribed` that merely confirms a
        // resume is noise. New channels and failed resumes are news.
        // The answer stops at the first frame past max_answer_bytes: every channel's frames
        // stay a prefix of what it has, which its cursor resumes from on the next poll.
        std::size_t bytes = 0;
        for (const frame_ptr& f : frames) {
            // One in another epoch is news: the stream was renamed (contract 5).
            if (f->type == frame_type::subscribed && f->recovered && confirms_resume(*f)) continue;
            bytes += f->text.size() + 1;
            if (bytes > t_.opts_.max_answer_bytes && !kept_.empty()) break;
            kept_.push_back(f);
        }
        // A closed session (a slow consumer: more waited than one answer may carry;
        // credentials that expired, with their error frame) is answered with what was kept;
        // the next poll resumes, or is refused.
        if (kept_.empty() && !s->closed()) return false;
        respond(http_response::frames(200, kept_, envelope_));
        return true;
    }

    /// Answers with what is there, even nothing.
    void answer_now() {
        if (!answer_if_ready()) respond(http_response::frames(200, kept_, envelope_));
    }

    /// `timeout: 0`: answers with what is there once the subscribes' answers are in (a remote
    /// backplane reads the channels first; answering before would say nothing of them), or
    /// at the latest `joining_wait` after the poll came.
    void answer_when_joined() {
        when_joined_ = true;
        deadline_ = joined_by_;
        if (joined()) answer_now();
    }

    void on_read(const char*, std::size_t) override {}
    void on_wake() override {
        if (!answer_if_ready() && when_joined_ && joined()) answer_now();
    }
    void on_tick(clock::time_point now) override {
        // Credentials that expire before the next tick end the poll now, with a
        // `credentials_expired` error; a `refresh` frame, due once, wakes it like a message.
        ticked_ = true;
        if (!peer_.check_credentials(principal::clock::now(), net::tick_interval)) return;
        if (now >= deadline_) answer_now();
    }
    void on_drain(std::chrono::milliseconds after) override {
        http_response res = net::transport_context::draining_answer(kept_, after);
        res.envelope = envelope_;
        respond(std::move(res));
    }
    void on_close() override { peer_.release(); }

private:
    void respond(http_response res) {
        auto c = conn_.lock();
        if (!c || !peer_.session()) return;
        net::observe_delivery(t_.ctx_.metrics, kept_);
        t_.ctx_.metrics.polls_answered.fetch_add(1, std::memory_order_relaxed);
        kept_.clear();
        peer_.release();
        c->respond(request_, std::move(res));
    }

    bool joined() const { return !peer_.session() || peer_.session()->joining() == 0; }

    longpoll& t_;
    std::weak_ptr<net::connection> conn_;
    http_request request_;
    herald::peer peer_;
    bool confirms_resume(const frame& f) const {
        const auto it = resumed_.find(f.channel);
        return it != resumed_.end() && it->second == f.pos.epoch;
    }

    std::map<std::string, std::string> resumed_;  // channel -> the epoch its poll resumed in
    clock::time_point deadline_;
    std::string_view envelope_;  // how answers open: with the negotiated version when offered
    std::vector<frame_ptr> kept_;
    bool ticked_ = false;  // a tick came since the poll arrived (see answer_if_ready)
    bool when_joined_ = false;  // timeout 0: answer once the subscribes are answered
    clock::time_point joined_by_ = clock::now() + joining_wait;  // the longest wait for them
};

inline void longpoll::poll(const net::connection_ptr& c, const http_request& r, principal who) {
    std::error_code ec;
    protocol::poll_request req = protocol::parse_poll(r.body, ec, opts_.max_hold);
    if (ec) return c->respond(r, bad_request(req.problem));
    if (req.channels.size() > opts_.max_channels_per_poll)
        return c->respond(r, bad_request("too many channels in one poll"));
    // The newest protocol version the poll offered and this server speaks (none offered:
    // herald.v1, and the answer does not name it, as before the negotiation).
    const int version = protocol::negotiate(req.protocols, ctx_.opts.max_protocol_version);
    if (!version)
        return c->respond(r, bad_request("no protocol version in common: this server speaks " +
                                         protocol::spoken(ctx_.opts.max_protocol_version)));
    const std::string_view envelope = req.protocols.empty() ? http_response::envelope_open : http_response::envelope_for(version);
    const auto hold = req.timeout.value_or(opts_.max_hold);  // parse_poll clamped it to max_hold
    if (held() >= opts_.max_held_polls) {
        http_response res = http_response::refusal(429, error::timed_out, "too many held polls");
        res.headers.emplace_back("Retry-After", protocol::retry_after(std::chrono::seconds(1)));
        return c->respond(r, std::move(res));
    }

    // Each channel is a subscribe from its cursor, applied by the peer as a WebSocket's
    // would be: answers and errors (a refused channel) go into the session, in channel order.
    herald::peer p(ctx_.hub, std::move(who), c->waker(), version);
    // The poller is listed in presence while its polls keep coming: each poll's session ends
    // with its answer, and the next comes well within presence_options::linger, so nobody
    // sees it leave and join. It hears no join/leave (a poll is not a place to keep them).
    p.take_part_in_presence(session::presence_role::member);
    std::map<std::string, std::string> resumed;
    for (protocol::poll_channel& ch : req.channels) {
        if (ch.error) {
            p.refuse(ch.error, ch.name, 0, "cursor must be {epoch, offset} or null");
            continue;
        }
        if (ch.since) resumed.emplace(ch.name, ch.since->epoch);
        protocol::request subscribe;
        subscribe.type = protocol::request::kind::subscribe;
        subscribe.channel = ch.name;
        subscribe.since = std::move(ch.since);
        p.apply(std::move(subscribe));
    }
    auto h = std::make_shared<held_poll>(*this, c, r, std::move(p), std::move(resumed), net::clock::now() + hold, envelope);
    c->hold(h);  // before answering: a wake may come at once
    // `timeout: 0` asks for what is there now, held or not (clients use it for their first
    // poll, so that going live is not delayed by a held request): once the subscribes are
    // answered, which takes a round trip to Redis with the Redis backplane.
    if (!h->answer_if_ready() && hold.count() == 0) h->answer_when_joined();
}

} // namespace herald::transport
