// The hub on a backplane that orders elsewhere (as Redis does), with the faults such a backplane
// produces injected one by one: fetches answered late, messages that never arrive (a dropped
// connection), history lost (a new epoch), fetches that fail. Redis itself: tests/cluster.
#include <herald.hpp>
#include <herald/transport/inmemory.hpp>

#include <catch2/catch.hpp>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

using herald::frame_type;
using herald::position;

namespace {

/// A remote-ordering backplane in the test's hands. It orders each channel itself (one stream,
/// bounded history, an epoch), delivers each message to the hub as it orders it, unless the
/// test cuts the "connection"; it reads a fetch when asked and answers it at once, or when
/// the test releases it.
class scripted_backplane {
public:
    static constexpr std::string_view name = "scripted";
    static constexpr bool orders_locally = false;

    struct stream {
        std::string epoch;
        std::uint64_t head = 0;
        std::deque<std::pair<std::uint64_t, std::string>> history;
    };
    struct world {
        herald::backplane_sink* sink = nullptr;
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

    void attach(herald::backplane_sink& s) { w_->sink = &s; }
    void detach() { w_->sink = nullptr; }
    void publish(std::string c, std::string d, herald::publish_handler h) { h({}, w_->publish(c, d)); }
    void fetch(std::string c, std::optional<position> since, herald::fetch_handler h) {
        if (w_->fail_fetches) return h(herald::error::backplane_unavailable, {});
        // Read now (Redis runs the script now), answer now or later (the reply is on its way).
        herald::fetch_result r;
        stream& s = w_->of(c);
        r.head = {s.epoch, s.head};
        if (since) {
            r.recovered = since->epoch == s.epoch && since->offset <= s.head &&
                          (since->offset == s.head || (!s.history.empty() && s.history.front().first <= since->offset + 1));
            for (auto& [offset, data] : s.history)
                if (r.recovered && offset > since->offset)
                    r.messages.push_back(herald::protocol::make_message(c, {s.epoch, offset}, data));
        }
        auto answer = [h = std::move(h), r = std::move(r)]() mutable { h({}, std::move(r)); };
        if (w_->hold_fetches) w_->held.push_back(std::move(answer));
        else answer();
    }

private:
    std::shared_ptr<world> w_;
};
static_assert(herald::is_backplane_v<scripted_backplane>);

struct setup {
    std::shared_ptr<scripted_backplane::world> world = std::make_shared<scripted_backplane::world>();
    herald::hub hub{quiet(), scripted_backplane(world)};
    herald::transport::inmemory mem{hub};

    setup() { hub.set_authorizer(herald::insecure_allow_all{}); }  // ordering, not authorization, is tested
    static herald::hub_options quiet() {
        herald::hub_options o;
        o.log = nullptr;
        return o;
    }
    void publish(const std::string& c, int n) {
        for (int i = 0; i < n; ++i) hub.publish(c, std::to_string(i));
    }
};

struct received {
    std::vector<herald::frame_ptr> frames;
    void take(herald::transport::inmemory::client& c) {
        for (auto& f : c.receive()) frames.push_back(std::move(f));
    }
    std::vector<std::uint64_t> offsets() const {
        std::vector<std::uint64_t> o;
        for (auto& f : frames)
            if (f->type == frame_type::message) o.push_back(f->pos.offset);
        return o;
    }
    std::vector<const herald::frame*> subscribed() const {
        std::vector<const herald::frame*> s;
        for (auto& f : frames)
            if (f->type == frame_type::subscribed) s.push_back(f.get());
        return s;
    }
};

std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
    std::vector<std::uint64_t> v;
    for (auto i = from; i <= to; ++i) v.push_back(i);
    return v;
}

} // namespace

TEST_CASE("remote ordering: a subscribe answered late meets the live stream with no gap, no duplicate") {
    setup t;
    t.publish("c", 10);
    auto live = t.mem.connect();
    live.subscribe("c");  // answered at once: live from 10

    t.world->hold_fetches = true;
    auto late = t.mem.connect();
    REQUIRE_FALSE(late.subscribe("c", position{"e1", 4}));  // read now: head 10, replay 5..10
    t.publish("c", 5);                                       // 11..15 arrive before the answer
    received r;
    r.take(late);
    CHECK(r.frames.empty());  // nothing until the fetch is answered
    t.world->release();
    t.publish("c", 2);  // 16, 17: live
    r.take(late);
    REQUIRE(r.subscribed().size() == 1);
    CHECK(r.subscribed()[0]->recovered);
    CHECK(r.subscribed()[0]->pos.offset == 10);
    CHECK(r.offsets() == range(5, 17));
    CHECK(late.duplicates_dropped() == 0);

    received l;
    l.take(live);
    CHECK(l.offsets() == range(11, 17));
}

TEST_CASE("remote ordering: the first subscriber of a channel takes its position from the fetch") {
    setup t;
    t.world->hold_fetches = true;
    auto a = t.mem.connect();
    auto b = t.mem.connect();
    a.subscribe("c");
    t.publish("c", 3);  // nobody is live yet: held
    b.subscribe("c");
    t.publish("c", 2);
    t.world->release();  // a read head 0, b read head 3
    t.publish("c", 1);
    received ra, rb;
    ra.take(a);
    rb.take(b);
    CHECK(ra.subscribed()[0]->pos.offset == 0);
    CHECK(ra.offsets() == range(1, 6));
    CHECK(rb.subscribed()[0]->pos.offset == 3);
    CHECK(rb.offsets() == range(4, 6));
}

