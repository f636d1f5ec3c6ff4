// Redis Sentinel (a primary, a replica and a sentinel of the test's own) and channels sharded
// over several Redis: the delivery contract through a failover, and per shard.
#include "cluster_fixture.hpp"

#include <herald/backplane/redis.hpp>

#include <map>
#include <set>

using namespace cluster;
using herald::frame_type;
using herald::backplane::redis_state;

namespace {

/// A primary, its replica and one sentinel watching them as "herald", quick to fail over.
struct sentinel_setup {
    bool installed = (redis_process::require_installed("redis-sentinel"), true);  // before any process starts
    redis_process primary;
    redis_process replica{true, {"--replicaof", "127.0.0.1", std::to_string(primary.port())}};
    redis_process nobody{false};  // a port nothing listens on: a sentinel that does not answer
    std::unique_ptr<redis_process> sentinel;

    sentinel_setup() {
        REQUIRE(eventually([&] { return replica.command({"INFO", "replication"}).find("master_link_status:up") != std::string::npos; }, 10s));
        sentinel = redis_process::sentinel("sentinel monitor herald 127.0.0.1 " + std::to_string(primary.port()) +
                                           " 1\nsentinel down-after-milliseconds herald 500\n"
                                           "sentinel failover-timeout herald 3000\n");
        // The sentinel learns of the replica from the primary's INFO.
        REQUIRE(eventually([&] { return sentinel->command({"SENTINEL", "master", "herald"}).find("num-slaves\n1") != std::string::npos; }, 15s));
    }

    /// Backplane options naming the dead sentinel first: each is asked in turn.
    herald::backplane::redis::options options() const {
        herald::backplane::redis::options o = herald::backplane::redis::options::by_sentinel(
            "127.0.0.1:" + std::to_string(nobody.port()) + ",127.0.0.1:" + std::to_string(sentinel->port()), "herald");
        o.connect_timeout = 1s;
        return o;
    }
};

std::string at(const redis_process& r) { return "127.0.0.1:" + std::to_string(r.port()); }

} // namespace

