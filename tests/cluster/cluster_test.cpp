// Several servers on one real Redis: the delivery contract across servers, and Redis faults.
#include "cluster_fixture.hpp"

#include <atomic>
#include <set>

using namespace cluster;
using herald::frame_type;
using herald::position;


TEST_CASE("fan-out: a publish on one server reaches subscribers on every server, in one order") {
    redis_process redis;
    server a(redis.port()), b(redis.port()), c(redis.port());
    for (server* s : {&a, &b, &c}) REQUIRE(s->redis.wait_connected(5s));

    follower on_a(a.connect()), on_b(b.connect()), on_c(c.connect());
    const herald::frame* first = on_b.follow("news");
    REQUIRE(first);
    CHECK(first->recovered);
    CHECK(first->pos.offset == 0);  // a channel never published to: its epoch is created in Redis
    REQUIRE(on_a.follow("news"));
    REQUIRE(on_c.follow("news"));
    CHECK(on_a.subscribed("news")->pos.epoch == first->pos.epoch);  // every server names the stream alike
    CHECK(on_c.subscribed("news")->pos.epoch == first->pos.epoch);

    std::vector<std::string> sent;
    for (int i = 0; i < 100; ++i) {
        sent.push_back(payload(1, i));
        const position p = a.hub->publish("news", sent.back());
        CHECK(p.offset == std::uint64_t(i) + 1);
        CHECK(p.epoch == first->pos.epoch);
    }
    for (follower* f : {&on_a, &on_b, &on_c}) {
        REQUIRE(f->until([&] { return f->offsets("news").size() >= 100; }));
        CHECK(f->offsets("news") == range(1, 100));
        CHECK(f->data("news") == sent);
        CHECK(f->c.duplicates_dropped() == 0);
    }
    // A server follows in Redis only the channels its sessions follow.
    CHECK(a.redis.stats().followed == 1);
    CHECK(a.redis.stats().published == 100);
    CHECK(b.redis.stats().received == 100);
    CHECK(b.hub->stats().published == 100);  // delivered to this hub's subscribers
}

TEST_CASE("order: concurrent publishers on two servers, every subscriber everywhere sees one order, exactly once") {
    redis_process redis;
    server a(redis.port()), b(redis.port()), c(redis.port());
    for (server* s : {&a, &b, &c}) REQUIRE(s->redis.wait_connected(5s));
    std::vector<std::unique_ptr<follower>> subs;
    for (server* s : {&a, &b, &c})
        for (int i = 0; i < 3; ++i) {
            subs.push_back(std::make_unique<follower>(s->connect()));
            REQUIRE(subs.back()->follow("board"));
        }

    const int per_thread = 400 / scale();
    std::vector<std::thread> publishers;
    std::atomic<int> failures{0};
    int id = 0;
    for (server* s : {&a, &b})
        for (int t = 0; t < 2; ++t, ++id)
            publishers.emplace_back([&, s, id] {
                for (int n = 0; n < per_thread; ++n) {
                    std::error_code ec;
                    s->hub->publish("board", payload(id, n), ec);
                    if (ec) ++failures;
                }
            });
    for (auto& t : publishers) t.join();
    CHECK(failures == 0);
    const std::uint64_t total = std::uint64_t(per_thread) * 4;

    const std::vector<std::string> reference = [&] {
        REQUIRE(subs[0]->until([&] { return subs[0]->offsets("board").size() >= total; }));
        return subs[0]->data("board");
    }();
    for (auto& f : subs) {
        REQUIRE(f->until([&] { return f->offsets("board").size() >= total; }));
        CHECK(f->offsets("board") == range(1, total));
        CHECK(f->data("board") == reference);  // the same order everywhere
        CHECK(f->c.duplicates_dropped() == 0);
    }
    // Exactly once: every publisher's messages, each once, in the order that publisher sent them.
    std::map<std::string, int> count;
    std::vector<int> next(4, 0);
    bool fifo = true;
    for (const std::string& d : reference) {
        ++count[d];
        const int p = d[5] - '0', n = std::stoi(d.substr(d.find("\"n\":") + 4));
        if (n != next[static_cast<std::size_t>(p)]++) fifo = false;
    }
    CHECK(count.size() == total);
    CHECK(fifo);
}

