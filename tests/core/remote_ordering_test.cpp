// The hub on a backplane that orders elsewhere (as Redis does), with the faults such a backplane
// produces injected one by one: fetches answered late, messages that never arrive (a dropped
// connection), history lost (a new epoch), fetches that fail. Redis itself: tests/cluster.
#include <herald.hpp>
#include <herald/transport/inmemory.hpp>

#include "support/recorder.hpp"
#include "support/scripted_backplane.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

using herald::frame_type;
using herald::position;
using herald::test::range;
using herald::test::received;
using herald::test::scripted_backplane;

namespace {

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

TEST_CASE("remote ordering: a failover that kept every message renames the stream: subscribers keep their offset, no resync") {
    setup t;
    auto c = t.mem.connect();
    c.subscribe("c");
    t.publish("c", 3);
    t.world->fail_over("c", 3);  // the replica had all three
    t.publish("c", 2);           // e2:4 is another epoch: a repair from e1:3 recovers, renamed
    received r;
    r.take(c);
    REQUIRE(r.subscribed().size() == 2);
    CHECK(r.subscribed()[1]->recovered);
    CHECK(r.subscribed()[1]->pos == position{"e2", 3});
    CHECK(r.offsets() == range(1, 5));
    CHECK(*c.cursor("c") == position{"e2", 5});
    CHECK(c.duplicates_dropped() == 0);
    // A client that left at e1:2 resumes in the renamed stream.
    auto back = t.mem.connect();
    back.subscribe("c", position{"e1", 2});
    received b;
    b.take(back);
    REQUIRE(b.subscribed().size() == 1);
    CHECK(b.subscribed()[0]->recovered);
    CHECK(b.offsets() == range(3, 5));
    CHECK(*back.cursor("c") == position{"e2", 5});
}

TEST_CASE("remote ordering: a failover that lost the last writes: who saw them resyncs, who did not resumes") {
    setup t;
    auto c = t.mem.connect();
    c.subscribe("c");
    t.publish("c", 5);
    t.world->fail_over("c", 3);  // e1:4 and e1:5 never reached the replica
    t.publish("c", 1);           // e2:4, another message than e1:4
    received r;
    r.take(c);
    REQUIRE(r.subscribed().size() == 2);
    CHECK_FALSE(r.subscribed()[1]->recovered);  // told: never a silent gap
    CHECK(r.subscribed()[1]->pos == position{"e2", 4});
    CHECK(*c.cursor("c") == position{"e2", 4});
    auto saw_less = t.mem.connect();
    saw_less.subscribe("c", position{"e1", 3});
    received a;
    a.take(saw_less);
    CHECK(a.subscribed()[0]->recovered);
    CHECK(a.offsets() == std::vector<std::uint64_t>{4});
    auto saw_more = t.mem.connect();
    saw_more.subscribe("c", position{"e1", 4});
    received m;
    m.take(saw_more);
    CHECK_FALSE(m.subscribed()[0]->recovered);
}

TEST_CASE("remote ordering: a session counts its subscribes under way until the backplane answers") {
    setup t;
    int wakes = 0;
    const herald::session_ptr s = t.hub.open_session(herald::principal{}, [&] { ++wakes; });
    t.world->hold_fetches = true;
    REQUIRE_FALSE(t.hub.subscribe(s, "a"));
    REQUIRE_FALSE(t.hub.subscribe(s, "b"));
    CHECK(s->joining() == 2);
    t.world->release();
    CHECK(s->joining() == 0);
    CHECK(wakes >= 2);  // the answers, and the count reaching 0 (a long-poll waits for it)
    std::vector<herald::frame_ptr> frames;
    s->take(frames);
    CHECK(frames.size() == 2);
}
