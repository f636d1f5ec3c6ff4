// The long-poll transport in process, through the public transport interface: polls offered
// on a test_connection, answers read back from it. No socket, no Node (those: tests/protocol).
#include <herald/transport/longpoll.hpp>

#include "support/recorder.hpp"
#include "support/scripted_backplane.hpp"
#include "support/test_connection.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using json = nlohmann::json;
using herald::test::make_request;
using herald::test::offer;
using herald::test::test_connection;

namespace {

/// A long-poll transport made as basic_server makes it, on a hub whose authorizer allows the
/// channels these tests use (never the default one).
struct longpoll_fixture {
    herald::server_options opts;
    herald::hub hub{opts.hub};
    herald::net::transport_context ctx{hub, opts};
    herald::transport::longpoll::options lp_opts;
    std::unique_ptr<herald::transport::longpoll> lp;

    explicit longpoll_fixture(herald::transport::longpoll::options o = {}) : lp_opts(std::move(o)) {
        herald::rule_authorizer auth;
        auth.allow(herald::action::subscribe, "c").allow(herald::action::subscribe, "news.**");
        hub.set_authorizer(std::move(auth));
        ctx.server_id = "test";
        ctx.transports = {"longpoll"};
        lp = std::make_unique<herald::transport::longpoll>(ctx, lp_opts);
    }

    /// Offers a poll with `body` on a new connection.
    std::shared_ptr<test_connection> poll(const std::string& body) {
        auto c = test_connection::make();
        REQUIRE(offer(*lp, c, make_request("POST", "/herald/poll", {{"Host", "127.0.0.1:8080"},
                                                                    {"Content-Type", "application/json"}}, body)));
        return c;
    }

    /// A poll of "c" from its head, held: nothing new to answer yet.
    std::shared_ptr<test_connection> held_poll(std::chrono::milliseconds timeout = 20000ms) {
        const herald::position head = hub.publish("c", herald::test::payload(1));
        auto c = poll(R"({"channels":{"c":{"epoch":")" + head.epoch + R"(","offset":)" + std::to_string(head.offset) +
                      R"(}},"timeout":)" + std::to_string(timeout.count()) + "}");
        c->run();
        REQUIRE(c->responses.empty());
        return c;
    }
};

/// The frames of a poll's answer.
json frames_of(const test_connection::response& r) {
    json j = json::parse(r.body);
    REQUIRE(j.contains("frames"));
    return j["frames"];
}

std::vector<std::uint64_t> offsets_of(const json& frames) {
    std::vector<std::uint64_t> o;
    for (const json& f : frames)
        if (f["type"] == "message") o.push_back(f["offset"].get<std::uint64_t>());
    return o;
}

} // namespace

TEST_CASE("long-poll: a poll with timeout 0 answers at once with subscribed") {
    longpoll_fixture t;
    auto c = t.poll(R"({"channels":{"c":null},"timeout":0})");
    c->run();
    REQUIRE(c->responses.size() == 1);
    CHECK(c->responses[0].status == 200);
    json frames = frames_of(c->responses[0]);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0]["type"] == "subscribed");
    CHECK(frames[0]["channel"] == "c");
    CHECK(frames[0]["offset"] == 0);
    CHECK(t.hub.stats().sessions == 0);  // a poll's session ends with its answer
}

TEST_CASE("long-poll: a held poll answers when a publish wakes it") {
    longpoll_fixture t;
    auto c = t.held_poll();
    CHECK(c->holds == 1);
    CHECK(t.lp->held() == 1);

    t.hub.publish("c", herald::test::payload(2));
    CHECK(c->responses.empty());  // the answer comes on the strand, from the wake
    c->run();
    CHECK(c->wakes >= 1);
    REQUIRE(c->responses.size() == 1);
    CHECK(c->responses[0].status == 200);
    json frames = frames_of(c->responses[0]);
    CHECK(offsets_of(frames) == std::vector<std::uint64_t>{2});
    CHECK(frames.back()["data"] == json::parse(herald::test::payload(2)));
    CHECK(t.lp->held() == 0);
    CHECK(t.hub.stats().sessions == 0);
}

