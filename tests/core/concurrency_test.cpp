// Many publishing threads, many subscribers, subscribers coming and going: each subscriber
// sees every message of its channels exactly once, in order.
#include <herald.hpp>
#include <herald/transport/inmemory.hpp>

#include "support/recorder.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

using namespace std::chrono_literals;

// Sanitizer builds run a smaller load (HERALD_STRESS_SCALE=10 divides it by ten).
using herald::test::scale;

TEST_CASE("concurrency: 4 publishers x 100k messages over 100 channels, 1000 subscribers, exactly once, in order") {
    const int publishers = 4, per_publisher = 100000 / scale(), channels = 100, subscribers = 1000, consumers = 2;
    herald::hub_options opts;
    opts.session.max_queued_messages = 1u << 22;  // this test is about order, not about slow consumers
    opts.session.max_queued_bytes = std::size_t(1) << 32;
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);

    auto channel_name = [](int c) { return "ch." + std::to_string(c); };
    struct sub {
        herald::transport::inmemory::client client;
        std::vector<int> channels;
        std::unordered_map<std::string, std::uint64_t> last;  // per channel
        std::uint64_t received = 0;
        bool ordered = true;
    };
    std::vector<sub> subs;
    subs.reserve(subscribers);
    for (int i = 0; i < subscribers; ++i) {
        sub s{mem.connect(), {i % channels, (i * 7 + 3) % channels}, {}, 0, true};
        if (s.channels[0] == s.channels[1]) s.channels.pop_back();
        for (int c : s.channels) REQUIRE_FALSE(s.client.subscribe(channel_name(c)));
        subs.push_back(std::move(s));
    }
    // Drain the `subscribed` answers.
    for (auto& s : subs) s.client.poll([](const herald::frame&) {});

    std::atomic<int> publishers_done{0};
    std::atomic<bool> churn_ok{true};
    std::vector<std::thread> threads;
    for (int p = 0; p < publishers; ++p)
        threads.emplace_back([&, p] {
            for (int n = 0; n < per_publisher; ++n)
                hub.publish(channel_name((n * publishers + p) % channels), "{\"p\":" + std::to_string(p) + "}");
            publishers_done.fetch_add(1);
        });
    // Sessions subscribing and leaving while the publishers run.
    threads.emplace_back([&] {
        int round = 0;
        while (publishers_done.load() < publishers && round < 100000) {
            auto c = mem.connect();
            const std::string ch = channel_name(round++ % channels);
            c.subscribe(ch);
            std::uint64_t last = 0;
            bool first = true;
            c.poll([&](const herald::frame& f) {
                if (f.type == herald::frame_type::subscribed) { last = f.pos.offset; first = false; return; }
                if (f.type != herald::frame_type::message) return;
                if (first || f.pos.offset != last + 1) churn_ok = false;
                last = f.pos.offset;
            }, 1ms);
            c.unsubscribe(ch);
        }
    });
    for (int k = 0; k < consumers; ++k)
        threads.emplace_back([&, k] {
            auto pass = [&] {
                for (int i = k; i < subscribers; i += consumers) {
                    sub& s = subs[static_cast<std::size_t>(i)];
                    s.client.poll([&](const herald::frame& f) {
                        if (f.type != herald::frame_type::message) return;
                        auto& last = s.last[f.channel];
                        if (f.pos.offset != last + 1) s.ordered = false;
                        last = f.pos.offset;
                        ++s.received;
                    });
                }
            };
            while (publishers_done.load() < publishers) pass();
            pass();
        });
    for (auto& t : threads) t.join();

    const std::uint64_t per_channel = std::uint64_t(publishers) * per_publisher / channels;
    std::uint64_t total = 0;
    int bad = 0;
    for (auto& s : subs) {
        const std::uint64_t expected = per_channel * s.channels.size();
        bool exact = s.ordered && s.received == expected;
        for (int c : s.channels) exact = exact && s.last[channel_name(c)] == per_channel;
        if (!exact) ++bad;
        total += s.received;
    }
    CHECK(bad == 0);
    CHECK(churn_ok.load());
    CHECK(hub.stats().published == std::uint64_t(publishers) * per_publisher);
    CHECK(hub.stats().slow_consumers == 0);
    INFO("deliveries checked: " << total);
    CHECK(total > 0);
}

TEST_CASE("concurrency: resume under load across slow-consumer disconnects: in order, each once, every gap announced") {
    // A replay counts in the session's queue cap, so a client that fell more than a queue
    // behind on one channel cannot be given all it missed: it is told recovered:false at the
    // head and resyncs. What must hold: offsets in order, none twice, and no gap that is not
    // announced by a `subscribed` with recovered:false.
    const int messages = 20000 / scale();
    herald::hub_options opts;
    opts.session.max_queued_messages = 64;   // forces disconnects
    opts.history.max_messages = 48;          // below the queue cap: one replay fits a fresh session
    herald::hub hub(opts);
    hub.set_authorizer(herald::insecure_allow_all{});  // the contract, not authorization, is tested here
    herald::transport::inmemory mem(hub);
    auto c = mem.connect();
    c.subscribe("load", hub.head("load"));  // a known starting point, as a page that loaded its state has
    std::atomic<bool> done{false};
    std::thread publisher([&] {
        for (int i = 0; i < messages; ++i) hub.publish("load", "1");
        done = true;
    });
    std::uint64_t last = 0, received = 0, resyncs = 0, recovered = 0;
    bool ordered = true;
    int reconnects = 0;
    for (auto deadline = std::chrono::steady_clock::now() + 60s; std::chrono::steady_clock::now() < deadline;) {
        c.poll([&](const herald::frame& f) {
            if (f.type == herald::frame_type::subscribed) {
                if (f.recovered) {
                    ++recovered;
                } else {
                    ++resyncs;
                    last = std::max(last, f.pos.offset);  // the announced gap: resync, go on from here
                }
                return;
            }
            if (f.type != herald::frame_type::message) return;
            if (f.pos.offset != last + 1) ordered = false;
            last = f.pos.offset;
            ++received;
        }, 1ms);
        if (c.closed()) {
            REQUIRE(c.close_reason() == herald::error::slow_consumer);
            REQUIRE_FALSE(c.reconnect());
            ++reconnects;
        }
        if (done && last == std::uint64_t(messages)) break;
        if (received % 97 == 0) std::this_thread::sleep_for(100us);  // be slow now and then
    }
    publisher.join();
    CHECK(ordered);
    CHECK(last == std::uint64_t(messages));
    INFO("reconnects: " << reconnects << ", resyncs: " << resyncs << ", recovered: " << recovered);
    CHECK(received <= std::uint64_t(messages));
    CHECK(hub.stats().slow_consumers == std::uint64_t(reconnects));
    CHECK(resyncs <= std::uint64_t(reconnects) + 1);
}
