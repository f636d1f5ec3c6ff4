// herald — the Backplane requirement: how servers share publishes and history.
#pragma once

#include <herald/frame.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace herald {

/// Called once a publish is ordered (with the message's position) or has failed.
using publish_handler = std::function<void(std::error_code, position)>;

/// The hub, as a backplane sees it.
class backplane_sink {
public:
    /// For a backplane that lets this process order its channels (the local one): assigns
    /// the next offset of `channel` in its current epoch, keeps the message in the history
    /// and delivers it to this server's subscribers, all under the channel's lock.
    virtual position order_and_deliver(std::string_view channel, std::string_view data, std::error_code& ec) = 0;

    /// For a backplane that orders elsewhere (Redis): delivers a message ordered by the
    /// backplane. Messages of one channel must come in offset order; an offset already seen
    /// is dropped, an epoch change starts the channel's history anew.
    virtual void deliver(std::string_view channel, const position& pos, std::string_view data) = 0;

protected:
    ~backplane_sink() = default;
};

/// Backplane requirements. A type `B` is a Backplane when, for `b` of type `B`, `s` a
/// `backplane_sink&`, `c` and `d` of type `std::string`, and `h` a `publish_handler`:
///
/// | expression            | meaning                                                               |
/// |-----------------------|-----------------------------------------------------------------------|
/// | `b.attach(s)`         | called once by the hub before any publish; `s` outlives the backplane's use |
/// | `b.publish(c, d, h)`  | order `d` on channel `c` (offset, epoch), keep it in the history, deliver it to every server's sink, then call `h(ec, position)` — `h` may run before `publish` returns, or later on another thread; when the engine is unreachable `h` gets `error::backplane_unavailable` and nothing is delivered |
/// | `b.detach()`          | no call into the sink after it returns                                |
/// | `B::name`             | a `static constexpr std::string_view`, for logs and metrics           |
///
/// `publish` may be called from any thread, concurrently.
template <class B, class = void>
struct is_backplane : std::false_type {};

template <class B>
struct is_backplane<B, std::void_t<decltype(std::declval<B&>().attach(std::declval<backplane_sink&>())),
                                   decltype(std::declval<B&>().publish(std::declval<std::string>(),
                                                                       std::declval<std::string>(),
                                                                       std::declval<publish_handler>())),
                                   decltype(std::declval<B&>().detach()),
                                   decltype(std::string_view(B::name))>> : std::true_type {};

template <class B>
inline constexpr bool is_backplane_v = is_backplane<B>::value;

namespace backplane {

/// The embedded default: one process, nothing else installed. The hub orders each channel
/// itself; history lives in the hub's memory, so a restart begins new epochs (clients are
/// told `recovered: false` and resync).
class local {
public:
    static constexpr std::string_view name = "local";

    void attach(backplane_sink& sink) noexcept { sink_ = &sink; }
    void detach() noexcept { sink_ = nullptr; }

    void publish(std::string channel, std::string data, publish_handler done) {
        std::error_code ec;
        position pos = sink_->order_and_deliver(channel, data, ec);
        done(ec, std::move(pos));
    }

private:
    backplane_sink* sink_ = nullptr;
};

static_assert(is_backplane_v<local>);

} // namespace backplane
} // namespace herald
