// Presence ("who else is here", herald.v2) on one hub: one member per principal however many
// sessions it has, join and leave once each, the bounds, the authorizer's say, and that
// presence changes nothing for the sessions that do not take part in it.
#include <herald.hpp>
#include <herald/transport/inmemory.hpp>

#include "support/recorder.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

using herald::frame_type;
using herald::test::drain;

namespace {

// alice and bob may subscribe to and see presence on projects.*; carol may only subscribe.
herald::rule_authorizer project_rules() {
    herald::rule_authorizer auth;
    auth.allow(herald::action::subscribe, "projects.*");
    auth.allow(herald::action::presence, "projects.*");
    return auth;
}

struct presence_rules {
    herald::rule_authorizer rules = project_rules();
    std::optional<herald::principal> authenticate(const herald::request_info&) const { return herald::principal{}; }
    bool may(const herald::principal& p, herald::action a, std::string_view c) const { return rules.may(p, a, c); }
    bool may_presence(const herald::principal& p, std::string_view c) const {
        return p.id != "carol" && rules.may_presence(p, c);
    }
};

// Leaves told at once (presence_options::linger 0), so that each step shows its event; the
// linger has its own test.
herald::hub_options at_once() {
    herald::hub_options o;
    o.presence.linger = std::chrono::milliseconds(0);
    return o;
}

herald::principal user(std::string id, std::string info = {}) {
    herald::principal p{std::move(id)};
    p.presence_info = std::move(info);
    return p;
}

// "join alice", "leave bob": the presence events a client heard, in order.
std::vector<std::string> events(const herald::test::received& r, std::string_view channel = "projects.1") {
    std::vector<std::string> out;
    for (const auto& f : r.frames) {
        if ((f->type != frame_type::join && f->type != frame_type::leave) || f->channel != channel) continue;
        const auto j = nlohmann::json::parse(f->text);
        out.push_back(j.at("type").get<std::string>() + " " + j.at("user").get<std::string>());
    }
    return out;
}

std::vector<std::string> users(const std::vector<herald::presence_member>& m) {
    std::vector<std::string> out;
    for (const auto& x : m) out.push_back(x.user);
    return out;
}

} // namespace

TEST_CASE("presence: a principal with several sessions is one member, join and leave are told once") {
    herald::hub hub(at_once());
    hub.set_authorizer(presence_rules{});
    herald::transport::inmemory mem(hub);
    auto watcher = mem.connect(user("bob", R"({"name":"Bob"})"));
    REQUIRE_FALSE(watcher.subscribe("projects.1"));
    CHECK(events(drain(watcher)) == std::vector<std::string>{"join bob"});

    std::vector<herald::transport::inmemory::client> tabs;
    for (int i = 0; i < 5; ++i) {
        tabs.push_back(mem.connect(user("alice", R"({"name":"Alice"})")));
        REQUIRE_FALSE(tabs.back().subscribe("projects.1"));
        REQUIRE_FALSE(tabs.back().subscribe("projects.1"));  // a resubscribe lists nothing more
    }
    auto seen = drain(watcher);
    CHECK(events(seen) == std::vector<std::string>{"join alice"});
    const auto join = seen.of(frame_type::join).front();
    CHECK(nlohmann::json::parse(join->text) == nlohmann::json::parse(
              R"({"type":"join","channel":"projects.1","user":"alice","info":{"name":"Alice"}})"));

    const auto members = hub.presence("projects.1");
    CHECK(users(members) == std::vector<std::string>{"alice", "bob"});
    CHECK(members.front().info == R"({"name":"Alice"})");
    CHECK(hub.stats().presence_members == 2);

    // Four of five tabs go (one unsubscribes, three close): alice is still there.
    REQUIRE_FALSE(tabs[0].unsubscribe("projects.1"));
    for (int i = 1; i < 4; ++i) tabs[i].close();
    CHECK(events(drain(watcher)).empty());
    CHECK(users(hub.presence("projects.1")) == std::vector<std::string>{"alice", "bob"});
    tabs[4].close();
    CHECK(events(drain(watcher)) == std::vector<std::string>{"leave alice"});
    CHECK(users(hub.presence("projects.1")) == std::vector<std::string>{"bob"});

    watcher.close();
    CHECK(hub.presence("projects.1").empty());
    CHECK(hub.stats().presence_channels == 0);
}

