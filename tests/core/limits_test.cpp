// Safe by default (issue 11): with no authorizer nothing is subscribed or published, and a
// client's memory is bounded — history by bytes per channel and per hub, replays and
// answers by the session's queue caps. Each finding is sent as the attacker sent it, with a
// bystander that must still be served.
#include <herald.hpp>
#include <herald/detail/history.hpp>
#include <herald/transport/inmemory.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

using herald::frame_type;

namespace {

struct log_lines {
    std::shared_ptr<std::mutex> mu = std::make_shared<std::mutex>();
    std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();
    herald::log_function function() const {
        return [mu = mu, lines = lines](herald::log_level, std::string_view text) {
            std::lock_guard<std::mutex> lock(*mu);
            lines->emplace_back(text);
        };
    }
    std::size_t count(std::string_view part) const {
        std::lock_guard<std::mutex> lock(*mu);
        std::size_t n = 0;
        for (const auto& l : *lines) n += l.find(part) != std::string::npos;
        return n;
    }
};

std::size_t messages_of(const std::vector<herald::frame_ptr>& frames, const std::string& channel) {
    std::size_t n = 0;
    for (const auto& f : frames) n += f->type == frame_type::message && f->channel == channel;
    return n;
}

// A JSON string of about `bytes` bytes.
std::string payload(std::size_t bytes) { return "\"" + std::string(bytes - 2, 'x') + "\""; }

} // namespace

TEST_CASE("safe defaults: with no authorizer a client connects but subscribes and publishes nothing, said once") {
    log_lines logs;
    herald::hub_options opts;
    opts.log = logs.function();
    herald::hub hub(opts);
    herald::transport::inmemory mem(hub);
    auto page = mem.connect();  // anonymous
    CHECK_FALSE(page.close_reason());
    CHECK(page.subscribe("clock") == herald::error::forbidden);
    CHECK(page.subscribe("user.bob.notifications") == herald::error::forbidden);
    std::error_code ec;
    page.publish("user.bob.notifications", R"({"text":"pay here"})", ec);
    CHECK(ec == herald::error::forbidden);
    page.publish("clock", R"({"time":"never"})", ec);
    CHECK(ec == herald::error::forbidden);
    CHECK(hub.stats().published == 0);
    CHECK(logs.count("no authorizer: every subscribe and publish is refused; see README") == 1);
    // The server itself still publishes.
    CHECK(hub.publish("clock", R"({"time":"12:00"})").offset == 1);
}

TEST_CASE("safe defaults: insecure_allow_all says so when installed") {
    log_lines logs;
    herald::hub_options opts;
    opts.log = logs.function();
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});
    CHECK(logs.count("insecure_allow_all: any client may subscribe and publish to any channel") == 1);
    hub.report_authorizer();
    CHECK(logs.count("no authorizer") == 0);
}

TEST_CASE("safe defaults: the in-memory example's rules refuse a client publish into another user's channel, bob is served") {
    herald::hub hub;
    herald::rule_authorizer auth;  // as examples/inmemory: follow project items, publish nothing
    auth.allow(herald::action::subscribe, "project.*.items").allow(herald::action::subscribe, "user.{principal}.**");
    hub.set_authorizer(auth);
    herald::transport::inmemory mem(hub);
    auto bob = mem.connect({"bob"});
    REQUIRE_FALSE(bob.subscribe("user.bob.notifications"));
    auto anonymous = mem.connect();
    std::error_code ec;
    anonymous.publish("user.bob.notifications", R"({"text":"forged"})", ec);
    CHECK(ec == herald::error::forbidden);
    anonymous.publish("project.42.items", R"({"item":"forged"})", ec);
    CHECK(ec == herald::error::forbidden);
    CHECK(anonymous.subscribe("user.bob.notifications") == herald::error::forbidden);
    hub.publish("user.bob.notifications", R"({"text":"real"})");
    auto got = bob.receive();
    REQUIRE(messages_of(got, "user.bob.notifications") == 1);
    CHECK(got.back()->data() == R"({"text":"real"})");
}

