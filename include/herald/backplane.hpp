// herald — the Backplane requirement: how servers share publishes and history.
#pragma once

#include <herald/frame.hpp>
#include <herald/options.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace herald {

/// Called once a publish is ordered (with the message's position) or has failed.
using publish_handler = std::function<void(std::error_code, position)>;

/// What a backplane knows of one channel's stream, read at one moment.
struct fetch_result {
    /// The channel's head when read: its epoch and last offset. A channel never published to
    /// gets its epoch now (and offset 0), so that every server names the stream alike.
    position head;
    /// With `since` and `recovered`: every message after `since` up to `head`, in offset order.
    std::vector<frame_ptr> messages;
    /// False when `since` is in another epoch, past the head, or older than the history holds;
    /// `messages` is empty then (a partial replay would be a silent gap).
    bool recovered = true;
};

/// Called once a fetch has read the channel, or has failed.
using fetch_handler = std::function<void(std::error_code, fetch_result)>;

/// What a backplane says of itself, for health checks, diagnose and metrics
/// (hub::backplane_status). A backplane in this process (local) is always up.
struct backplane_status {
    /// It takes publishes and fetches now.
    bool up = true;
    /// It has been up at least once since it was made: a server whose backplane never came up
    /// is not ready (/herald/health); one whose backplane went down later stays ready (its
    /// clients stay connected and resume once it is back).
    bool started = true;
    /// Its own word for the state now ("up", "connecting", "down"...), for people.
    std::string state = "up";
    std::uint64_t reconnects = 0;   ///< links re-established after a loss
    std::uint64_t errors = 0;       ///< publishes and fetches answered with an error
    std::uint64_t timeouts = 0;     ///< links dropped because the engine stopped answering
    /// The last measured round trip to the engine (a ping); zero: not measured.
    std::chrono::microseconds round_trip{0};
    std::string last_error;         ///< the last connection error, for diagnosis
};

/// One member of a channel's presence (herald.v2): a principal with at least one session
/// subscribed to the channel, on any server, however many sessions it has.
struct presence_member {
    std::string user;           ///< principal::id
    std::string info = "null";  ///< principal::presence_info of its first session: one JSON value
    friend bool operator==(const presence_member& a, const presence_member& b) { return a.user == b.user && a.info == b.info; }
};

/// Called once with a channel's members (sorted by `user`), or an error.
using presence_handler = std::function<void(std::error_code, std::vector<presence_member>)>;

/// A change of a channel's presence: a principal joined (its first session anywhere) or left
/// (its last one, or its server went quiet past presence_options::ttl).
struct presence_event {
    bool joined = true;
    presence_member member;
};

/// The hub, as a backplane sees it. A backplane that orders channels in this process (the
/// local one) calls `order_and_deliver` and `read_history`; one that orders elsewhere (Redis)
/// calls `deliver` and `resync`.
class backplane_sink {
public:
    /// Local ordering: assigns the next offset of `channel` in its current epoch, keeps the
    /// message in the hub's history and delivers it to this server's subscribers, all under the
    /// channel's lock.
    virtual position order_and_deliver(std::string_view channel, std::string_view data, std::error_code& ec) = 0;

    /// Local ordering: the channel's head and, after `since`, what the hub's history holds.
    virtual fetch_result read_history(std::string_view channel, const std::optional<position>& since) = 0;

    /// Remote ordering: a message ordered by the backplane. Messages of one channel come in
    /// offset order; the hub drops an offset it has, and re-fetches (`fetch`) when it sees a
    /// gap or another epoch. @returns false when no session of this server follows the channel
    /// any more: the backplane may stop delivering it.
    virtual bool deliver(std::string_view channel, const position& pos, std::string_view data) = 0;

    /// Remote ordering: the backplane may have missed messages of `channel` (its connection
    /// dropped and is back); the hub re-fetches what its sessions miss. @returns false as deliver.
    virtual bool resync(std::string_view channel) = 0;