TEST_CASE("resume: a client that followed on one server resumes on another with its cursor, no gap, no duplicate") {
    redis_process redis;
    server a(redis.port()), b(redis.port());
    REQUIRE(a.redis.wait_connected(5s));
    REQUIRE(b.redis.wait_connected(5s));

    follower editor(a.connect());
    REQUIRE(editor.follow("project.7.items"));
    for (int i = 0; i < 20; ++i) a.hub->publish("project.7.items", payload(0, i));
    REQUIRE(editor.until([&] { return editor.offsets("project.7.items").size() == 20; }));
    const position cursor = *editor.c.cursor("project.7.items");
    CHECK(cursor.offset == 20);

    SECTION("while the channel is quiet") {
        editor.c.close();  // the laptop sleeps; the load balancer sends it to B next
        for (int i = 20; i < 50; ++i) a.hub->publish("project.7.items", payload(0, i));
        follower again(b.connect());
        const herald::frame* sub = again.follow("project.7.items", cursor);
        REQUIRE(sub);
        CHECK(sub->recovered);
        CHECK(sub->pos.offset == 50);
        for (int i = 50; i < 60; ++i) a.hub->publish("project.7.items", payload(0, i));
        REQUIRE(again.until([&] { return again.offsets("project.7.items").size() >= 40; }));
        CHECK(again.offsets("project.7.items") == range(21, 60));
        CHECK(again.c.duplicates_dropped() == 0);
    }
    SECTION("while publishes keep coming (the replay and the live stream meet exactly)") {
        editor.c.close();
        steady_publisher load(*a.hub, "project.7.items", 200us);
        REQUIRE(eventually([&] { return load.ok_count() > 200; }));
        follower again(b.connect());
        REQUIRE(again.follow("project.7.items", cursor));
        CHECK(again.subscribed("project.7.items")->recovered);
        std::this_thread::sleep_for(100ms);
        load.finish();
        REQUIRE(eventually([&] { return load.answered == load.attempts; }));
        CHECK(load.errors == 0);
        const std::uint64_t head = 20 + load.ok;
        REQUIRE(again.until([&] { return !again.offsets("project.7.items").empty() &&
                                         again.offsets("project.7.items").back() == head; }));
        CHECK(again.offsets("project.7.items") == range(21, head));
        CHECK(again.c.duplicates_dropped() == 0);
    }
}

TEST_CASE("history: the history in Redis is bounded by count and by age, past it resume says recovered false") {
    redis_process redis;
    herald::hub_options opts;
    opts.history.max_messages = 10;
    opts.history.max_age = 300ms;
    server a(redis.port(), opts), b(redis.port(), opts);
    REQUIRE(a.redis.wait_connected(5s));
    REQUIRE(b.redis.wait_connected(5s));

    const position p1 = a.hub->publish("c", "1");
    for (int i = 0; i < 29; ++i) a.hub->publish("c", "2");  // head 30

    SECTION("by count") {
        follower late(b.connect());
        const herald::frame* sub = late.follow("c", p1);  // missed 2..30: only 21..30 are kept
        REQUIRE(sub);
        CHECK_FALSE(sub->recovered);
        CHECK(sub->pos.offset == 30);
        CHECK(late.offsets("c").empty());  // a partial replay would be a silent gap
        a.hub->publish("c", "3");
        REQUIRE(late.until([&] { return !late.offsets("c").empty(); }));
        CHECK(late.offsets("c") == std::vector<std::uint64_t>{31});

        follower edge(b.connect());  // exactly what the history holds is recovered
        const herald::frame* ok = edge.follow("c", position{p1.epoch, 21});
        REQUIRE(ok);
        CHECK(ok->recovered);
        REQUIRE(edge.until([&] { return edge.offsets("c").size() >= 10; }));
        CHECK(edge.offsets("c") == range(22, 31));
        // Redis trims the stream itself (approximately, by whole nodes) as publishes go on.
        for (int i = 0; i < 500; ++i) a.hub->publish("c", "4");
        CHECK(std::stoi(redis.command({"XLEN", "herald:{c}:log"})) < 500);
    }
    SECTION("by age") {
        std::this_thread::sleep_for(500ms);
        follower late(b.connect());
        const herald::frame* sub = late.follow("c", position{p1.epoch, 29});
        REQUIRE(sub);
        CHECK_FALSE(sub->recovered);
        CHECK(late.offsets("c").empty());
        // The epoch survives the aged-out history: a cursor at the head is still current.
        follower current(b.connect());
        REQUIRE(current.follow("c", position{p1.epoch, 30}));
        CHECK(current.subscribed("c")->recovered);
    }
}

