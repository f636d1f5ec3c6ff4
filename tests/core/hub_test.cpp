// The delivery contract, line by line, through the in-memory transport.
#include <herald.hpp>
#include <herald/transport/inmemory.hpp>

#include "support/recorder.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using herald::frame;
using herald::frame_type;

using herald::test::drain;
using herald::test::payload;
using herald::test::range;

TEST_CASE("contract: every message gets its channel's next offset and the channel's epoch") {
    herald::hub hub;
    auto a1 = hub.publish("a", "1");
    auto a2 = hub.publish("a", "2");
    auto b1 = hub.publish("b", "3");
    CHECK(a1.offset == 1);
    CHECK(a2.offset == 2);
    CHECK(b1.offset == 1);  // per channel
    CHECK(a1.epoch == a2.epoch);
    CHECK(a1.epoch != b1.epoch);
    CHECK(hub.head("a") == a2);
    CHECK(hub.head("never").offset == 0);
}

TEST_CASE("contract: a subscriber sees a channel's messages in offset order, each once") {
    herald::hub hub;
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    auto c = mem.connect();
    REQUIRE_FALSE(c.subscribe("projects"));
    REQUIRE_FALSE(c.subscribe("other"));
    for (int i = 0; i < 50; ++i) {
        hub.publish("projects", payload(i));
        if (i % 5 == 0) hub.publish("other", payload(i));
    }
    auto r = drain(c);
    CHECK(r.offsets("projects") == range(1, 50));
    CHECK(r.offsets("other") == range(1, 10));
    // The payload is the publisher's JSON, as is.
    const frame* first = nullptr;
    if (auto m = r.of(frame_type::message); !m.empty()) first = m.front();
    REQUIRE(first);
    CHECK(first->data() == "{\"n\":0}");
    // Subscribing twice does not deliver twice.
    REQUIRE_FALSE(c.subscribe("projects"));
    hub.publish("projects", "true");
    CHECK(drain(c).offsets("projects") == std::vector<std::uint64_t>{51});
    // After unsubscribe, nothing more arrives.
    REQUIRE_FALSE(c.unsubscribe("projects"));
    hub.publish("projects", "true");
    auto after = drain(c);
    CHECK(after.offsets("projects").empty());
    CHECK(after.last_of(frame_type::unsubscribed));
    CHECK(c.unsubscribe("projects") == herald::error::not_subscribed);
}

TEST_CASE("contract: subscribe without since starts live at the head") {
    herald::hub hub;
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    hub.publish("c", "1");
    hub.publish("c", "2");
    auto c = mem.connect();
    c.subscribe("c");
    auto r = drain(c);
    const frame* sub = r.last_of(frame_type::subscribed);
    REQUIRE(sub);
    CHECK(sub->pos.offset == 2);
    CHECK(sub->recovered);
    CHECK(r.offsets("c").empty());  // the past is not replayed without `since`
    hub.publish("c", "3");
    CHECK(drain(c).offsets("c") == std::vector<std::uint64_t>{3});
}

TEST_CASE("contract: resubscribing since a cursor replays what was missed, no gap, no duplicate") {
    herald::hub hub;
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    auto c = mem.connect();
    c.subscribe("c");
    for (int i = 0; i < 10; ++i) hub.publish("c", payload(i));
    CHECK(drain(c).offsets("c") == range(1, 10));
    const herald::position cursor = *c.cursor("c");
    CHECK(cursor.offset == 10);

    c.close();  // the editor's laptop sleeps
    for (int i = 10; i < 25; ++i) hub.publish("c", payload(i));

    auto again = mem.connect();
    REQUIRE_FALSE(again.subscribe("c", cursor));
    for (int i = 25; i < 30; ++i) hub.publish("c", payload(i));
    auto r = drain(again);
    const frame* sub = r.last_of(frame_type::subscribed);
    REQUIRE(sub);
    CHECK(sub->recovered);
    CHECK(r.offsets("c") == range(11, 30));
    CHECK(again.cursor("c")->offset == 30);

    // A resume from a cursor the client already passed yields no duplicate to the app.
    REQUIRE_FALSE(again.subscribe("c", herald::position{cursor.epoch, 20}));
    auto dup = drain(again);
    CHECK(dup.offsets("c").empty());
    CHECK(again.duplicates_dropped() == 10);
}