TEST_CASE("long-poll: a poll with a cursor gets the messages it missed") {
    longpoll_fixture t;
    herald::position p;
    for (int i = 1; i <= 5; ++i) p = t.hub.publish("news.front", herald::test::payload(i));
    auto c = t.poll(R"({"channels":{"news.front":{"epoch":")" + p.epoch + R"(","offset":2}},"timeout":20000})");
    c->run();
    REQUIRE(c->responses.size() == 1);
    CHECK(c->responses[0].status == 200);
    json frames = frames_of(c->responses[0]);
    CHECK(offsets_of(frames) == herald::test::range(3, 5));
    for (const json& f : frames)
        if (f["type"] == "message") CHECK(f["epoch"] == p.epoch);
}

TEST_CASE("long-poll: an answer stops at max_answer_bytes, in order, and the next polls resume from the cursor: nothing lost") {
    herald::transport::longpoll::options o;
    o.max_answer_bytes = 64 * 1024;
    longpoll_fixture t(o);
    const std::string big = "\"" + std::string(10 * 1024, 'x') + "\"";  // a 10 KiB JSON string
    herald::position p;
    for (int i = 0; i < 40; ++i) p = t.hub.publish("news.front", big);  // 400 KiB in history
    std::vector<std::uint64_t> got;
    std::uint64_t cursor = 0;
    int polls = 0;
    while (got.size() < 40 && polls++ < 20) {
        auto c = t.poll(R"({"channels":{"news.front":{"epoch":")" + p.epoch + R"(","offset":)" + std::to_string(cursor) +
                        R"(}},"timeout":0})");
        c->run();
        REQUIRE(c->responses.size() == 1);
        CHECK(c->responses[0].status == 200);
        CHECK(c->responses[0].body.size() <= o.max_answer_bytes + 64);  // the envelope
        const std::vector<std::uint64_t> offsets = offsets_of(frames_of(c->responses[0]));
        REQUIRE_FALSE(offsets.empty());
        got.insert(got.end(), offsets.begin(), offsets.end());
        cursor = offsets.back();
    }
    CHECK(got == herald::test::range(1, 40));
    CHECK(polls >= 7);  // 400 KiB in answers of at most 64 KiB
}

TEST_CASE("long-poll: one frame larger than max_answer_bytes still goes, alone") {
    herald::transport::longpoll::options o;
    o.max_answer_bytes = 1024;
    longpoll_fixture t(o);
    const herald::position p = t.hub.publish("news.front", "\"" + std::string(4096, 'y') + "\"");
    t.hub.publish("news.front", herald::test::payload(2));
    auto c = t.poll(R"({"channels":{"news.front":{"epoch":")" + p.epoch + R"(","offset":0}},"timeout":0})");
    c->run();
    REQUIRE(c->responses.size() == 1);
    CHECK(offsets_of(frames_of(c->responses[0])) == std::vector<std::uint64_t>{1});
}

TEST_CASE("long-poll: a poll past its timeout answers with no frames on the next tick") {
    longpoll_fixture t;
    auto c = t.held_poll(500ms);
    c->tick(herald::net::clock::now() + 100ms);  // not yet
    CHECK(c->responses.empty());
    c->tick(herald::net::clock::now() + 600ms);
    c->run();
    REQUIRE(c->responses.size() == 1);
    CHECK(c->responses[0].status == 200);
    CHECK(json::parse(c->responses[0].body) == json::parse(R"({"frames":[]})"));
    CHECK(t.hub.stats().sessions == 0);
}