TEST_CASE("presence: the client's presence request is answered with the members, once per principal") {
    herald::hub hub(at_once());
    hub.set_authorizer(presence_rules{});
    herald::transport::inmemory mem(hub);
    auto a = mem.connect(user("alice", R"({"name":"Alice"})"));
    auto a2 = mem.connect(user("alice", R"({"name":"Alice"})"));
    auto b = mem.connect(user("bob"));
    REQUIRE_FALSE(a.subscribe("projects.7"));
    REQUIRE_FALSE(a2.subscribe("projects.7"));
    REQUIRE_FALSE(b.subscribe("projects.7"));
    drain(b);
    REQUIRE_FALSE(b.apply(R"({"type":"presence","channel":"projects.7","id":9})"));
    const auto r = drain(b);
    REQUIRE(r.of(frame_type::presence).size() == 1);
    CHECK(nlohmann::json::parse(r.of(frame_type::presence).front()->text) == nlohmann::json::parse(
              R"({"type":"presence","channel":"projects.7","id":9,"members":[
                   {"user":"alice","info":{"name":"Alice"}},{"user":"bob","info":null}]})"));
    // A channel nobody is in: an empty list (asking needs no subscription, only the rule).
    REQUIRE_FALSE(b.apply(R"({"type":"presence","channel":"projects.8"})"));
    CHECK(drain(b).of(frame_type::presence).front()->text == R"({"type":"presence","channel":"projects.8","members":[]})");
}

TEST_CASE("presence: the authorizer decides, without a presence check it is off") {
    SECTION("refused: not listed, hears nothing, its request is forbidden; a bystander is still served") {
        herald::hub hub(at_once());
        hub.set_authorizer(presence_rules{});
        herald::transport::inmemory mem(hub);
        auto alice = mem.connect(user("alice"));
        auto carol = mem.connect(user("carol"));  // may subscribe, not see presence
        REQUIRE_FALSE(alice.subscribe("projects.1"));
        REQUIRE_FALSE(carol.subscribe("projects.1"));
        CHECK(users(hub.presence("projects.1")) == std::vector<std::string>{"alice"});
        auto bob = mem.connect(user("bob"));
        REQUIRE_FALSE(bob.subscribe("projects.1"));
        const auto heard = drain(carol);
        CHECK(events(heard).empty());
        CHECK(carol.apply(R"({"type":"presence","channel":"projects.1","id":3})") == herald::error::forbidden);
        const auto answers = drain(carol);  // of() points into it: keep it alive
        const auto refused = answers.of(frame_type::error);
        REQUIRE(refused.size() == 1);
        CHECK(refused.front()->code == herald::error::forbidden);
        // carol still gets the channel's messages, as any subscriber.
        hub.publish("projects.1", R"({"item":1})");
        CHECK(drain(carol).offsets("projects.1") == std::vector<std::uint64_t>{1});
        CHECK(events(drain(alice)) == std::vector<std::string>{"join alice", "join bob"});
    }
    SECTION("rule_authorizer: a subscribe rule alone carries no presence") {
        herald::hub hub(at_once());
        herald::rule_authorizer auth;
        auth.allow(herald::action::subscribe, "projects.*");
        auth.allow(herald::action::presence, "projects.1");
        hub.set_authorizer(auth);
        herald::transport::inmemory mem(hub);
        auto a = mem.connect(user("alice"));
        REQUIRE_FALSE(a.subscribe("projects.1"));
        REQUIRE_FALSE(a.subscribe("projects.2"));
        CHECK(users(hub.presence("projects.1")) == std::vector<std::string>{"alice"});
        CHECK(hub.presence("projects.2").empty());
        CHECK_FALSE(hub.may(user("alice"), herald::action::presence, "projects.2"));
    }
    SECTION("an authorizer written without may_presence: presence is off everywhere") {
        struct old_rules {
            std::optional<herald::principal> authenticate(const herald::request_info&) const { return herald::principal{}; }
            bool may(const herald::principal&, herald::action, std::string_view) const { return true; }
        };
        herald::hub hub(at_once());
        hub.set_authorizer(old_rules{});
        herald::transport::inmemory mem(hub);
        auto a = mem.connect(user("alice"));
        REQUIRE_FALSE(a.subscribe("projects.1"));
        CHECK(hub.presence("projects.1").empty());
        CHECK(events(drain(a)).empty());
        CHECK_FALSE(hub.may(user("alice"), herald::action::presence, "projects.1"));
    }
}