TEST_CASE("contract: recovered false when the history no longer holds what was missed") {
    herald::hub_options opts;
    opts.history.max_messages = 5;
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    const auto p1 = hub.publish("c", "1");
    for (int i = 0; i < 9; ++i) hub.publish("c", "2");  // head 10, history 6..10

    SECTION("by count") {
        auto c = mem.connect();
        c.subscribe("c", p1);  // missed 2..10, only 6..10 held
        auto r = drain(c);
        const frame* sub = r.last_of(frame_type::subscribed);
        REQUIRE(sub);
        CHECK_FALSE(sub->recovered);
        CHECK(sub->pos.offset == 10);
        CHECK(r.offsets("c").empty());  // a partial replay would be a silent gap
        hub.publish("c", "3");
        CHECK(drain(c).offsets("c") == std::vector<std::uint64_t>{11});
    }
    SECTION("the edge: exactly what the history holds is recovered") {
        auto c = mem.connect();
        c.subscribe("c", {p1.epoch, 5});
        auto r = drain(c);
        CHECK(r.last_of(frame_type::subscribed)->recovered);
        CHECK(r.offsets("c") == range(6, 10));
    }
}

TEST_CASE("contract: recovered false when the history aged out") {
    herald::hub_options opts;
    opts.history.max_age = 50ms;
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    const auto p1 = hub.publish("c", "1");
    hub.publish("c", "2");
    std::this_thread::sleep_for(120ms);
    auto c = mem.connect();
    c.subscribe("c", p1);
    auto r = drain(c);
    CHECK_FALSE(r.last_of(frame_type::subscribed)->recovered);
    CHECK(r.offsets("c").empty());
}

TEST_CASE("contract: recovered false after an epoch change (history lost)") {
    herald::position cursor;
    {
        herald::hub first;  // the server before its restart
        first.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
        first.publish("c", "1");
        cursor = first.publish("c", "2");
    }
    herald::hub hub;  // after the restart: the history is gone, a new epoch
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    hub.publish("c", "3");
    auto c = mem.connect();
    c.subscribe("c", cursor);
    auto r = drain(c);
    const frame* sub = r.last_of(frame_type::subscribed);
    REQUIRE(sub);
    CHECK_FALSE(sub->recovered);
    CHECK(sub->pos.epoch != cursor.epoch);
    CHECK(c.cursor("c")->epoch == sub->pos.epoch);  // the client adopts the new stream

    // A channel forgotten by the sweep (no subscriber, history aged out) also starts a new epoch.
    herald::hub_options opts;
    opts.history.max_age = 10ms;
    herald::hub swept(opts);
    const auto before = swept.publish("quiet", "1");
    std::this_thread::sleep_for(30ms);
    swept.sweep();
    CHECK(swept.stats().channels == 0);
    const auto after = swept.publish("quiet", "2");
    CHECK(after.epoch != before.epoch);
    CHECK(after.offset == 1);
}

TEST_CASE("contract: a quiet channel forgotten by the sweep keeps its epoch: a resume from its head recovers") {
    // The page's pattern: read the head of a channel nobody published to yet, subscribe `since`
    // it later (or resume after a blip). The sweep forgets the channel meanwhile; nothing was
    // lost, so the first publish after it continues the same stream.
    herald::hub_options opts;
    opts.history.max_age = 10ms;
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    const auto read = hub.head("quiet");
    CHECK(read.offset == 0);
    hub.sweep();
    CHECK(hub.stats().channels == 0);
    CHECK(hub.head("quiet") == read);
    hub.sweep();
    const auto first = hub.publish("quiet", "1");
    CHECK(first.epoch == read.epoch);
    CHECK(first.offset == 1);
    auto c = mem.connect();
    c.subscribe("quiet", read);
    auto r = drain(c);
    REQUIRE(r.last_of(frame_type::subscribed));
    CHECK(r.last_of(frame_type::subscribed)->recovered);
    CHECK(r.offsets("quiet") == range(1, 1));

    // Once it held a message that is then lost, it comes back under another epoch, each time.
    c.close();
    drain(c);
    std::this_thread::sleep_for(30ms);
    hub.sweep();
    CHECK(hub.stats().channels == 0);
    const auto second = hub.publish("quiet", "2");
    CHECK(second.epoch != read.epoch);
    CHECK(second.offset == 1);
    std::this_thread::sleep_for(30ms);
    hub.sweep();
    const auto third = hub.head("quiet");
    CHECK(third.epoch != second.epoch);
    CHECK(third.epoch != read.epoch);
    auto late = mem.connect();
    late.subscribe("quiet", first);
    auto lr = drain(late);
    REQUIRE(lr.last_of(frame_type::subscribed));
    CHECK_FALSE(lr.last_of(frame_type::subscribed)->recovered);
}