TEST_CASE("sentinel: the primary killed under load, the replica takes over: clients stay, publishes fail then work, nothing replicated is lost, never a silent gap") {
    sentinel_setup rs;
    server a(0, {}, rs.options()), b(0, {}, rs.options());
    REQUIRE(a.redis.wait_connected(10s));
    REQUIRE(b.redis.wait_connected(10s));
    CHECK(a.redis.stats().primary == at(rs.primary));
    follower on_a(a.connect()), on_b(b.connect());
    const herald::frame* first = on_a.follow("ops");
    REQUIRE(first);
    REQUIRE(on_b.follow("ops"));
    const std::string epoch1 = first->pos.epoch;

    steady_publisher load(*a.hub, "ops", 500us);
    REQUIRE(eventually([&] { return load.ok_count() > 500; }));
    // A position the replica holds: a client there may come back to it after the failover.
    const position replicated = load.ok_positions().at(200);
    REQUIRE(eventually([&] { return std::stoull("0" + rs.replica.command({"HGET", "herald:{ops}:meta", "head"})) >= replicated.offset; }));

    const auto killed = clock::now();
    rs.primary.kill();
    REQUIRE(eventually([&] { return a.redis.state() == redis_state::reconnecting; }, 5s));
    const std::uint64_t errors_before = load.errors;
    REQUIRE(eventually([&] { return load.errors > errors_before + 20; }));  // errors while down, not silence
    REQUIRE(a.redis.wait_connected(30s));
    REQUIRE(b.redis.wait_connected(10s));
    const auto back = clock::now();
    const std::uint64_t ok_after = load.ok_count();
    REQUIRE(eventually([&] { return load.ok_count() > ok_after + 500; }));
    load.finish();
    REQUIRE(eventually([&] { return load.answered == load.attempts; }));
    for (auto [code, count] : load.error_codes)
        CHECK((code == int(herald::error::backplane_unavailable) || code == int(herald::error::timed_out)));
    const auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
    std::cerr << "  [sentinel] kill -9 of the primary -> link on the new primary: " << ms(back - killed)
              << " ms; publishes failing from +" << ms(load.first_error_at - killed) << " ms to +"
              << ms(load.last_error_at - killed) << " ms (" << load.errors << " errors, " << load.ok << " ok)\n";

    for (server* s : {&a, &b}) {
        const auto st = s->redis.stats();
        CHECK(st.primary == at(rs.replica));
        CHECK(st.failovers == 1);
        CHECK(st.state == redis_state::connected);
    }
    position last;
    for (const position& p : load.ok_positions())
        if (p.epoch != epoch1 && p.offset > last.offset) last = p;
    REQUIRE(!last.epoch.empty());  // the stream goes on under a new epoch (redis_scripts.hpp)
    for (follower* f : {&on_a, &on_b}) {
        REQUIRE(f->until([&] { auto m = f->of(frame_type::message, "ops"); return !m.empty() && m.back()->pos == last; }));
        CHECK_FALSE(f->c.closed());  // sessions never close because of Redis
        int resyncs = 0, renames = 0;
        CHECK(silent_gap(*f, "ops", {}, &resyncs, &renames) == "");
        // Renamed where the replica held everything it had seen; told to resync where it had
        // seen writes the replica never got.
        CHECK(resyncs + renames == 1);
        std::cerr << "  [sentinel] a client: " << renames << " rename(s), " << resyncs << " resync(s) (writes lost by asynchronous replication)\n";
    }

    // The new primary renamed the stream at the head it held; the old epoch is good up to it.
    const std::uint64_t base = std::stoull("0" + rs.replica.command({"HGET", "herald:{ops}:meta", "base"}));
    CHECK(rs.replica.command({"HGET", "herald:{ops}:meta", "prev"}) == epoch1);
    CHECK(base >= replicated.offset);
    // A client that left before the crash resumes on either server: nothing replicated is lost.
    follower resumed(b.connect());
    const herald::frame* sub = resumed.follow("ops", replicated);
    REQUIRE(sub);
    CHECK(sub->recovered);
    CHECK(sub->pos.epoch == last.epoch);
    REQUIRE(resumed.until([&] { return resumed.offsets("ops").size() >= last.offset - replicated.offset; }));
    CHECK(resumed.offsets("ops") == range(replicated.offset + 1, last.offset));
    CHECK(silent_gap(resumed, "ops", replicated) == "");
    // One past what the new primary got: it may have seen a lost write. Told, not silent.
    follower beyond(a.connect());
    const herald::frame* told = beyond.follow("ops", position{epoch1, base + 1});
    REQUIRE(told);
    CHECK_FALSE(told->recovered);
    CHECK(told->pos.epoch == last.epoch);
    CHECK(a.logs.contains("moved to"));
}

TEST_CASE("sentinel: a sentinel that names a replica, or no primary, is not followed") {
    sentinel_setup rs;
    SECTION("a server that is not a primary is never written to") {
        // The replica stands in for a lying sentinel's answer: ROLE refuses it.
        herald::backplane::redis::options o;
        o.host = "127.0.0.1";
        server a(rs.replica.port(), {}, o);
        CHECK_FALSE(a.redis.wait_connected(1s));
        std::error_code ec;
        a.hub->publish("c", "1", ec);
        CHECK(ec == herald::error::backplane_unavailable);
        CHECK(a.redis.stats().last_error.find("not a primary") != std::string::npos);
        CHECK(rs.replica.command({"EXISTS", "herald:{c}:meta"}) == "0");
    }
    SECTION("an unknown master name: every sentinel asked, then unavailable") {
        auto o = rs.options();
        o.master_name = "nobody";
        server a(0, {}, o);
        CHECK_FALSE(a.redis.wait_connected(1s));
        std::error_code ec;
        a.hub->publish("c", "1", ec);
        CHECK(ec == herald::error::backplane_unavailable);
        CHECK(a.logs.contains("no sentinel named the primary of nobody"));
    }
}