TEST_CASE("faults: Redis down at start, publishes fail at once with backplane_unavailable, then Redis comes up") {
    redis_process redis(/*start_now=*/false);
    server a(redis.port());
    REQUIRE(eventually([&] { return a.redis.state() == herald::backplane::redis_state::reconnecting; }, 5s));

    std::error_code ec;
    const auto t0 = clock::now();
    a.hub->publish("c", "1", ec);
    CHECK(ec == herald::error::backplane_unavailable);
    CHECK(clock::now() - t0 < 100ms);  // at once, not after a timeout
    CHECK(a.hub->stats().publish_errors == 1);
    CHECK(a.logs.contains("cannot reach"));

    follower client(a.connect());
    CHECK_FALSE(client.c.subscribe("c"));  // accepted, answered asynchronously ...
    REQUIRE(client.until([&] { return !client.of(frame_type::error, "c").empty(); }));
    CHECK(client.of(frame_type::error, "c").front()->code == herald::error::backplane_unavailable);
    CHECK(client.c.session()->channels().empty());  // ... with an error: the client retries
    CHECK_FALSE(client.c.closed());                   // the session stays

    redis.start();
    REQUIRE(a.redis.wait_connected(10s));
    REQUIRE(client.follow("c"));
    const position p = a.hub->publish("c", "2", ec);
    CHECK_FALSE(ec);
    CHECK(p.offset == 1);
    REQUIRE(client.until([&] { return !client.offsets("c").empty(); }));
    CHECK(client.offsets("c") == std::vector<std::uint64_t>{1});
    CHECK(a.redis.stats().connects == 1);
}