TEST_CASE("history: bounded in bytes per channel") {
    const herald::history_options opts{100, std::chrono::minutes(1), 1000};
    herald::detail::history h(opts);
    const auto t0 = std::chrono::steady_clock::now();
    auto msg = [](std::uint64_t off) { return herald::protocol::make_message("c", {"e", off}, payload(200)); };
    for (std::uint64_t i = 1; i <= 20; ++i) h.append(msg(i), t0);
    CHECK(h.bytes() <= 1000);
    CHECK(h.size() >= 3);
    std::vector<herald::frame_ptr> out;
    CHECK_FALSE(h.since(0, 20, out, t0));  // the oldest went
    CHECK(h.since(20 - h.size(), 20, out, t0));
}

TEST_CASE("history: 4 channels x 1000 x 60 kB stay under the per-channel and hub bounds, a live bystander gets all") {
    herald::hub_options opts;
    opts.max_history_bytes = 3 * 1024 * 1024;  // less than 4 channels' worth: the hub bound bites too
    herald::hub hub(opts);
    herald::rule_authorizer auth;
    auth.allow(herald::action::subscribe, "c.*");
    hub.set_authorizer(auth);
    herald::transport::inmemory mem(hub);
    auto bystander = mem.connect();
    REQUIRE_FALSE(bystander.subscribe("c.0"));
    const std::string big = payload(60 * 1000);
    std::size_t received = 0, most = 0;
    for (int i = 0; i < 1000; ++i) {
        for (int c = 0; c < 4; ++c) hub.publish("c." + std::to_string(c), big);
        most = std::max<std::size_t>(most, hub.stats().history_bytes);
        received += messages_of(bystander.receive(), "c.0");
    }
    CHECK(received == 1000);
    CHECK_FALSE(bystander.close_reason());
    CHECK(most <= opts.max_history_bytes);
    CHECK(hub.stats().history_bytes > 0);

    // Each channel alone: under history_options::max_bytes (default 1 MiB).
    herald::hub one;
    for (int i = 0; i < 100; ++i) one.publish("c", big);
    CHECK(one.stats().history_bytes <= herald::history_options{}.max_bytes);
    CHECK(one.stats().history_bytes > herald::history_options{}.max_bytes - 2 * big.size());
}

TEST_CASE("history: a channel that would pass the hub's total drops its own oldest, resume past it gets recovered false") {
    herald::hub_options opts;
    opts.max_history_bytes = 64 * 1024;
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});
    herald::transport::inmemory mem(hub);
    const std::string p = payload(10 * 1000);
    const herald::position a1 = hub.publish("a", p);
    for (int i = 0; i < 4; ++i) hub.publish("a", p);  // ~50 kB in a
    for (int i = 0; i < 4; ++i) hub.publish("b", p);  // b drops its own: a keeps all of its
    CHECK(hub.stats().history_bytes <= opts.max_history_bytes);
    auto c = mem.connect();
    REQUIRE_FALSE(c.subscribe("a", {a1.epoch, 0}));
    auto got = c.receive();
    REQUIRE(!got.empty());
    CHECK(got.front()->recovered);
    CHECK(messages_of(got, "a") == 5);
    auto d = mem.connect();
    const herald::position b_head = hub.head("b");
    REQUIRE_FALSE(d.subscribe("b", {b_head.epoch, 0}));
    got = d.receive();
    REQUIRE(!got.empty());
    CHECK_FALSE(got.front()->recovered);  // b's first messages were not kept
}