    /// Remote ordering: whether a session of this server follows `channel` (or waits for its
    /// fetch). A backplane asks now and then, to stop delivering quiet channels nobody follows.
    virtual bool following(std::string_view channel) = 0;

    /// Shared presence: a change the backplane announces (every server hears it, the one that
    /// made it included), for the hub to tell its sessions that follow the channel's presence.
    virtual void presence_changed(std::string_view channel, const presence_event& e) {
        (void)channel;
        (void)e;
    }
    /// The hub's presence bounds and timing, for a backplane that shares presence.
    virtual presence_options presence_limits() const { return {}; }

    /// The hub's history bounds (count, age), for a backplane that keeps the history itself.
    virtual history_options history_limits() const = 0;
    /// The hub's log_function (a copy: a backplane may log after detach).
    virtual log_function logger() const = 0;

protected:
    ~backplane_sink() = default;
};

/// Backplane requirements. A type `B` is a Backplane when, for `b` of type `B`, `s` a
/// `backplane_sink&`, `c` and `d` of type `std::string`, `since` a `std::optional<position>`,
/// `h` a `publish_handler` and `f` a `fetch_handler`:
///
/// | expression                 | meaning                                                          |
/// |----------------------------|------------------------------------------------------------------|
/// | `B::name`                  | `static constexpr std::string_view`, for logs and metrics        |
/// | `B::orders_locally`        | `static constexpr bool`: true when the hub orders channels itself (the backplane calls `order_and_deliver` and `read_history`), false when the backplane orders them (it calls `deliver` and `resync`) |
/// | `b.attach(s)`              | called once by the hub before any other call; `s` outlives the backplane's use of it |
/// | `b.publish(c, d, h)`       | order `d` on channel `c` (offset, epoch), keep it in the history, deliver it to every server's sink that follows `c`, then call `h(ec, position)`. `h` may run before `publish` returns, or later on another thread. When the engine is known to be unreachable `h` gets `error::backplane_unavailable` at once, and nothing is delivered; a publish under way when the engine goes away gets an error too: `h` is always called, once |
/// | `b.fetch(c, since, f)`     | read `c`'s head and, with `since`, the messages after it (fetch_result), then call `f(ec, result)`, once, at once or later on another thread. From the moment the head is read, every message ordered after it reaches the sink's `deliver` (remote ordering), until `deliver`, `resync` or `following` returns false for `c`; if the backplane may have missed some, it calls `resync(c)` once it is back. On failure (`backplane_unavailable`, `timed_out`, `shutting_down`) the result is empty |
/// | `b.detach()`               | no call into the sink and no handler after it returns; handlers still pending get `error::shutting_down` before it returns |
///
/// `publish` and `fetch` may be called from any thread, concurrently, also from within a
/// handler or a sink call.
///
/// Optionally, a backplane that orders in this process (the local one) also offers, for `c`
/// and `d` of type `std::string_view` and `ec` a `std::error_code&`:
///
/// | expression                     | meaning                                                   |
/// |--------------------------------|-----------------------------------------------------------|
/// | `b.publish(c, d, ec)`          | the same as the form above, finished before it returns: returns the position, or sets `ec` |
///
/// The hub then publishes through it (see has_sync_publish) and spares the handler and the
/// wait of the blocking hub::publish (allocations and a condition variable per message).
///
/// Optionally, any backplane offers `b.status()`, a `backplane_status` (safe from any
/// thread); without it, the backplane is taken to be up (has_status).
///
/// Optionally, a backplane shares presence between servers (has_presence), for `w` and `i`
/// of type `std::string` and `ph` a `presence_handler`:
///
/// | expression                  | meaning                                                       |
/// |-----------------------------|---------------------------------------------------------------|
/// | `b.presence_join(c, w, i)`  | this server has principal `w` (info `i`) in `c`: record it until presence_leave, renewed so that it outlives presence_options::ttl only while this server lives; when `w` was in `c` on no server, every server's sink hears `presence_changed` (joined) |
/// | `b.presence_leave(c, w)`    | this server no longer has `w` in `c`; when no server has it, every sink hears `presence_changed` (left). Also when a server's entries expire (it died) |
/// | `b.presence(c, ph)`         | read `c`'s members over every server, then call `ph` once     |
///
/// Without them (the local backplane) the hub's own record is the whole presence.
template <class B, class = void>
struct is_backplane : std::false_type {};

