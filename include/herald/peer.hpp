// herald — one client as the herald.v1 protocol sees it, whatever carries its frames.
//
// Every transport has the same client side: open a hub session, apply the client's requests
// (subscribe with resume, unsubscribe, publish when the authorizer allows, pong), and queue
// each answer and error frame into the session. It is written once, here (Centrifuge's
// client.go is the model); a transport keeps only its framing and its I/O: it feeds a peer
// the client's frames and writes what the peer's session queues.
//
// Why "peer": `session` is the hub's queue of one client, `inmemory::client` and herald.js's
// `Client` are client APIs; a peer is the other end of one herald.v1 conversation.
#pragma once

#include <herald/authorizer.hpp>
#include <herald/error.hpp>
#include <herald/frame.hpp>
#include <herald/hub.hpp>
#include <herald/protocol.hpp>
#include <herald/session.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace herald {

/// Publishes a client's publish request for `who` (read during the call only), or as the
/// server itself when `who` is null (no authorizer check: for callers that proved they are
/// the server, e.g. with server_options::publish_secret), and hands `ack(frame_ptr)` the answer: `published` with
/// the position, or `error` (forbidden, or an error of hub::async_publish) naming the channel
/// and request id. `ack` runs once: at once when refused or with the local backplane, on the
/// backplane's thread with a remote one.
template <class Ack>
void publish_for(hub& h, const principal* who, protocol::request r, Ack ack) {
    if (who && !h.may(*who, action::publish, r.channel)) {
        ack(protocol::make_error(error::forbidden, r.channel, r.id));
        return;
    }
    std::string channel = r.channel;
    h.async_publish(std::move(channel), std::move(r.data),
                    [ack = std::move(ack), channel = std::move(r.channel), id = r.id](std::error_code e, position p) mutable {
                        ack(e ? protocol::make_error(e, channel, id) : protocol::make_published(channel, std::move(p), id));
                    });
}

/// One client of a hub, as the protocol sees it: it owns the client's hub session (opened by
/// the constructor, closed by close(), release() or the destructor) and applies the
/// client's requests.
/// Answers go into the session's queue, as every frame the hub sends; the transport writes
/// them when the session wakes it.
///
/// Two forms of each request: apply() takes a herald.v1 client frame and queues an `error`
/// frame for a request that fails (the wire's way); subscribe(), unsubscribe() and the
/// synchronous publish() return the error and queue nothing for it (the C++ way, for the
/// in-memory transport).
///
/// Thread safety: not thread-safe; use a peer from one thread at a time (a connection's
/// strand). The hub feeds its session from any thread.
class peer {
public:
    /// No session: open() is false and every request fails with error::session_closed.
    peer() noexcept = default;

    using clock = principal::clock;

    /// Opens a session on `h` for `who`; `wake` as for hub::open_session. The session ends
    /// when `who.expires` passes unless the client refreshed its credentials (see
    /// check_credentials()).
    /// `version` is the protocol version the client and the server share
    /// (protocol::negotiate): requests of a later version are refused as unknown.
    peer(hub& h, principal who, session::wake_function wake, int version = protocol::latest_version,
         clock::time_point now = clock::now())
        : hub_(&h), version_(version) {
        expire_at(who.expires, now);
        session_ = h.open_session(std::move(who), std::move(wake));
    }

    peer(peer&& o) noexcept
        : hub_(o.hub_), session_(std::move(o.session_)), version_(o.version_), expires_(o.expires_), refresh_at_(o.refresh_at_) {}
    peer& operator=(peer&& o) noexcept {
        if (this != &o) {
            close();
            hub_ = o.hub_;
            session_ = std::move(o.session_);
            version_ = o.version_;
            expires_ = o.expires_;
            refresh_at_ = o.refresh_at_;
        }
        return *this;
    }
    peer(const peer&) = delete;
    peer& operator=(const peer&) = delete;
    ~peer() { close(); }

    /// Whether the peer has a session that the hub has not closed.
    bool open() const noexcept { return session_ && !session_->closed(); }
    /// The protocol version this client speaks (1: herald.v1, 2: herald.v2).
    int version() const noexcept { return version_; }
    /// The session (null after release()): the transport takes its frames from it.
    const session_ptr& session() const noexcept { return session_; }