TEST_CASE("remote ordering: a gap in the live stream is re-fetched, in order") {
    setup t;
    auto c = t.mem.connect();
    c.subscribe("c");
    t.publish("c", 3);
    t.world->connected = false;  // 4..8 are ordered, never delivered
    t.publish("c", 5);
    t.world->connected = true;
    t.publish("c", 2);  // 9 shows the gap: the hub fetches 4..8, then 9, 10 follow
    received r;
    r.take(c);
    CHECK(r.offsets() == range(1, 10));
    CHECK(r.subscribed().size() == 1);
    CHECK(t.hub.stats().refetches == 1);
}

TEST_CASE("remote ordering: what was missed while disconnected comes on resync, without a further message") {
    setup t;
    auto c = t.mem.connect();
    c.subscribe("c");
    t.publish("c", 2);
    t.world->connected = false;
    t.publish("c", 3);
    t.world->reconnect("c");
    received r;
    r.take(c);
    CHECK(r.offsets() == range(1, 5));
    CHECK(t.world->last_wanted["c"]);
}

TEST_CASE("remote ordering: a gap the history no longer holds gives recovered false, then the live stream") {
    setup t;
    t.world->max_history = 5;
    auto c = t.mem.connect();
    c.subscribe("c");
    t.publish("c", 2);
    t.world->connected = false;
    t.publish("c", 20);  // 3..22: only 18..22 kept
    t.world->connected = true;
    t.publish("c", 1);  // 23 shows the gap; the fetch reads head 23
    t.publish("c", 1);  // 24
    received r;
    r.take(c);
    REQUIRE(r.subscribed().size() == 2);
    CHECK_FALSE(r.subscribed()[1]->recovered);
    CHECK(r.subscribed()[1]->pos.offset == 23);
    CHECK(r.subscribed()[1]->request_id == 0);  // unrequested: the server says "resync"
    CHECK(r.offsets() == std::vector<std::uint64_t>{1, 2, 24});
    CHECK(c.cursor("c")->offset == 24);
}

TEST_CASE("remote ordering: history lost (a new epoch) tells live subscribers recovered false") {
    setup t;
    auto c = t.mem.connect();
    c.subscribe("c");
    t.publish("c", 3);
    t.world->lose("c");
    t.publish("c", 2);  // e2:1 shows another epoch; the fetch reads e2 head 1
    received r;
    r.take(c);
    REQUIRE(r.subscribed().size() == 2);
    CHECK_FALSE(r.subscribed()[1]->recovered);
    CHECK(r.subscribed()[1]->pos == position{"e2", 1});
    CHECK(r.offsets() == std::vector<std::uint64_t>{1, 2, 3, 2});  // e1:1..3, then e2:2
    CHECK(*c.cursor("c") == position{"e2", 2});
    // A client of the old stream is told to resync too.
    auto old = t.mem.connect();
    old.subscribe("c", position{"e1", 3});
    received o;
    o.take(old);
    CHECK_FALSE(o.subscribed()[0]->recovered);
    CHECK(o.subscribed()[0]->pos == position{"e2", 2});
}

TEST_CASE("remote ordering: a repair and a late subscribe at once, both streams contiguous") {
    setup t;
    auto a = t.mem.connect();
    a.subscribe("c");
    t.publish("c", 2);
    t.world->hold_fetches = true;
    auto b = t.mem.connect();
    b.subscribe("c", position{"e1", 0});  // reads head 2, replay 1..2
    t.world->connected = false;
    t.publish("c", 3);  // 3..5 lost
    t.world->connected = true;
    t.publish("c", 1);  // 6: gap, a repair is fetched (held)
    t.publish("c", 1);  // 7: held behind the repair
    t.world->release();
    t.world->hold_fetches = false;
    t.publish("c", 1);  // 8
    received ra, rb;
    ra.take(a);
    rb.take(b);
    CHECK(ra.offsets() == range(1, 8));
    CHECK(rb.offsets() == range(1, 8));
    CHECK(ra.subscribed().size() == 1);
    CHECK(rb.subscribed().size() == 1);
}

TEST_CASE("remote ordering: a failed fetch answers the subscribe with an error, a failed repair waits for resync") {
    setup t;
    t.world->fail_fetches = true;
    auto c = t.mem.connect();
    REQUIRE_FALSE(c.subscribe("c", position{"e1", 0}));
    received r;
    r.take(c);
    REQUIRE(r.frames.size() == 1);
    CHECK(r.frames[0]->type == frame_type::error);
    CHECK(r.frames[0]->code == herald::error::backplane_unavailable);
    CHECK(c.session()->channels().empty());
    CHECK_FALSE(c.closed());

    t.world->fail_fetches = false;
    REQUIRE_FALSE(c.subscribe("c"));
    t.publish("c", 1);
    t.world->connected = false;
    t.publish("c", 2);
    t.world->connected = true;
    t.world->fail_fetches = true;
    t.publish("c", 1);  // 4: the gap's fetch fails; the session waits, still subscribed
    t.world->fail_fetches = false;
    t.world->reconnect("c");
    t.publish("c", 1);
    received s;
    s.take(c);
    CHECK(s.offsets() == range(1, 5));
}

TEST_CASE("remote ordering: once nobody here follows a channel, the hub tells the backplane") {
    setup t;
    auto c = t.mem.connect();
    c.subscribe("c");
    t.publish("c", 1);
    CHECK(t.world->last_wanted["c"]);
    c.unsubscribe("c");
    t.publish("c", 1);
    CHECK_FALSE(t.world->last_wanted["c"]);
    t.world->reconnect("c");
    CHECK_FALSE(t.world->last_wanted["c"]);
    // The next subscriber starts from the backplane's position, not the forgotten one.
    t.publish("c", 3);
    auto again = t.mem.connect();
    again.subscribe("c");
    t.publish("c", 1);
    received r;
    r.take(again);
    CHECK(r.subscribed()[0]->pos.offset == 5);
    CHECK(r.offsets() == std::vector<std::uint64_t>{6});
}