TEST_CASE("faults: Redis connections dropped under load, history kept: subscribers lose nothing") {
    redis_process redis;
    server a(redis.port()), b(redis.port());
    REQUIRE(a.redis.wait_connected(5s));
    REQUIRE(b.redis.wait_connected(5s));
    follower on_a(a.connect()), on_b(b.connect());
    REQUIRE(on_a.follow("load"));
    REQUIRE(on_b.follow("load"));

    steady_publisher load(*a.hub, "load", 300us);
    REQUIRE(eventually([&] { return load.ok_count() > 300; }));
    // Every client connection of Redis, both servers' pub/sub and command links, goes.
    redis.command({"CLIENT", "KILL", "TYPE", "pubsub"});
    redis.command({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
    REQUIRE(eventually([&] { return a.redis.stats().disconnects >= 1 && b.redis.stats().disconnects >= 1; }));
    REQUIRE(a.redis.wait_connected(5s));
    REQUIRE(b.redis.wait_connected(5s));
    const std::uint64_t ok_before = load.ok_count();
    REQUIRE(eventually([&] { return load.ok_count() > ok_before + 300; }));
    load.finish();
    REQUIRE(eventually([&] { return load.answered == load.attempts; }));

    std::uint64_t head = 0;
    for (auto& p : load.positions) head = std::max(head, p.offset);
    // Refused publishes took no offset; one sent but unanswered when the link dropped
    // (timed_out) may have been ordered all the same.
    CHECK(head >= load.ok);
    CHECK(head <= load.ok + load.error_codes[int(herald::error::timed_out)]);
    for (follower* f : {&on_a, &on_b}) {
        REQUIRE(f->until([&] { return !f->offsets("load").empty() && f->offsets("load").back() == head; }));
        CHECK(f->offsets("load") == range(1, head));  // the gap left by the drop was re-fetched
        CHECK(f->of(frame_type::subscribed, "load").size() == 1);  // no recovered:false
        CHECK(f->c.duplicates_dropped() == 0);
    }
    CHECK(b.hub->stats().refetches >= 1);
    INFO("publishes answered with an error while the links were down: " << load.errors);
    CHECK(a.redis.stats().connects >= 2);
}

TEST_CASE("faults: Redis killed and restarted empty under load: errors not silence, a new epoch, recovered false") {
    redis_process redis;
    server a(redis.port()), b(redis.port());
    REQUIRE(a.redis.wait_connected(5s));
    REQUIRE(b.redis.wait_connected(5s));
    follower on_a(a.connect()), on_b(b.connect());
    const herald::frame* first = on_b.follow("live");
    REQUIRE(first);
    REQUIRE(on_a.follow("live"));
    const std::string epoch1 = first->pos.epoch;

    steady_publisher load(*a.hub, "live", 300us);
    REQUIRE(eventually([&] { return load.ok_count() > 300; }));
    redis.kill();
    REQUIRE(eventually([&] { return a.redis.state() == herald::backplane::redis_state::reconnecting; }, 5s));
    const std::uint64_t errors_before = load.errors;
    REQUIRE(eventually([&] { return load.errors > errors_before + 20; }));  // errors while down, not silence
    redis.start();  // empty: no persistence
    REQUIRE(a.redis.wait_connected(10s));
    REQUIRE(b.redis.wait_connected(10s));
    const std::uint64_t ok_after = load.ok_count();
    REQUIRE(eventually([&] { return load.ok_count() > ok_after + 300; }));
    load.finish();
    REQUIRE(eventually([&] { return load.answered == load.attempts; }));  // every publish answered
    CHECK(load.errors > 0);
    // Refused while down (not sent), or timed out (sent, unanswered: outcome unknown).
    for (auto [code, count] : load.error_codes)
        CHECK((code == int(herald::error::backplane_unavailable) || code == int(herald::error::timed_out)));

    position last;
    for (auto& p : load.positions)
        if (p.epoch != epoch1 && p.offset > last.offset) last = p;
    REQUIRE(!last.epoch.empty());
    for (follower* f : {&on_a, &on_b}) {
        REQUIRE(f->until([&] { auto o = f->of(frame_type::message, "live");
                               return !o.empty() && o.back()->pos == last; }));
        // Before the crash: the first stream, contiguous. Then `subscribed` with recovered
        // false in the new epoch, then that stream, contiguous from there: no silent gap.
        const auto subs = f->of(frame_type::subscribed, "live");
        REQUIRE(subs.size() == 2);
        CHECK_FALSE(subs[1]->recovered);
        CHECK(subs[1]->pos.epoch == last.epoch);
        std::vector<std::uint64_t> before, after;
        bool reset = false;
        for (auto& fr : f->frames) {
            if (fr.get() == subs[1]) reset = true;
            if (fr->type != frame_type::message) continue;
            CHECK(fr->pos.epoch == (reset ? last.epoch : epoch1));
            (reset ? after : before).push_back(fr->pos.offset);
        }
        REQUIRE_FALSE(before.empty());
        CHECK(before == range(1, before.back()));
        CHECK(after == range(subs[1]->pos.offset + 1, last.offset));
    }
    CHECK(a.logs.contains("lost"));
    CHECK(b.logs.contains("lost history"));
    CHECK(b.redis.stats().disconnects == 1);

    // A client of the old stream that comes back is told to resync, on any server.
    follower old(b.connect());
    const herald::frame* sub = old.follow("live", position{epoch1, 5});
    REQUIRE(sub);
    CHECK_FALSE(sub->recovered);
    CHECK(sub->pos.epoch == last.epoch);
}

TEST_CASE("faults: a Redis that hangs: a pending publish gets timed_out after command_timeout, then recovery") {
    redis_process redis;
    herald::backplane::redis::options ro;
    ro.command_timeout = 300ms;
    server a(redis.port(), {}, ro);
    REQUIRE(a.redis.wait_connected(5s));
    a.hub->publish("c", "1");

    redis.pause();
    std::atomic<int> answers{0};
    std::error_code got;
    std::mutex mu;
    const auto t0 = clock::now();
    a.hub->async_publish("c", "2", [&](std::error_code ec, position) {
        std::lock_guard<std::mutex> lock(mu);
        got = ec;
        ++answers;
    });
    REQUIRE(eventually([&] { return answers == 1; }, 5s));
    const auto waited = clock::now() - t0;
    CHECK(got == herald::error::timed_out);
    CHECK(waited >= 250ms);
    CHECK(waited < 2s);
    CHECK(a.redis.stats().timeouts == 1);
    std::error_code ec;
    a.hub->publish("c", "3", ec);  // while the link is down: refused at once, never sent
    CHECK(ec == herald::error::backplane_unavailable);

    redis.resume();
    REQUIRE(a.redis.wait_connected(5s));
    // "2" was in Redis's socket buffer: Redis ordered it after all. timed_out says just
    // that: the outcome is unknown, a retry may duplicate it.
    CHECK(a.hub->publish("c", "4").offset == 3);
}

TEST_CASE("follow: subscribers come and go on other servers while publishing, each stream contiguous") {
    redis_process redis;
    server a(redis.port()), b(redis.port());
    REQUIRE(a.redis.wait_connected(5s));
    REQUIRE(b.redis.wait_connected(5s));
    steady_publisher load(*a.hub, "churn", 200us);
    int clients = 0, checked = 0;
    bool contiguous = true;
    for (auto deadline = clock::now() + std::max(500ms, 2000ms / scale()); clock::now() < deadline; ++clients) {
        follower f(b.connect());
        const herald::frame* sub = f.follow("churn");
        if (!sub) { contiguous = false; break; }
        const std::uint64_t start = sub->pos.offset;
        f.until([&] { return f.offsets("churn").size() >= 5; }, 2s);
        const auto o = f.offsets("churn");
        if (!o.empty()) ++checked;
        if (o != range(start + 1, start + o.size())) contiguous = false;
        if (clients % 2) f.c.unsubscribe("churn");  // else the session just closes
    }
    load.finish();
    CHECK(contiguous);
    CHECK(checked > 5);
    INFO("clients: " << clients);
    // Nobody follows the channel on B any more: B unsubscribes in Redis at the next message
    // (well before the periodic prune, every 5 s by default).
    a.hub->publish("churn", "1");
    CHECK(eventually([&] { return b.redis.stats().followed == 0; }, 1s));
}

TEST_CASE("follow: a server stops following in Redis the quiet channels its sessions left") {
    redis_process redis;
    herald::backplane::redis::options ro;
    ro.prune_interval = 100ms;
    server a(redis.port(), {}, ro);
    REQUIRE(a.redis.wait_connected(5s));
    // The pub/sub channels Redis has subscribers for (across all servers: here, only `a`).
    auto in_redis = [&] { return redis.command({"PUBSUB", "CHANNELS", "herald:*"}); };
    follower one(a.connect()), two(a.connect());
    REQUIRE(one.follow("quiet.1"));
    REQUIRE(one.follow("quiet.2"));
    REQUIRE(two.follow("quiet.2"));
    CHECK(a.redis.stats().followed == 2);
    CHECK((in_redis() == "herald:quiet.1\nherald:quiet.2" || in_redis() == "herald:quiet.2\nherald:quiet.1"));

    one.c.unsubscribe("quiet.1");
    one.c.close();  // quiet.2 is still followed by `two`
    CHECK(eventually([&] { return a.redis.stats().followed == 1; }, 5s));
    CHECK(eventually([&] { return in_redis() == "herald:quiet.2"; }, 5s));
    two.c.close();
    CHECK(eventually([&] { return a.redis.stats().followed == 0; }, 5s));
    CHECK(eventually([&] { return in_redis().empty(); }, 5s));
}

TEST_CASE("rate: delivery rate and latency across servers") {
    redis_process redis;
    herald::hub_options opts;  // the subscribers are drained one after the other: no slow-consumer cap
    opts.session.max_queued_messages = std::size_t(1) << 20;
    opts.session.max_queued_bytes = std::size_t(1) << 30;
    server a(redis.port(), opts), b(redis.port(), opts), c(redis.port(), opts);
    for (server* s : {&a, &b, &c}) REQUIRE(s->redis.wait_connected(5s));
    std::vector<std::unique_ptr<follower>> subs;
    for (server* s : {&b, &c})
        for (int i = 0; i < 10; ++i) {
            subs.push_back(std::make_unique<follower>(s->connect()));
            REQUIRE(subs.back()->follow("rate"));
        }

    // Throughput: A publishes without waiting (at most 1000 unanswered), 20 subscribers on B and C.
    const int n = 20000 / scale();
    std::atomic<int> answered{0}, failed{0};
    const auto t0 = clock::now();
    for (int i = 0; i < n; ++i) {
        while (i - answered.load() > 1000) std::this_thread::yield();
        a.hub->async_publish("rate", payload(0, i), [&](std::error_code ec, position) {
            if (ec) ++failed;
            ++answered;
        });
    }
    REQUIRE(eventually([&] { return answered == n; }, 60s));
    const auto ordered = clock::now();
    for (auto& f : subs) REQUIRE(f->until([&] { return f->messages >= std::size_t(n); }, 60s));
    const auto delivered = clock::now();
    CHECK(failed == 0);
    for (auto& f : subs) CHECK(f->offsets("rate") == range(1, std::uint64_t(n)));
    const double secs = std::chrono::duration<double>(delivered - t0).count();
    const double publish_rate = n / std::chrono::duration<double>(ordered - t0).count();
    const double message_rate = n / secs;

    // Latency: one publish at a time on A, time until a subscriber on B has it.
    follower& probe = *subs.front();
    std::vector<double> latency_us;
    for (int i = 0; i < 500 / scale(); ++i) {
        const auto s = clock::now();
        a.hub->publish("rate", payload(1, i));
        for (auto deadline = s + 5s; probe.messages < std::size_t(n + i + 1) && clock::now() < deadline;) probe.pump(100ms);
        REQUIRE(probe.messages == std::size_t(n + i + 1));
        latency_us.push_back(std::chrono::duration<double, std::micro>(clock::now() - s).count());
    }
    std::sort(latency_us.begin(), latency_us.end());
    const double p50 = latency_us[latency_us.size() / 2], p99 = latency_us[latency_us.size() * 99 / 100];

    std::cout << "cluster delivery (1 publishing server, 2 subscribing servers x 10 subscribers, 1 Redis, 127.0.0.1):\n"
              << "  ordered by Redis: " << static_cast<long>(publish_rate) << " msg/s\n"
              << "  delivered end to end: " << static_cast<long>(message_rate) << " msg/s, "
              << static_cast<long>(message_rate * subs.size()) << " deliveries/s\n"
              << "  latency publish on A -> subscriber on B (sequential, via the poll loop): p50 "
              << static_cast<long>(p50) << " us, p99 " << static_cast<long>(p99) << " us\n";
    CHECK(message_rate > 1000);
    CHECK(p50 < 20000);
}

TEST_CASE("misuse: a second hub on a copy of the same Redis backplane is refused with logic_error, the first keeps working") {
    redis_process redis;
    server a(redis.port());
    REQUIRE(a.redis.wait_connected(5s));
    CHECK_THROWS_AS(herald::hub(herald::hub_options{}, a.redis), std::logic_error);

    follower on_a(a.connect());
    REQUIRE(on_a.follow("news"));
    a.hub->publish("news", payload(1, 0));
    CHECK(on_a.until([&] { return on_a.messages == 1; }));
}

TEST_CASE("faults: Redis answering errors (out of memory) under load: logged once with a count, not once per publish") {
    redis_process redis;
    server a(redis.port());
    REQUIRE(a.redis.wait_connected(5s));
    a.hub->publish("c", payload(1, 0));
    redis.command({"CONFIG", "SET", "maxmemory-policy", "noeviction"});
    redis.command({"CONFIG", "SET", "maxmemory", "1"});  // every write: OOM
    int failed = 0;
    for (int i = 0; i < 200; ++i) {
        std::error_code ec;
        a.hub->publish("c", payload(1, i), ec);
        failed += ec == herald::error::backplane_unavailable;
    }
    CHECK(failed == 200);
    const auto count = [&](std::string_view part) {
        std::lock_guard<std::mutex> lock(a.logs.mu);
        return std::count_if(a.logs.lines.begin(), a.logs.lines.end(), [&](const std::string& l) { return l.find(part) != l.npos; });
    };
    CHECK(count("OOM") == 1);
    CHECK(a.redis.stats().server_errors == 200);
    CHECK(a.redis.stats().last_error.find("OOM") == 0);
    CHECK(a.redis.state() == herald::backplane::redis_state::connected);  // Redis answers: the link stays
    redis.command({"CONFIG", "SET", "maxmemory", "0"});
    CHECK(a.hub->publish("c", payload(1, 1)).offset == 2);
    CHECK(a.logs.contains("succeed again on 127.0.0.1:" + std::to_string(redis.port()) + " after 200 error(s) OOM"));
}

TEST_CASE("follow: hub head() leaves no Redis subscription behind") {
    redis_process redis;
    server a(redis.port());
    REQUIRE(a.redis.wait_connected(5s));
    a.hub->publish("quiet", payload(1, 0));
    for (int i = 0; i < 20; ++i) CHECK(a.hub->head("quiet").offset == 1);
    CHECK(a.hub->head("never.published").offset == 0);
    // No prune_interval to wait for: the fetch's answer unsubscribes what nobody follows.
    CHECK(eventually([&] { return a.redis.stats().followed == 0 && redis.command({"PUBSUB", "CHANNELS"}).empty(); }, 1s));
    follower f(a.connect());  // a subscriber still gets its own subscription
    REQUIRE(f.follow("quiet"));
    a.hub->head("quiet");
    a.hub->publish("quiet", payload(1, 1));
    CHECK(f.until([&] { return f.offsets("quiet") == std::vector<std::uint64_t>{2}; }));
    CHECK(a.redis.stats().followed == 1);
}
