// A backplane in the test's hands, for testing the hub against the faults of a remote
// backplane, one at a time (Beast's test::stream with its fail counts is the model). Also for
// backplane authors: the hub's half of the contract (backplane_sink) is exercised here
// exactly as a remote backplane calls it, so a new backplane can be compared with it.
#pragma once

#include <herald.hpp>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::test {

/// A remote-ordering backplane (`orders_locally = false`, as Redis). It orders each channel
/// itself (one stream, bounded history, an epoch), delivers each message to the hub as it
/// orders it unless the test cuts the "connection", and reads a fetch when asked, answering
/// it at once or when the test releases it. The test holds the `world` and changes it
/// between steps:
///
/// | member           | fault                                                            |
/// |------------------|------------------------------------------------------------------|
/// | `connected`      | false: ordered messages never reach the hub (a dropped link)     |
/// | `hold_fetches`   | true: fetch answers wait for `release()` (a slow round trip)     |
/// | `fail_fetches`   | true: fetches fail with error::backplane_unavailable             |
/// | `max_history`    | the history kept per channel (older cursors are not recovered)   |
/// | `lose(c)`        | the channel is gone (a restart with no data): a new epoch        |
/// | `fail_over(c, n)`| a replica that had the first `n` messages takes over: the stream is renamed (a new epoch that continues the old one up to `n`), the later ones are lost |
/// | `reconnect(c)`   | the link is back: the hub is told to resync `c`                  |
///
/// `last_wanted[c]` records what the hub answered to deliver()/resync(): whether anyone
/// here still follows `c`.
///
/// @code
/// auto world = std::make_shared<herald::test::scripted_backplane::world>();
/// herald::hub hub(herald::hub_options{}, herald::test::scripted_backplane(world));
/// world->connected = false;   // the next publishes are lost on the way
/// @endcode
///
/// Thread safety: none; for single-threaded tests.
class scripted_backplane {
public:
    static constexpr std::string_view name = "scripted";
    static constexpr bool orders_locally = false;

    struct stream {
        std::string epoch;
        std::string prev;        // after fail_over: the epoch this one continues, up to `base`
        std::uint64_t base = 0;
        std::uint64_t head = 0;
        std::deque<std::pair<std::uint64_t, std::string>> history;
    };
    struct world {
        backplane_sink* sink = nullptr;
        std::map<std::string, stream> channels;
        std::size_t max_history = 100;
        int epochs = 0;
        bool connected = true;     // false: ordered messages do not reach the hub
        bool hold_fetches = false; // true: answers wait for release()
        bool fail_fetches = false;
        std::vector<std::function<void()>> held;
        std::map<std::string, bool> last_wanted;  // what deliver/resync returned, per channel

        stream& of(const std::string& c) {
            stream& s = channels[c];
            if (s.epoch.empty()) s.epoch = "e" + std::to_string(++epochs);
            return s;
        }
        position publish(const std::string& c, const std::string& data) {
            stream& s = of(c);
            s.history.emplace_back(++s.head, data);
            if (s.history.size() > max_history) s.history.pop_front();
            if (connected) last_wanted[c] = sink->deliver(c, {s.epoch, s.head}, data);
            return {s.epoch, s.head};
        }
        /// The backplane lost the channel (Redis restarted empty): a new epoch from offset 0.
        void lose(const std::string& c) { channels.erase(c); }
        /// A failover to a replica that had the channel's messages up to `kept` (as the Redis
        /// backplane's scripts rename a stream on a new primary).
        void fail_over(const std::string& c, std::uint64_t kept) {
            stream& s = of(c);
            while (!s.history.empty() && s.history.back().first > kept) s.history.pop_back();
            s.head = kept;
            s.prev = std::exchange(s.epoch, "e" + std::to_string(++epochs));
            s.base = kept;
        }
        /// The "connection" is back: the hub re-fetches what it missed.
        void reconnect(const std::string& c) {
            connected = true;
            last_wanted[c] = sink->resync(c);
        }
        void release() {
            auto answers = std::move(held);
            for (auto& a : answers) a();
        }
    };

    explicit scripted_backplane(std::shared_ptr<world> w) : w_(std::move(w)) {}

    void attach(backplane_sink& s) { w_->sink = &s; }
    void detach() { w_->sink = nullptr; }
    void publish(std::string c, std::string d, publish_handler h) { h({}, w_->publish(c, d)); }
    void fetch(std::string c, std::optional<position> since, fetch_handler h) {
        if (w_->fail_fetches) return h(error::backplane_unavailable, {});
        // Read now (Redis runs the script now), answer now or later (the reply is on its way).
        fetch_result r;
        stream& s = w_->of(c);
        r.head = {s.epoch, s.head};
        if (since) {
            const bool renamed = !s.prev.empty() && since->epoch == s.prev && since->offset <= s.base;
            r.recovered = (since->epoch == s.epoch || renamed) && since->offset <= s.head &&
                          (since->offset == s.head || (!s.history.empty() && s.history.front().first <= since->offset + 1));
            for (auto& [offset, data] : s.history)
                if (r.recovered && offset > since->offset)
                    r.messages.push_back(protocol::make_message(c, {s.epoch, offset}, data));
        }
        auto answer = [h = std::move(h), r = std::move(r)]() mutable { h({}, std::move(r)); };
        if (w_->hold_fetches) w_->held.push_back(std::move(answer));
        else answer();
    }

private:
    std::shared_ptr<world> w_;
};

static_assert(is_backplane_v<scripted_backplane>);

} // namespace herald::test