TEST_CASE("presence: bounds on members per channel and on info, anonymous and role-less sessions are not listed") {
    herald::hub_options o = at_once();
    o.presence.max_members = 3;
    o.presence.max_info_bytes = 32;
    std::vector<std::string> logged;
    o.log = [&](herald::log_level, std::string_view t) { logged.emplace_back(t); };
    herald::hub hub(o);
    hub.set_authorizer(presence_rules{});
    herald::transport::inmemory mem(hub);
    std::vector<herald::transport::inmemory::client> cs;
    for (const char* id : {"u1", "u2", "u3", "u4"}) {
        cs.push_back(mem.connect(user(id)));
        REQUIRE_FALSE(cs.back().subscribe("projects.1"));  // u4 subscribes: served, not listed
    }
    CHECK(users(hub.presence("projects.1")) == std::vector<std::string>{"u1", "u2", "u3"});
    hub.publish("projects.1", "1");
    CHECK(drain(cs[3]).offsets("projects.1") == std::vector<std::uint64_t>{1});
    CHECK(events(drain(cs[3])).empty());
    // A fourth member is listed once a place is free (its next subscribe).
    cs[0].close();
    REQUIRE_FALSE(cs[3].unsubscribe("projects.1"));
    REQUIRE_FALSE(cs[3].subscribe("projects.1"));
    CHECK(users(hub.presence("projects.1")) == std::vector<std::string>{"u2", "u3", "u4"});

    // Info too large, or not JSON: null, and a warning.
    auto big = mem.connect(user("big", R"({"name":")" + std::string(40, 'x') + "\"}"));
    auto bad = mem.connect(user("bad", "{not json"));
    REQUIRE_FALSE(big.subscribe("projects.2"));
    REQUIRE_FALSE(bad.subscribe("projects.2"));
    for (const auto& m : hub.presence("projects.2")) CHECK(m.info == "null");
    // Logged once (a CMS whose hook gets it wrong gets it wrong for everyone).
    CHECK(std::count_if(logged.begin(), logged.end(), [](const std::string& l) { return l.find("null instead") != std::string::npos; }) == 1);
    CHECK(std::count_if(logged.begin(), logged.end(), [](const std::string& l) { return l.find("max_members") != std::string::npos; }) == 1);

    // Anonymous sessions and sessions that take no part (long-poll's) are not listed.
    auto anon = mem.connect();
    REQUIRE_FALSE(anon.subscribe("projects.3"));
    CHECK(hub.presence("projects.3").empty());
    herald::peer poll(hub, user("poller"), [] {});
    REQUIRE_FALSE(poll.subscribe("projects.3"));
    CHECK(hub.presence("projects.3").empty());
    // ...and a presence request from a session that is no listener (a herald.v1 client) is an unknown frame.
    CHECK(poll.apply(R"({"type":"presence","channel":"projects.3"})") == herald::error::unknown_frame_type);
}

TEST_CASE("presence: a member lingers after its last session: back within the linger, nobody hears it leave") {
    using namespace std::chrono_literals;
    herald::hub_options o;
    o.presence.linger = 300ms;
    herald::hub hub(o);
    hub.set_authorizer(presence_rules{});
    herald::transport::inmemory mem(hub);
    auto watcher = mem.connect(user("bob"));
    REQUIRE_FALSE(watcher.subscribe("projects.1"));
    auto alice = mem.connect(user("alice"));
    REQUIRE_FALSE(alice.subscribe("projects.1"));
    CHECK(events(drain(watcher)) == std::vector<std::string>{"join bob", "join alice"});

    // alice's page reconnects (a blip, another tab taking over, the next long-poll): her
    // last session ends, a new one comes before the linger is over. Nothing is told.
    alice.close();
    hub.sweep();
    CHECK(users(hub.presence("projects.1")) == std::vector<std::string>{"alice", "bob"});
    auto again = mem.connect(user("alice"));
    REQUIRE_FALSE(again.subscribe("projects.1"));
    hub.sweep();
    CHECK(events(drain(watcher)).empty());

    // She goes for good: listed until the linger is over, then told gone once, by a sweep.
    again.close();
    hub.sweep();
    CHECK(events(drain(watcher)).empty());
    CHECK(users(hub.presence("projects.1")) == std::vector<std::string>{"alice", "bob"});
    std::this_thread::sleep_for(400ms);
    CHECK(events(drain(watcher)).empty());  // told by the sweep, not by time alone
    hub.sweep();
    hub.sweep();
    CHECK(events(drain(watcher)) == std::vector<std::string>{"leave alice"});
    CHECK(users(hub.presence("projects.1")) == std::vector<std::string>{"bob"});

    // The listener itself goes: the channel is forgotten once its linger is over.
    watcher.close();
    std::this_thread::sleep_for(400ms);
    hub.sweep();
    CHECK(hub.stats().presence_channels == 0);
}
