// herald — the in-memory transport: clients in the server's own process.
#pragma once

#include <herald/hub.hpp>
#include <herald/peer.hpp>
#include <herald/transport.hpp>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

namespace herald::transport {

/// In-process clients with the contract of remote ones: subscribe from now or since a
/// cursor, receive each channel's messages in order and once, resume after a disconnect.
/// For CMS code that follows a channel (a background job reacting to "project item
/// changed"), and for tests.
///
/// @code
/// herald::hub hub;
/// herald::transport::inmemory mem(hub);
/// auto client = mem.connect();
/// client.subscribe("projects");
/// hub.publish("projects", R"({"item":42})");
/// client.poll([](const herald::frame& f) {
///     if (f.type == herald::frame_type::message) std::cout << f.data() << '\n';
/// }, std::chrono::seconds(1));
/// @endcode
class inmemory {
public:
    static constexpr std::string_view name = "inmemory";
    struct options {
        bool enabled = true;
    };

    class client;

    explicit inmemory(hub& h) : hub_(h) {}
    inmemory(hub& h, options opts) : hub_(h), opts_(opts) {}

    const options& settings() const noexcept { return opts_; }

    /// A new client for `who` (anonymous by default). With the transport disabled, the
    /// client is closed from the start (close_reason() is error::session_closed).
    client connect(principal who = {});

private:
    hub& hub_;
    options opts_;
};

static_assert(is_transport_v<inmemory>, "herald: inmemory must meet the Transport requirements");

/// One in-process client. Not thread-safe: use it from one thread (the hub feeds it from
/// any thread). Movable.
class inmemory::client {
public:
    client(client&&) noexcept = default;
    client& operator=(client&& other) noexcept {
        if (this != &other) {
            close();
            hub_ = other.hub_; who_ = std::move(other.who_); enabled_ = other.enabled_;
            peer_ = std::move(other.peer_); signal_ = std::move(other.signal_);
            cursors_ = std::move(other.cursors_); batch_ = std::move(other.batch_); duplicates_ = other.duplicates_;
        }
        return *this;
    }
    ~client() { close(); }

    /// Follows `channel`: from its cursor when the client has one for it (a resume), else from
    /// now. The answer (`subscribed`, then any missed messages) arrives through poll().
    /// @returns forbidden, invalid_channel, too_many_subscriptions or session_closed.
    std::error_code subscribe(std::string_view channel) {
        auto it = cursors_.find(std::string(channel));
        std::optional<position> since;
        if (it != cursors_.end() && it->second.known) since = it->second.pos;
        return subscribe_(channel, std::move(since));
    }

    /// Follows `channel` after `since` (a cursor saved earlier, e.g. across a restart).
    std::error_code subscribe(std::string_view channel, position since) { return subscribe_(channel, std::move(since)); }

    std::error_code unsubscribe(std::string_view channel) {
        std::error_code ec = peer_.unsubscribe(channel);
        if (!ec) cursors_.erase(std::string(channel));
        return ec;
    }

    /// Publishes as this client's principal (checked with action::publish).
    position publish(std::string_view channel, std::string_view data, std::error_code& ec) {
        return peer_.publish(channel, data, ec);
    }

    /// Applies one herald.v1 client frame, as a remote client's would be (herald::peer::apply):
    /// answers and errors arrive through poll() as frames. The client's cursors follow the
    /// frames it receives, not the frames it sends.
    std::error_code apply(std::string_view text) { return peer_.apply(text); }

    /// Waits up to `wait` for frames, then calls `on_frame(const frame&)` for each, in order:
    /// `subscribed` (check `recovered`: false means resync), messages (duplicates already
    /// dropped), `unsubscribed`, `error`. @returns how many frames it passed on.
    template <class OnFrame>
    std::size_t poll(OnFrame&& on_frame, std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
        const session_ptr& s = peer_.session();
        if (!s) return 0;
        {
            std::unique_lock<std::mutex> lock(signal_->mu);
            if (!signal_->ready && wait.count() > 0) signal_->cv.wait_for(lock, wait, [&] { return signal_->ready; });
            signal_->ready = false;
        }
        batch_.clear();
        s->take(batch_);
        std::size_t n = 0;
        for (const frame_ptr& f : batch_)
            if (accept(*f)) { on_frame(*f); ++n; }
        batch_.clear();
        return n;
    }

    /// Convenience form of poll(): the frames, as shared pointers.
    std::vector<frame_ptr> receive(std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
        std::vector<frame_ptr> out;
        const session_ptr& s = peer_.session();
        if (!s) return out;
        {
            std::unique_lock<std::mutex> lock(signal_->mu);
            if (!signal_->ready && wait.count() > 0) signal_->cv.wait_for(lock, wait, [&] { return signal_->ready; });
            signal_->ready = false;
        }
        std::vector<frame_ptr> got;
        s->take(got);
        for (frame_ptr& f : got)
            if (accept(*f)) out.push_back(std::move(f));
        return out;
    }