TEST_CASE("replays count: one full history always fits a fresh session (defaults)") {
    herald::hub hub;
    hub.set_authorizer(herald::insecure_allow_all{});
    herald::transport::inmemory mem(hub);
    const std::string big = payload(60 * 1000);
    const herald::position first = hub.publish("c", big);
    for (int i = 0; i < 200; ++i) hub.publish("c", big);  // history full at max_bytes
    auto c = mem.connect();
    REQUIRE_FALSE(c.subscribe("c", {first.epoch, 0}));
    CHECK_FALSE(c.close_reason());
    auto got = c.receive();
    REQUIRE(!got.empty());
    CHECK_FALSE(got.front()->recovered);  // the oldest are gone...
    // ...what it holds (~17 frames of 60 kB, under 1 MiB) replays whole, and fits in 4 MiB.
    herald::position oldest_kept{first.epoch, hub.head("c").offset - 16};
    auto e = mem.connect();
    REQUIRE_FALSE(e.subscribe("c", oldest_kept));
    CHECK_FALSE(e.close_reason());
    got = e.receive();
    REQUIRE(!got.empty());
    CHECK(got.front()->recovered);
    CHECK(messages_of(got, "c") == 16);
}

TEST_CASE("replays count: 3000 subscribe since 0 never read close the session as slow_consumer, a bystander is served") {
    herald::hub hub;
    herald::rule_authorizer auth;
    auth.allow(herald::action::subscribe, "**");
    hub.set_authorizer(auth);
    herald::transport::inmemory mem(hub);
    const std::string p = payload(2000);
    herald::position first;
    for (int i = 0; i < 400; ++i) {
        const auto pos = hub.publish("c", p);
        if (i == 0) first = pos;
    }
    auto bystander = mem.connect();
    REQUIRE_FALSE(bystander.subscribe("c"));
    auto attacker = mem.connect();
    const herald::session_ptr s = attacker.session();
    const herald::session_options caps;
    std::size_t accepted = 0, most = 0;
    for (int i = 0; i < 3000; ++i) {
        if (!attacker.subscribe("c", {first.epoch, 0})) ++accepted;
        most = std::max(most, s->queued_bytes());
        CHECK(s->queued_messages() <= caps.max_queued_messages);
    }
    // ~830 kB per replay: 5 fit in 4 MiB, the next get recovered:false (small), then the
    // queue is full and the session closes; the rest get session_closed.
    CHECK(most <= caps.max_queued_bytes);
    CHECK(attacker.close_reason() == herald::error::slow_consumer);
    CHECK(accepted < 3000);
    CHECK(s->queued_bytes() == 0);  // dropped when it closed: nothing held for it
    CHECK(hub.stats().slow_consumers == 1);
    hub.publish("c", p);
    auto got = bystander.receive();
    CHECK(messages_of(got, "c") == 1);
    CHECK_FALSE(bystander.close_reason());
}

TEST_CASE("replays count: a replay that does not fit the queue answers recovered false, never a partial replay") {
    herald::hub_options opts;
    opts.session.max_queued_bytes = 64 * 1024;
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});
    herald::transport::inmemory mem(hub);
    const herald::position first = hub.publish("c", payload(10 * 1000));
    for (int i = 0; i < 9; ++i) hub.publish("c", payload(10 * 1000));  // 100 kB of history
    auto c = mem.connect();
    REQUIRE_FALSE(c.subscribe("c", {first.epoch, 0}));
    auto got = c.receive();
    REQUIRE(got.size() == 1);
    CHECK(got.front()->type == frame_type::subscribed);
    CHECK_FALSE(got.front()->recovered);
    CHECK(got.front()->pos.offset == 10);
    hub.publish("c", "1");
    got = c.receive();
    REQUIRE(messages_of(got, "c") == 1);
    CHECK(got.front()->pos.offset == 11);
}

TEST_CASE("answers count: requests never read close the session too") {
    herald::hub_options opts;
    opts.session.max_queued_messages = 100;
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});
    herald::transport::inmemory mem(hub);
    auto c = mem.connect();
    for (int i = 0; i < 300; ++i) (void)c.subscribe("c" + std::to_string(i % 50));
    CHECK(c.close_reason() == herald::error::slow_consumer);
}

// ---- credentials that expire (issue 11, 6) ---------------------------------------------------

namespace {

// A CMS's token service, as an authenticate hook sees it: token -> principal with its expiry.
struct token_authorizer {
    using clock = herald::principal::clock;
    std::shared_ptr<std::map<std::string, herald::principal>> tokens = std::make_shared<std::map<std::string, herald::principal>>();