    /// Applies one herald.v1 client frame: subscribe (with `since`: the resume),
    /// unsubscribe, publish (when the authorizer allows; the `published` or `error` ack is
    /// queued once the backplane ordered it), refresh (see refresh()), pong/ping (nothing
    /// to do). A request that fails queues an `error` frame naming its channel and id; the
    /// session stays up.
    /// @returns the error queued, if any (a publish's later ack is not counted).
    std::error_code apply(std::string_view text) {
        std::error_code ec;
        protocol::request r = protocol::parse_request(text, ec);
        if (ec) {
            refuse(ec, r.channel, r.id);
            return ec;
        }
        return apply(std::move(r));
    }

    /// The same for a request parsed already (e.g. a long-poll's channels).
    std::error_code apply(protocol::request r) {
        std::error_code ec;
        switch (r.type) {
        case protocol::request::kind::pong: return {};
        case protocol::request::kind::subscribe: ec = subscribe(r.channel, std::move(r.since), r.id); break;
        case protocol::request::kind::unsubscribe: ec = unsubscribe(r.channel, r.id); break;
        case protocol::request::kind::refresh: ec = refresh(std::move(r.token), r.id); break;
        case protocol::request::kind::presence:
            // herald.v2, on a session that hears join/leave: to a v1 client (or a long-poll's
            // short-lived session) it is a frame like any unknown one
            if (version_ < 2 || !session_ || session_->presence() != session::presence_role::listener) {
                ec = error::unknown_frame_type;
                break;
            }
            ec = presence(r.channel, r.id);
            break;
        case protocol::request::kind::publish:
            if (!session_) { ec = error::session_closed; break; }
            publish_for(*hub_, &session_->who(), std::move(r), [s = session_](frame_ptr ack) { s->push(std::move(ack)); });
            return {};
        }
        if (ec) refuse(ec, r.channel, r.id);
        return ec;
    }

    /// Queues an `error` frame (see protocol::make_error): for a request the transport refused
    /// while reading it (e.g. a long-poll cursor that is not one).
    void refuse(std::error_code ec, std::string_view channel = {}, std::uint64_t id = 0, std::string_view message = {}) {
        if (session_) session_->push(protocol::make_error(ec, channel, id, message));
    }

    /// Subscribes to `channel` after `since` (none: from now); see hub::subscribe. @returns
    /// forbidden, invalid_channel, too_many_subscriptions or session_closed, and queues nothing.
    std::error_code subscribe(std::string_view channel, std::optional<position> since = {}, std::uint64_t id = 0) {
        if (!session_) return error::session_closed;
        return hub_->subscribe(session_, channel, std::move(since), id);
    }

    /// Unsubscribes and queues `unsubscribed`. @returns not_subscribed, invalid_channel or
    /// session_closed.
    std::error_code unsubscribe(std::string_view channel, std::uint64_t id = 0) {
        if (!session_) return error::session_closed;
        return hub_->unsubscribe(session_, channel, id);
    }

    // ---- presence (herald.v2) -----------------------------------------------------------

    /// How this peer's session takes part in presence (session::presence_role), called by
    /// the transport before the first subscribe: `listener` when the client hears
    /// `join`/`leave` and may ask `presence` (a herald.v2 WebSocket, in-memory), `member` when
    /// it does not (a herald.v1 WebSocket, a poll).
    void take_part_in_presence(session::presence_role role) noexcept {
        if (session_) session_->set_presence_role(role);
    }

    /// Asks `channel`'s members (hub::async_presence) and queues the `presence` answer, or an
    /// `error` frame when the backplane fails. @returns forbidden (the authorizer's
    /// may_presence), invalid_channel or session_closed, and queues nothing for them.
    std::error_code presence(std::string_view channel, std::uint64_t id = 0) {
        if (!open()) return error::session_closed;
        if (auto e = validate_channel(channel)) return e;
        if (!hub_->may(session_->who(), action::presence, channel)) return error::forbidden;
        hub_->async_presence(std::string(channel), [s = session_, c = std::string(channel), id](std::error_code e,
                                                                                                std::vector<presence_member> m) {
            s->push(e ? protocol::make_error(e, c, id) : protocol::make_presence(c, m, id));
        });
        return {};
    }