TEST_CASE("long-poll: a drain answers held polls 503 with a reconnect frame and Retry-After, and new ones too") {
    longpoll_fixture t;
    auto c = t.held_poll();

    t.ctx.draining = true;
    c->drain(1500ms);
    c->run();
    REQUIRE(c->responses.size() == 1);
    CHECK(c->responses[0].status == 503);
    CHECK(c->responses[0].header("Retry-After") == "2");
    json frames = frames_of(c->responses[0]);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0]["type"] == "reconnect");
    CHECK(frames[0]["after"] == 1500);
    CHECK(t.hub.stats().sessions == 0);

    // A poll that comes while the server drains is told the same, without a session.
    auto late = t.poll(R"({"channels":{"c":null},"timeout":0})");
    late->run();
    REQUIRE(late->responses.size() == 1);
    CHECK(late->responses[0].status == 503);
    CHECK_FALSE(late->responses[0].header("Retry-After").empty());
    CHECK(frames_of(late->responses[0])[0]["type"] == "reconnect");
    CHECK(late->holds == 0);
}

TEST_CASE("long-poll: a peer that leaves mid-hold closes its session") {
    longpoll_fixture t;
    auto c = t.held_poll();
    CHECK(t.hub.stats().sessions == 1);

    c->peer_closes();
    c->run();
    CHECK(t.hub.stats().sessions == 0);
    CHECK(t.lp->held() == 0);
    t.hub.publish("c", "2");  // nobody to wake, nothing to answer
    c->run();
    CHECK(c->responses.empty());
}

TEST_CASE("long-poll: a malformed body gets 400 and opens no session") {
    longpoll_fixture t;
    for (const char* body : {"not json", "[1,2]", R"({"timeout":0})", R"({"channels":["c"]})",
                             R"({"channels":{"c":null},"timeout":"soon"})"}) {
        INFO(body);
        auto c = t.poll(body);
        c->run();
        REQUIRE(c->responses.size() == 1);
        CHECK(c->responses[0].status == 400);
        CHECK(herald::test::error_code_of(c->responses[0]) == "malformed_frame");
        CHECK(c->holds == 0);
    }
    CHECK(t.hub.stats().sessions == 0);
}

TEST_CASE("long-poll: a resume into a renamed stream (a Redis failover) answers its subscribed, and the missed messages in the new epoch") {
    // A resume the new primary can serve: the poll says the stream's new name (contract 5), so
    // that the client keeps its offset under it rather than resyncing at the first message.
    auto world = std::make_shared<herald::test::scripted_backplane::world>();
    herald::server_options opts;
    herald::hub hub(opts.hub, herald::test::scripted_backplane(world));
    herald::rule_authorizer auth;
    auth.allow(herald::action::subscribe, "c");
    hub.set_authorizer(std::move(auth));
    herald::net::transport_context ctx{hub, opts};
    ctx.server_id = "test";
    ctx.transports = {"longpoll"};
    herald::transport::longpoll lp(ctx, {});
    herald::position p;
    for (int i = 1; i <= 5; ++i) p = hub.publish("c", herald::test::payload(i));
    world->fail_over("c", 5);
    auto c = test_connection::make();
    REQUIRE(offer(lp, c, make_request("POST", "/herald/poll", {{"Host", "127.0.0.1:8080"}},
                                      R"({"channels":{"c":{"epoch":")" + p.epoch + R"(","offset":3}},"timeout":0})")));
    c->run();
    REQUIRE(c->responses.size() == 1);
    const json frames = frames_of(c->responses[0]);
    REQUIRE(frames.size() >= 1);
    CHECK(frames[0]["type"] == "subscribed");
    CHECK(frames[0]["recovered"] == true);
    CHECK(frames[0]["epoch"] != p.epoch);
    CHECK(offsets_of(frames) == herald::test::range(4, 5));
    for (const json& f : frames) CHECK(f["epoch"] == frames[0]["epoch"]);

    // A resume in the stream's current name is confirmed silently, as before.
    const std::string renamed = frames[0]["epoch"];
    auto again = test_connection::make();
    REQUIRE(offer(lp, again, make_request("POST", "/herald/poll", {{"Host", "127.0.0.1:8080"}},
                                          R"({"channels":{"c":{"epoch":")" + renamed + R"(","offset":5}},"timeout":0})")));
    again->run();
    REQUIRE(again->responses.size() == 1);
    CHECK(frames_of(again->responses[0]).empty());
}
