// Presence over Redis: servers share who is in a channel, each member once however many
// sessions and servers it is on; a server that stops renewing its entries (it died, or hangs)
// drops out within presence_options::ttl + sweep_interval.
#include "cluster_fixture.hpp"

#include <nlohmann/json.hpp>

#include <future>

using namespace cluster;

namespace {

struct everyone {
    std::optional<herald::principal> authenticate(const herald::request_info&) const { return herald::principal{}; }
    bool may(const herald::principal&, herald::action, std::string_view) const { return true; }
    bool may_presence(const herald::principal& p, std::string_view) const { return p.id != "eve"; }
};

herald::principal user(std::string id) {
    herald::principal p{id};
    p.presence_info = R"({"name":")" + id + R"("})";
    return p;
}

herald::hub_options quick() {
    herald::hub_options o;
    o.presence.ttl = 1500ms;
    o.presence.refresh_interval = 400ms;
    o.presence.sweep_interval = 200ms;
    o.presence.linger = 0ms;  // leaves told at once (the core tests cover the linger)
    return o;
}

std::vector<std::string> events(const follower& f, const std::string& channel) {
    std::vector<std::string> out;
    for (const auto& fr : f.frames) {
        if ((fr->type != herald::frame_type::join && fr->type != herald::frame_type::leave) || fr->channel != channel) continue;
        const auto j = nlohmann::json::parse(fr->text);
        out.push_back(j.at("type").get<std::string>() + " " + j.at("user").get<std::string>());
    }
    return out;
}

std::vector<std::string> users(herald::hub& h, const std::string& channel) {
    std::vector<std::string> out;
    for (const auto& m : h.presence(channel)) out.push_back(m.user);
    return out;
}

bool has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

// Servers a and b on one Redis, with quick presence timing, connected.
struct two_servers {
    redis_process redis;
    server a{redis.port(), quick()}, b{redis.port(), quick()};
    two_servers() {
        for (server* s : {&a, &b}) {
            REQUIRE(s->redis.wait_connected(5s));
            s->hub->set_authorizer(everyone{});
        }
    }
};

} // namespace

TEST_CASE("presence: two servers on one Redis list each user once and tell joins and leaves everywhere") {
    two_servers t;
    server &a = t.a, &b = t.b;
    follower bob(b.mem->connect(user("bob")));
    REQUIRE(bob.follow("doc.1"));
    REQUIRE(bob.until([&] { return has(events(bob, "doc.1"), "join bob") || users(*b.hub, "doc.1").size() == 1; }));

    // alice: two sessions on a, one on b: one member, one join.
    follower alice1(a.mem->connect(user("alice"))), alice2(a.mem->connect(user("alice"))), alice3(b.mem->connect(user("alice")));
    REQUIRE(alice1.follow("doc.1"));
    REQUIRE(alice2.follow("doc.1"));
    REQUIRE(alice3.follow("doc.1"));
    REQUIRE(bob.until([&] { return has(events(bob, "doc.1"), "join alice"); }));
    REQUIRE(alice1.until([&] { return users(*a.hub, "doc.1") == std::vector<std::string>{"alice", "bob"}; }));
    CHECK(users(*b.hub, "doc.1") == std::vector<std::string>{"alice", "bob"});
    const auto members = a.hub->presence("doc.1");
    REQUIRE(members.size() == 2);
    CHECK(members[0].info == R"({"name":"alice"})");
    // eve subscribes without presence: not listed, hears nothing, served all the same.
    follower eve(b.mem->connect(user("eve")));
    REQUIRE(eve.follow("doc.1"));
    a.hub->publish("doc.1", "1");
    REQUIRE(eve.until([&] { return eve.offsets("doc.1").size() == 1; }));
    CHECK(events(eve, "doc.1").empty());

    // alice's sessions on a go: she is still on b, nobody hears a leave.
    alice1.c.close();
    alice2.c.close();
    std::this_thread::sleep_for(300ms);
    bob.pump();
    const auto so_far = events(bob, "doc.1");
    CHECK(std::count(so_far.begin(), so_far.end(), "join alice") == 1);
    CHECK_FALSE(has(so_far, "leave alice"));
    CHECK(users(*a.hub, "doc.1") == std::vector<std::string>{"alice", "bob"});
    // Her last session goes: every server's listeners hear it, once.
    alice3.c.close();
    REQUIRE(bob.until([&] { return has(events(bob, "doc.1"), "leave alice"); }));
    CHECK(users(*a.hub, "doc.1") == std::vector<std::string>{"bob"});
    // Renewals announce nothing new.
    std::this_thread::sleep_for(1s);
    bob.pump();
    // (bob's own join may come before his server's SUBSCRIBE is confirmed: it is not counted)
    auto heard = events(bob, "doc.1");
    heard.erase(std::remove(heard.begin(), heard.end(), "join bob"), heard.end());
    CHECK(heard == std::vector<std::string>{"join alice", "leave alice"});
}

TEST_CASE("presence: a server that stops renewing drops out within ttl + sweep_interval, and the others hear its leave") {
    two_servers t;
    server &a = t.a, &b = t.b;
    follower bob(b.mem->connect(user("bob")));
    REQUIRE(bob.follow("doc.2"));
    follower alice(a.mem->connect(user("alice")));
    REQUIRE(alice.follow("doc.2"));
    REQUIRE(bob.until([&] { return has(events(bob, "doc.2"), "join alice"); }));

    // a's loop hangs (as a process killed or stopped: no goodbye, no renewal).
    std::promise<void> release;
    auto released = release.get_future().share();
    struct let_go {  // a failed REQUIRE must not leave a's loop hung (its destructor joins it)
        std::promise<void>& p;
        bool done = false;
        void operator()() { if (!std::exchange(done, true)) p.set_value(); }
        ~let_go() { (*this)(); }
    } unhang{release};
    asio::post(a.io, [released] { released.wait(); });
    const auto hung = clock::now();
    REQUIRE(bob.until([&] { return has(events(bob, "doc.2"), "leave alice"); }, 10s));
    const auto took = clock::now() - hung;
    std::printf("presence: a hung server's member dropped out after %lld ms (ttl 1500 + sweep 200)\n",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
    INFO("dropped out after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
    CHECK(took <= quick().presence.ttl + quick().presence.sweep_interval + 500ms);
    CHECK(users(*b.hub, "doc.2") == std::vector<std::string>{"bob"});
    // Back: its next renewal lists alice again, and bob hears her join.
    unhang();
    REQUIRE(bob.until([&] { return events(bob, "doc.2").back() == "join alice"; }, 5s));
    CHECK(users(*b.hub, "doc.2") == std::vector<std::string>{"alice", "bob"});
}