    /// The position of the last message received on `channel` (or the head it subscribed
    /// at), if any.
    std::optional<position> cursor(std::string_view channel) const {
        auto it = cursors_.find(std::string(channel));
        if (it == cursors_.end() || !it->second.known) return std::nullopt;
        return it->second.pos;
    }

    /// Duplicates dropped so far (a resume that overlapped what was already received).
    std::size_t duplicates_dropped() const noexcept { return duplicates_; }

    /// Closed: by close(), by the hub (slow consumer: error::slow_consumer), or disabled.
    bool closed() const { return !peer_.open(); }
    std::error_code close_reason() const {
        return peer_.session() ? peer_.session()->close_reason() : std::error_code(error::session_closed);
    }

    /// Opens a new session and resubscribes every channel from its cursor, as a remote
    /// client does after a disconnect. Frames not yet polled from the old session are lost
    /// with it, and come again by the resume.
    std::error_code reconnect() {
        if (!enabled_) return error::session_closed;
        open();  // closes the old session
        std::error_code first;
        for (auto& [channel, c] : cursors_) {
            // A channel whose `subscribed` answer never arrived has no cursor: what came before
            // the disconnect is unknown, so ask with a position no stream has, which the hub
            // answers with recovered:false (resync), never with a silent gap.
            position since = c.known ? c.pos : position{};
            if (auto ec = peer_.subscribe(channel, since); ec && !first) first = ec;
        }
        return first;
    }

    void close() { peer_.close(); }

    /// Takes new credentials (herald::peer::refresh): `refreshed` arrives through poll(),
    /// and the session lives until their expiry.
    std::error_code refresh(std::string token) { return peer_.refresh(std::move(token)); }

    /// The expiry rule (herald::peer::check_credentials), which an in-process client runs
    /// when it likes (no timer of its own): past the principal's expiry the session ends
    /// with error::credentials_expired; before it, a `refresh` frame asks for new
    /// credentials. @returns whether the session is still open.
    bool check_credentials(principal::clock::time_point now = principal::clock::now()) {
        return peer_.check_credentials(now, {});
    }

    const session_ptr& session() const noexcept { return peer_.session(); }

private:
    friend class inmemory;

    struct signal {
        std::mutex mu;
        std::condition_variable cv;
        bool ready = false;
    };
    struct cursor_state {
        position pos;
        bool known = false;
    };

    client(hub& h, principal who, bool enabled) : hub_(&h), who_(std::move(who)), enabled_(enabled) {
        if (enabled_) open();
    }

    void open() {
        signal_ = std::make_shared<signal>();
        peer_ = herald::peer(*hub_, who_, [s = signal_] {
            {
                std::lock_guard<std::mutex> lock(s->mu);
                s->ready = true;
            }
            s->cv.notify_one();
        });
        // In-process clients last as WebSockets do, and read every frame: they hear presence.
        peer_.take_part_in_presence(session::presence_role::listener);
    }

    std::error_code subscribe_(std::string_view channel, std::optional<position> since) {
        std::error_code ec = peer_.subscribe(channel, since);
        if (!ec) {
            cursor_state& c = cursors_[std::string(channel)];
            // Keep a cursor that is already past `since` in the same stream: what lies between
            // is a duplicate for this client.
            const bool ahead = c.known && since && c.pos.epoch == since->epoch && c.pos.offset > since->offset;
            if (since && !ahead) { c.pos = *since; c.known = true; }
        }
        return ec;
    }

    // Client-side bookkeeping, the same as herald.js: cursors advance, duplicates drop.
    bool accept(const frame& f) {
        switch (f.type) {
        case frame_type::message: {
            auto it = cursors_.find(f.channel);
            if (it == cursors_.end()) return false;  // unsubscribed meanwhile
            cursor_state& c = it->second;
            if (c.known && c.pos.epoch == f.pos.epoch && f.pos.offset <= c.pos.offset) { ++duplicates_; return false; }
            c.pos = f.pos;
            c.known = true;
            return true;
        }
        case frame_type::subscribed: {
            cursor_state& c = cursors_[f.channel];
            // recovered in another epoch: the stream was renamed (a Redis failover), the
            // cursor's offset holds in it and the missed messages follow.
            if (f.recovered && c.known && c.pos.epoch != f.pos.epoch) c.pos.epoch = f.pos.epoch;
            else if (!f.recovered || !c.known) c.pos = f.pos;
            c.known = true;
            return true;
        }
        default:
            return true;
        }
    }

    hub* hub_;
    principal who_;
    bool enabled_;
    herald::peer peer_;  // the session, and the requests applied to it
    std::shared_ptr<signal> signal_;
    std::unordered_map<std::string, cursor_state> cursors_;
    std::vector<frame_ptr> batch_;
    std::size_t duplicates_ = 0;
};

inline inmemory::client inmemory::connect(principal who) { return client(hub_, std::move(who), opts_.enabled); }

} // namespace herald::transport