TEST_CASE("contract: a slow consumer is capped, disconnected with its own reason, and resumes without loss") {
    herald::hub_options opts;
    opts.session.max_queued_messages = 100;
    opts.history.max_messages = 1000;
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    auto fast = mem.connect();
    auto slow = mem.connect();
    for (auto* cl : {&fast, &slow}) {
        cl->subscribe("c");
        cl->subscribe("d");
    }
    drain(fast);
    drain(slow);

    for (int i = 0; i < 30; ++i) hub.publish("c", payload(i));
    CHECK(drain(slow).offsets("c") == range(1, 30));  // it read these, then stalls
    std::vector<std::uint64_t> fast_seen = drain(fast).offsets("c");
    for (int i = 30; i < 50; ++i) {
        hub.publish("c", payload(i));
        for (auto o : drain(fast).offsets("c")) fast_seen.push_back(o);
    }
    for (int i = 0; i < 200; ++i) {
        hub.publish("d", payload(i));  // "d" floods it past its cap
        drain(fast);
    }
    CHECK(fast_seen == range(1, 50));  // the fast one is unaffected
    CHECK_FALSE(fast.closed());
    CHECK(slow.closed());
    CHECK(slow.close_reason() == herald::error::slow_consumer);
    CHECK(hub.stats().slow_consumers == 1);
    // Memory stayed bounded: the closed session holds nothing.
    CHECK(slow.session()->queued_messages() == 0);

    REQUIRE_FALSE(slow.reconnect());  // resumes from its cursors (c: 30, d: 0)
    auto r = drain(slow);
    const frame* c_sub = nullptr;
    const frame* d_sub = nullptr;
    for (const frame* f : r.subscribed()) (f->channel == "c" ? c_sub : d_sub) = f;
    REQUIRE(c_sub);
    REQUIRE(d_sub);
    CHECK(c_sub->recovered);
    CHECK(r.offsets("c") == range(31, 50));  // no loss where the replay fits the queue
    // d's 200 missed messages do not fit a queue of 100: not sent, the client resyncs d.
    CHECK_FALSE(d_sub->recovered);
    CHECK(d_sub->pos.offset == 200);
    CHECK(r.offsets("d").empty());
    CHECK_FALSE(slow.closed());
    hub.publish("d", "1");
    CHECK(drain(slow).offsets("d") == range(201, 201));
}

TEST_CASE("contract: a client cut off before its subscribe was answered is told to resync, never left with a gap") {
    herald::hub_options opts;
    opts.session.max_queued_messages = 4;
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    auto c = mem.connect();
    c.subscribe("c");  // `subscribed` is queued, then dropped with the queue when it overflows
    for (int i = 0; i < 10; ++i) hub.publish("c", "1");
    REQUIRE(c.close_reason() == herald::error::slow_consumer);
    REQUIRE_FALSE(c.reconnect());
    auto r = drain(c);
    REQUIRE(r.last_of(frame_type::subscribed));
    CHECK_FALSE(r.last_of(frame_type::subscribed)->recovered);
    CHECK(c.cursor("c")->offset == 10);
}

TEST_CASE("contract: the byte cap counts as well as the message cap") {
    herald::hub_options opts;
    opts.session.max_queued_bytes = 4096;
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    auto c = mem.connect();
    c.subscribe("c");
    const std::string big = "\"" + std::string(1000, 'x') + "\"";
    for (int i = 0; i < 5; ++i) hub.publish("c", big);
    CHECK(c.close_reason() == herald::error::slow_consumer);
}