template <class B>
struct is_backplane<
    B, std::void_t<decltype(std::string_view(B::name)), decltype(bool(B::orders_locally)),
                   decltype(std::declval<B&>().attach(std::declval<backplane_sink&>())),
                   decltype(std::declval<B&>().publish(std::declval<std::string>(), std::declval<std::string>(),
                                                       std::declval<publish_handler>())),
                   decltype(std::declval<B&>().fetch(std::declval<std::string>(), std::declval<std::optional<position>>(),
                                                     std::declval<fetch_handler>())),
                   decltype(std::declval<B&>().detach())>> : std::true_type {};

template <class B>
inline constexpr bool is_backplane_v = is_backplane<B>::value;

/// True when the Backplane `B` offers the optional synchronous `publish(c, d, ec)`.
template <class B, class = void>
struct has_sync_publish : std::false_type {};

template <class B>
struct has_sync_publish<B, std::void_t<decltype(position(std::declval<B&>().publish(
                               std::declval<std::string_view>(), std::declval<std::string_view>(),
                               std::declval<std::error_code&>())))>> : std::true_type {};

template <class B>
inline constexpr bool has_sync_publish_v = has_sync_publish<B>::value;

/// True when the Backplane `B` offers the optional `status()`.
template <class B, class = void>
struct has_status : std::false_type {};

template <class B>
struct has_status<B, std::void_t<decltype(backplane_status(std::declval<const B&>().status()))>> : std::true_type {};

/// True when the Backplane `B` shares presence between servers (the optional members above).
template <class B, class = void>
struct has_presence : std::false_type {};

template <class B>
struct has_presence<B, std::void_t<decltype(std::declval<B&>().presence_join(std::string{}, std::string{}, std::string{})),
                                   decltype(std::declval<B&>().presence_leave(std::string{}, std::string{})),
                                   decltype(std::declval<B&>().presence(std::string{}, std::declval<presence_handler>()))>>
    : std::true_type {};

template <class B>
inline constexpr bool has_presence_v = has_presence<B>::value;

namespace backplane {

/// The embedded default: one process, nothing else installed. The hub orders each channel
/// itself and answers fetches from its own history, synchronously; a restart begins new epochs
/// (clients are told `recovered: false` and resync).
//
// Why a publish goes hub -> local -> hub (order_and_deliver) rather than the hub ordering
// local channels itself: so that the hub has one path for every backplane. publish, head and
// subscribe always go through the backplane, and the Redis backplane is not a special case
// of the local one or the reverse. The bounce costs two indirect calls per publish, which
// has_sync_publish keeps free of handlers and waits; the state machine needs orders_locally
// in any case (a remote channel's position is unknown until fetched).
class local {
public:
    static constexpr std::string_view name = "local";
    static constexpr bool orders_locally = true;

    void attach(backplane_sink& sink) noexcept { sink_ = &sink; }
    void detach() noexcept { sink_ = nullptr; }

    void publish(std::string channel, std::string data, publish_handler done) {
        std::error_code ec;
        position pos = sink_->order_and_deliver(channel, data, ec);
        done(ec, std::move(pos));
    }

    /// The synchronous form: the message is ordered and delivered when it returns.
    position publish(std::string_view channel, std::string_view data, std::error_code& ec) {
        return sink_->order_and_deliver(channel, data, ec);
    }

    void fetch(std::string channel, std::optional<position> since, fetch_handler done) {
        done({}, sink_->read_history(channel, since));
    }

private:
    backplane_sink* sink_ = nullptr;
};

static_assert(is_backplane_v<local> && has_sync_publish_v<local>);

} // namespace backplane
} // namespace herald