    /// Publishes as this peer's principal (checked with action::publish), waiting for the
    /// position as hub::publish does. @returns the position; on failure `ec` is
    /// session_closed, forbidden, or an error of hub::publish. Queues nothing.
    position publish(std::string_view channel, std::string_view data, std::error_code& ec) {
        ec.clear();
        if (!open()) { ec = error::session_closed; return {}; }
        if (!hub_->may(session_->who(), action::publish, channel)) { ec = error::forbidden; return {}; }
        return hub_->publish(channel, data, ec);
    }

    // ---- credentials that expire ------------------------------------------------------

    /// When this peer's credentials expire (none: never): the principal's `expires` at
    /// admission, moved by each refresh (the session's who() keeps the first).
    std::optional<clock::time_point> expires() const noexcept { return expires_; }

    /// Takes the client's new credentials: the authorizer's authenticate hook is asked with
    /// a request_info whose `credentials` are `token` (and nothing else). Accepted when it
    /// names the same principal with an expiry still ahead (or none): the session's expiry
    /// moves and `refreshed` is queued. @returns unauthenticated (refused, or another
    /// principal) or credentials_expired, and queues nothing for them (apply() queues the
    /// error frame); the session keeps its old expiry and ends at it.
    std::error_code refresh(std::string token, std::uint64_t id = 0, clock::time_point now = clock::now()) {
        if (!open()) return error::session_closed;
        request_info r;
        r.credentials = std::move(token);
        const std::optional<principal> p = hub_->authenticate(r);
        if (!p || p->id != session_->who().id) return error::unauthenticated;
        if (p->expires && *p->expires <= now) return error::credentials_expired;
        expire_at(p->expires, now);
        std::optional<std::chrono::milliseconds> in;
        if (expires_) in = std::chrono::duration_cast<std::chrono::milliseconds>(*expires_ - now);
        session_->push(protocol::make_refreshed(in, id));
        return {};
    }

    /// The expiry rule, for transports to call on a timer (and a long-poll before each
    /// answer): when the credentials expire before `now + next_check` (the transport's next
    /// call), queues an `error` frame (credentials_expired) and closes the session with that
    /// reason, so that nothing is delivered past the expiry; otherwise, once per credentials,
    /// queues `refresh` when `now` reaches the refresh point: session_options::refresh_before
    /// ahead of the expiry, or halfway through the credentials' remaining life when that comes
    /// later, but never later than two checks ahead (so that one check is left to renew in).
    /// @returns whether the session is still open.
    bool check_credentials(clock::time_point now, clock::duration next_check) {
        if (!open()) return false;
        if (!expires_) return true;
        if (*expires_ <= now + next_check) {
            session_->push(protocol::make_error(error::credentials_expired));
            close(error::credentials_expired);
            return false;
        }
        if (refresh_at_ && (now >= *refresh_at_ || *expires_ <= now + 2 * next_check)) {
            refresh_at_.reset();
            session_->push(protocol::make_refresh(std::chrono::duration_cast<std::chrono::milliseconds>(*expires_ - now)));
        }
        return true;
    }

    /// Closes the session (the hub drops it from its channels); what it queued can still be
    /// taken. Idempotent.
    void close(std::error_code reason = {}) {
        if (session_) hub_->close_session(session_, reason);
    }

    /// Closes the session and lets it go: session() is null after (a transport's "done").
    void release() {
        close();
        session_.reset();
    }

private:
    void expire_at(std::optional<clock::time_point> expires, clock::time_point now) {
        expires_ = expires;
        refresh_at_.reset();
        if (!expires) return;
        const clock::duration left = *expires - now;
        const clock::duration ahead = std::min<clock::duration>(
            hub_->options().session.refresh_before, left / 2);
        refresh_at_ = *expires - ahead;
    }

    hub* hub_ = nullptr;
    session_ptr session_;
    int version_ = protocol::latest_version;
    std::optional<clock::time_point> expires_;     // the credentials' end
    std::optional<clock::time_point> refresh_at_;  // when to ask for new ones (once)
};

} // namespace herald