    std::optional<herald::principal> authenticate(const herald::request_info& r) const {
        auto it = tokens->find(r.credentials);
        if (it == tokens->end()) return std::nullopt;
        return it->second;
    }
    bool may(const herald::principal& p, herald::action, std::string_view channel) const {
        return !p.anonymous() && channel.substr(0, 7) == "public.";
    }
};

std::vector<frame_type> types_of(const std::vector<herald::frame_ptr>& frames) {
    std::vector<frame_type> out;
    for (const auto& f : frames) out.push_back(f->type);
    return out;
}

} // namespace

TEST_CASE("credentials that expire: asked to refresh once, renewed in-band, ended at the expiry, a bystander is served") {
    using clock = herald::principal::clock;
    using namespace std::chrono_literals;
    herald::hub_options opts;
    opts.session.refresh_before = 30s;
    herald::hub hub(opts);
    token_authorizer auth;
    hub.set_authorizer(auth);
    herald::transport::inmemory mem(hub);

    const auto t0 = clock::now();
    auto editor = mem.connect(herald::principal{"alice", t0 + 100s});
    auto bystander = mem.connect(herald::principal{"bob"});  // no expiry
    REQUIRE_FALSE(editor.subscribe("public.items"));
    REQUIRE_FALSE(bystander.subscribe("public.items"));
    editor.receive();
    bystander.receive();

    // Before the refresh point (100 s - 30 s): nothing. At it: one `refresh`, with the time left.
    CHECK(editor.check_credentials(t0 + 60s));
    CHECK(editor.receive().empty());
    CHECK(editor.check_credentials(t0 + 71s));
    auto frames = editor.receive();
    REQUIRE(types_of(frames) == std::vector<frame_type>{frame_type::refresh});
    CHECK(frames[0]->retry_after <= 29s);
    CHECK(frames[0]->text.find(R"("type":"refresh","expires_in":)") != std::string::npos);
    CHECK(editor.check_credentials(t0 + 72s));
    CHECK(editor.receive().empty());  // asked once

    // Refused: an unknown token, another principal's, an expired one. Nothing changes.
    (*auth.tokens)["bobs"] = herald::principal{"bob", clock::now() + 1h};
    (*auth.tokens)["stale"] = herald::principal{"alice", clock::now() - 1s};
    CHECK(editor.refresh("forged") == herald::error::unauthenticated);
    CHECK(editor.refresh("bobs") == herald::error::unauthenticated);
    CHECK(editor.refresh("stale") == herald::error::credentials_expired);
    // Over the wire the refusal is an error frame naming the request.
    CHECK(editor.apply(R"({"type":"refresh","token":"forged","id":9})") == herald::error::unauthenticated);
    frames = editor.receive();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0]->code == herald::error::unauthenticated);
    CHECK(frames[0]->request_id == 9);
    CHECK(editor.apply(R"({"type":"refresh","id":10})") == herald::error::malformed_frame);  // no token
    editor.receive();

    // Renewed: `refreshed` with the new expiry; the session outlives the old one.
    (*auth.tokens)["fresh"] = herald::principal{"alice", clock::now() + 200s};
    CHECK_FALSE(editor.apply(R"({"type":"refresh","token":"fresh","id":11})"));
    frames = editor.receive();
    REQUIRE(types_of(frames) == std::vector<frame_type>{frame_type::refreshed});
    CHECK(frames[0]->request_id == 11);
    CHECK(frames[0]->retry_after > 190s);
    CHECK(editor.check_credentials(t0 + 150s));
    hub.publish("public.items", R"({"n":1})");
    CHECK(messages_of(editor.receive(), "public.items") == 1);

    // Not renewed again: at the new expiry the session ends with its own error, and receives
    // nothing more. The bystander is still served.
    CHECK_FALSE(editor.check_credentials(clock::now() + 201s));
    frames = editor.receive();
    REQUIRE_FALSE(frames.empty());
    CHECK(frames.back()->code == herald::error::credentials_expired);
    CHECK(editor.closed());
    CHECK(editor.close_reason() == herald::error::credentials_expired);
    hub.publish("public.items", R"({"n":2})");
    CHECK(editor.receive().empty());
    CHECK(messages_of(bystander.receive(), "public.items") == 2);
}