TEST_CASE("authorization: denied subscribe and publish get forbidden, nothing is delivered") {
    herald::hub hub;
    herald::rule_authorizer rules;
    rules.allow(herald::action::subscribe, "projects.**").allow(herald::action::subscribe, "user.{principal}.**");
    hub.set_authorizer(rules);
    herald::transport::inmemory mem(hub);
    auto alice = mem.connect({"alice"});
    CHECK_FALSE(alice.subscribe("user.alice.notifications"));
    CHECK(alice.subscribe("user.bob.notifications") == herald::error::forbidden);
    CHECK(alice.subscribe("admin") == herald::error::forbidden);
    std::error_code ec;
    alice.publish("projects.1", "1", ec);
    CHECK(ec == herald::error::forbidden);
    hub.publish("user.bob.notifications", R"({"text":"for bob"})");
    hub.publish("user.alice.notifications", R"({"text":"for alice"})");
    auto r = drain(alice);
    CHECK(r.offsets("user.bob.notifications").empty());
    CHECK(r.offsets("user.alice.notifications").size() == 1);

    // Through the protocol: an error frame naming the channel and request; the session stays up.
    CHECK(alice.apply(R"({"type":"subscribe","channel":"user.bob.notifications","id":5})") == herald::error::forbidden);
    auto e = drain(alice);
    const frame* err = e.last_of(frame_type::error);
    REQUIRE(err);
    auto j = nlohmann::json::parse(err->text);
    CHECK(j["code"] == "forbidden");
    CHECK(j["channel"] == "user.bob.notifications");
    CHECK(j["id"] == 5);
    CHECK_FALSE(alice.closed());
}

TEST_CASE("bad input: invalid channel, non-JSON payload, oversized payload get clear errors and lose nothing") {
    herald::hub_options opts;
    opts.max_payload_bytes = 100;
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    auto c = mem.connect();
    CHECK(c.subscribe("bad channel") == herald::error::invalid_channel);
    c.subscribe("ok");
    std::error_code ec;
    hub.publish("bad/channel", "1", ec);
    CHECK(ec == herald::error::invalid_channel);
    hub.publish("ok", "{not json", ec);
    CHECK(ec == herald::error::invalid_payload);
    hub.publish("ok", "1 2", ec);
    CHECK(ec == herald::error::invalid_payload);
    hub.publish("ok", "\"" + std::string(200, 'x') + "\"", ec);
    CHECK(ec == herald::error::payload_too_large);
    CHECK_THROWS_AS(hub.publish("ok", "nope"), herald::system_error);
    const auto p = hub.publish("ok", R"({"fine":true})", ec);
    CHECK_FALSE(ec);
    CHECK(p.offset == 1);  // refused publishes took no offset
    CHECK(drain(c).offsets("ok") == std::vector<std::uint64_t>{1});
    CHECK(hub.stats().publish_errors == 5);

    // Malformed client frames: an error frame each, and the session goes on.
    CHECK(c.apply("{oops") == herald::error::malformed_frame);
    CHECK(c.apply(R"({"type":"shout"})") == herald::error::unknown_frame_type);
    CHECK(c.apply(R"({"type":"subscribe","channel":"a b"})") == herald::error::invalid_channel);
    CHECK(c.apply(R"({"type":"publish","channel":"ok","data":{"from":"client"},"id":8})") == std::error_code{});
    auto r = drain(c);
    CHECK(r.of(frame_type::error).size() == 3);
    CHECK(r.offsets("ok") == std::vector<std::uint64_t>{2});
    const frame* ack = r.last_of(frame_type::published);
    REQUIRE(ack);
    CHECK(ack->request_id == 8);
    CHECK(ack->pos.offset == 2);
}

TEST_CASE("sessions: too many subscriptions is refused, and closing drops the session everywhere") {
    herald::hub_options opts;
    opts.session.max_subscriptions = 3;
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    auto c = mem.connect();
    CHECK_FALSE(c.subscribe("a"));
    CHECK_FALSE(c.subscribe("b"));
    CHECK_FALSE(c.subscribe("c"));
    CHECK(c.subscribe("d") == herald::error::too_many_subscriptions);
    CHECK(hub.stats().sessions == 1);
    c.close();
    CHECK(hub.stats().sessions == 0);
    CHECK(c.subscribe("e") == herald::error::session_closed);
    hub.publish("a", "1");
    CHECK(hub.stats().deliveries == 0);

    herald::transport::inmemory off(hub, {false});
    auto disabled = off.connect();
    CHECK(disabled.closed());
    CHECK(disabled.subscribe("a") == herald::error::session_closed);
}