TEST_CASE("credentials that expire: short-lived ones are asked for halfway, none: never asked, never ended") {
    using clock = herald::principal::clock;
    using namespace std::chrono_literals;
    herald::hub hub;  // refresh_before: 60 s
    hub.set_authorizer(token_authorizer{});
    herald::transport::inmemory mem(hub);
    const auto t0 = clock::now();
    auto short_lived = mem.connect(herald::principal{"alice", t0 + 10s});
    CHECK(short_lived.check_credentials(t0 + 4s));
    CHECK(short_lived.receive().empty());
    CHECK(short_lived.check_credentials(t0 + 5s + 10ms));
    CHECK(types_of(short_lived.receive()) == std::vector<frame_type>{frame_type::refresh});

    auto forever = mem.connect(herald::principal{"bob"});
    CHECK(forever.check_credentials(t0 + 24h * 365));
    CHECK(forever.receive().empty());
    CHECK_FALSE(forever.closed());
}

TEST_CASE("subscriptions per principal: capped over all of its sessions, given back on unsubscribe and close, anonymous and others unaffected") {
    herald::hub_options opts;
    opts.max_subscriptions_per_principal = 5;
    herald::hub hub(opts);
    herald::rule_authorizer auth;
    auth.allow(herald::action::subscribe, "public.**");
    hub.set_authorizer(auth);
    herald::transport::inmemory mem(hub);

    auto tab1 = mem.connect(herald::principal{"mallory"});
    auto tab2 = mem.connect(herald::principal{"mallory"});
    for (int i = 0; i < 3; ++i) REQUIRE_FALSE(tab1.subscribe("public.c" + std::to_string(i)));
    CHECK_FALSE(tab1.subscribe("public.c0"));  // a resubscribe takes no second place
    for (int i = 3; i < 5; ++i) REQUIRE_FALSE(tab2.subscribe("public.c" + std::to_string(i)));
    CHECK(tab2.subscribe("public.c5") == herald::error::too_many_subscriptions);
    auto tab3 = mem.connect(herald::principal{"mallory"});
    CHECK(tab3.subscribe("public.c6") == herald::error::too_many_subscriptions);
    // Over the wire: the error frame naming the channel and the request.
    CHECK(tab3.apply(R"({"type":"subscribe","channel":"public.c6","id":7})") == herald::error::too_many_subscriptions);
    auto frames = tab3.receive();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0]->code == herald::error::too_many_subscriptions);
    CHECK(frames[0]->request_id == 7);

    // Places come back: an unsubscribe, a closed session.
    REQUIRE_FALSE(tab1.unsubscribe("public.c0"));
    CHECK_FALSE(tab3.subscribe("public.c6"));
    CHECK(tab3.subscribe("public.c7") == herald::error::too_many_subscriptions);
    tab2.close();
    CHECK_FALSE(tab3.subscribe("public.c7"));
    CHECK_FALSE(tab3.subscribe("public.c8"));

    // Another principal, and anonymous clients, are not counted against mallory.
    auto bystander = mem.connect(herald::principal{"bob"});
    auto anon1 = mem.connect(), anon2 = mem.connect();
    for (int i = 0; i < 5; ++i) CHECK_FALSE(bystander.subscribe("public.b" + std::to_string(i)));
    for (int i = 0; i < 6; ++i) {  // past the cap: anonymous clients are not counted together
        CHECK_FALSE(anon1.subscribe("public.b" + std::to_string(i)));
        CHECK_FALSE(anon2.subscribe("public.b" + std::to_string(i)));
    }
    bystander.receive();
    hub.publish("public.b4", R"({"n":1})");
    CHECK(messages_of(bystander.receive(), "public.b4") == 1);
}
