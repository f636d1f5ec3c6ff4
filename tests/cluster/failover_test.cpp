// Redis Sentinel (a primary, a replica and a sentinel of the test's own) and channels sharded
// over several Redis: the delivery contract through a failover, and per shard.
#include "cluster_fixture.hpp"

#include <herald/backplane/redis.hpp>

#include <poll.h>

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

/// A "sentinel" on a loopback port of its own that answers every read with the same bytes: one
/// that lies, or one that babbles. Stopped (and its thread joined) by its destructor.
class fake_sentinel {
public:
    explicit fake_sentinel(std::string reply) : reply_(std::move(reply)) {
        listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(listener_ >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(listener_, 16) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~fake_sentinel() {
        stop_ = true;
        thread_.join();
        ::close(listener_);
    }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    int asked() const { return asked_; }

private:
    void serve() {
        std::vector<int> clients;
        for (int turn = 0; !stop_ && turn < 100000; ++turn) {  // 20 ms a turn: at most ~33 min
            std::vector<pollfd> fds{{listener_, POLLIN, 0}};
            for (int c : clients) fds.push_back({c, POLLIN, 0});
            if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
            if (fds[0].revents & POLLIN) {
                const int c = ::accept(listener_, nullptr, nullptr);
                if (c >= 0 && clients.size() < 64) clients.push_back(c);
                else if (c >= 0) ::close(c);
            }
            for (std::size_t i = 1; i < fds.size(); ++i) {
                if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                char buf[4096];
                const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
                if (n > 0) {
                    ++asked_;
                    if (::write(fds[i].fd, reply_.data(), reply_.size()) >= 0) continue;
                }
                ::close(fds[i].fd);
                clients.erase(std::find(clients.begin(), clients.end(), fds[i].fd));
            }
        }
        for (int c : clients) ::close(c);
    }

    std::string reply_;
    int listener_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> asked_{0};
    std::thread thread_;
};

/// RESP: the answer to SENTINEL get-master-addr-by-name, naming `host` `port`.
std::string names(const std::string& host, const std::string& port) {
    return "*2\r\n$" + std::to_string(host.size()) + "\r\n" + host + "\r\n$" + std::to_string(port.size()) + "\r\n" + port + "\r\n";
}

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
    CHECK(a.logs.contains("now on primary " + at(rs.replica)));
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
    SECTION("a sentinel that names the replica: ROLE refuses it, the next sentinel is asked") {
        fake_sentinel liar(names("127.0.0.1", std::to_string(rs.replica.port())));
        auto o = rs.options();
        o.sentinels = {liar.address(), at(*rs.sentinel)};
        server a(0, {}, o);
        REQUIRE(a.redis.wait_connected(10s));
        CHECK(a.redis.stats().primary == at(rs.primary));
        CHECK(liar.asked() >= 1);
        CHECK(a.logs.contains("is not a primary"));
        a.hub->publish("c", "1");
        CHECK(rs.primary.command({"HGET", "herald:{c}:meta", "head"}) == "1");
    }
    SECTION("sentinels that babble (an error, a bad port, a wrong shape, nothing) are skipped") {
        fake_sentinel error("-ERR no such master\r\n"), bad_port(names("127.0.0.1", "99999")),
            shape("*3\r\n:1\r\n:2\r\n:3\r\n"), nil("*-1\r\n"), huge(names(std::string(300, 'h'), "6379"));
        auto o = rs.options();
        o.sentinels = {error.address(), bad_port.address(), shape.address(), nil.address(), huge.address(), at(*rs.sentinel)};
        server a(0, {}, o);
        REQUIRE(a.redis.wait_connected(10s));
        CHECK(a.redis.stats().primary == at(rs.primary));
        for (const fake_sentinel* f : {&error, &bad_port, &shape, &nil, &huge}) CHECK(f->asked() >= 1);
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

namespace {

/// `count` channel names that live on `shard` of `shards`.
std::vector<std::string> channels_on(std::size_t shard, std::size_t shards, std::size_t count, const std::string& stem = "ch") {
    std::vector<std::string> out;
    for (int i = 0; out.size() < count && i < 100000; ++i)
        if (herald::backplane::redis::shard_of(stem + std::to_string(i), shards) == shard) out.push_back(stem + std::to_string(i));
    REQUIRE(out.size() == count);
    return out;
}

/// Two Redis, and two servers with their channels sharded over them.
struct two_shards {
    redis_process r0, r1;
    server a{std::vector<std::uint16_t>{r0.port(), r1.port()}}, b{std::vector<std::uint16_t>{r0.port(), r1.port()}};
    two_shards() {
        REQUIRE(a.redis.wait_connected(5s));
        REQUIRE(b.redis.wait_connected(5s));
    }
};

} // namespace

TEST_CASE("shard: the shard of a channel is a stable hash of its name, spread evenly, and moves little when a shard is added") {
    using herald::backplane::redis;
    // Pinned (and checked against a Python rendering of the same FNV-1a + jump hash): every
    // server, every build and every version must agree.
    CHECK(redis::shard_of("project.42.items", 2) == 0);
    CHECK(redis::shard_of("user.alice.notifications", 2) == 0);
    CHECK(redis::shard_of("user.bob.notifications", 2) == 1);
    CHECK(redis::shard_of("news", 2) == 1);
    CHECK(redis::shard_of("project.42.items", 5) == 0);
    CHECK(redis::shard_of("", 3) == 1);
    CHECK(redis::shard_of("anything", 1) == 0);
    std::map<std::size_t, int> per_shard;
    int moved = 0;
    for (int i = 0; i < 30000; ++i) {
        const std::string name = "project." + std::to_string(i) + ".items";
        const std::size_t of3 = redis::shard_of(name, 3);
        ++per_shard[of3];
        const std::size_t of4 = redis::shard_of(name, 4);
        moved += of3 != of4;
        CHECK((of3 == of4 || of4 == 3));  // a channel moves only to the new shard
    }
    for (auto [shard, n] : per_shard) CHECK(std::abs(n - 10000) < 500);
    CHECK(std::abs(moved - 7500) < 500);  // about a quarter
}

TEST_CASE("shard: channels over two Redis: a publish on any server reaches every server, each channel ordered and kept on its shard") {
    two_shards shards;
    redis_process &r0 = shards.r0, &r1 = shards.r1;
    server &a = shards.a, &b = shards.b;
    CHECK(a.redis.shards() == 2);
    const std::vector<std::string> channels{channels_on(0, 2, 2)[0], channels_on(0, 2, 2)[1], channels_on(1, 2, 2)[0],
                                            channels_on(1, 2, 2)[1]};
    follower on_a(a.connect()), on_b(b.connect());
    for (const std::string& c : channels) {
        REQUIRE(on_a.follow(c));
        REQUIRE(on_b.follow(c));
    }
    // Both servers publish on every channel, interleaved: one order per channel, everywhere.
    const int n = 200 / scale();
    std::atomic<int> failed{0};
    std::thread other([&] {
        for (int i = 0; i < n; ++i)
            for (const std::string& c : channels) {
                std::error_code ec;
                b.hub->publish(c, payload(2, i), ec);
                failed += bool(ec);
            }
    });
    for (int i = 0; i < n; ++i)
        for (const std::string& c : channels) a.hub->publish(c, payload(1, i));
    other.join();
    CHECK(failed == 0);
    for (const std::string& c : channels) {
        for (follower* f : {&on_a, &on_b}) {
            REQUIRE(f->until([&] { return f->offsets(c).size() >= std::size_t(2 * n); }));
            CHECK(f->offsets(c) == range(1, 2 * n));
        }
        CHECK(on_a.data(c) == on_b.data(c));  // the same order on both servers
        // The channel's keys are on its shard only.
        const bool first = herald::backplane::redis::shard_of(c, 2) == 0;
        CHECK((first ? r0 : r1).command({"HGET", "herald:{" + c + "}:meta", "head"}) == std::to_string(2 * n));
        CHECK((first ? r1 : r0).command({"EXISTS", "herald:{" + c + "}:meta"}) == "0");
    }
    const auto per = a.redis.shard_stats();
    REQUIRE(per.size() == 2);
    CHECK(per[0].published == std::uint64_t(2 * n));  // a's own publishes, two channels per shard
    CHECK(per[1].published == std::uint64_t(2 * n));
    CHECK(a.redis.stats().published == std::uint64_t(4 * n));
    CHECK(per[0].followed == 2);
}

TEST_CASE("shard: resume works per shard, on another server, with the missed messages of each channel") {
    two_shards shards;
    server &a = shards.a, &b = shards.b;
    const std::string c0 = channels_on(0, 2, 1)[0], c1 = channels_on(1, 2, 1)[0];
    std::map<std::string, position> cursor;
    {
        follower on_a(a.connect());
        for (const std::string& c : {c0, c1}) {
            REQUIRE(on_a.follow(c));
            for (int i = 0; i < 10; ++i) a.hub->publish(c, payload(1, i));
            REQUIRE(on_a.until([&] { return on_a.offsets(c).size() == 10; }));
            cursor[c] = on_a.of(frame_type::message, c).back()->pos;
        }
    }  // the client goes; both channels move on
    for (const std::string& c : {c0, c1})
        for (int i = 10; i < 25; ++i) a.hub->publish(c, payload(1, i));
    follower on_b(b.connect());
    for (const std::string& c : {c0, c1}) {
        const herald::frame* sub = on_b.follow(c, cursor[c]);
        REQUIRE(sub);
        CHECK(sub->recovered);
        CHECK(sub->pos.epoch == cursor[c].epoch);
        REQUIRE(on_b.until([&] { return on_b.offsets(c).size() == 15; }));
        CHECK(on_b.offsets(c) == range(11, 25));
        CHECK(silent_gap(on_b, c, cursor[c]) == "");
    }
    CHECK(cursor[c0].epoch != cursor[c1].epoch);  // two streams, two Redis
}

TEST_CASE("shard: one shard down affects only its channels, which come back with recovered false when it restarts empty") {
    two_shards shards;
    redis_process& r1 = shards.r1;
    server &a = shards.a, &b = shards.b;
    const std::string up = channels_on(0, 2, 1)[0], down = channels_on(1, 2, 1)[0];
    follower on_b(b.connect());
    REQUIRE(on_b.follow(up));
    const herald::frame* first = on_b.follow(down);
    REQUIRE(first);
    a.hub->publish(down, payload(1, 0));

    r1.kill();
    REQUIRE(eventually([&] { return a.redis.state() == redis_state::reconnecting; }, 5s));
    CHECK(a.redis.shard_stats()[0].state == redis_state::connected);
    CHECK(a.redis.shard_stats()[1].state == redis_state::reconnecting);
    std::error_code ec;
    a.hub->publish(down, payload(1, 1), ec);
    CHECK(ec == herald::error::backplane_unavailable);
    for (int i = 0; i < 50; ++i) a.hub->publish(up, payload(1, i));  // the other shard's channels work on
    REQUIRE(on_b.until([&] { return on_b.offsets(up).size() == 50; }));
    CHECK(on_b.offsets(up) == range(1, 50));
    CHECK_FALSE(on_b.c.closed());
    follower late(a.connect());
    CHECK(late.follow(down) == nullptr);  // an error frame: backplane_unavailable; the session stays
    CHECK(late.of(frame_type::error, down).size() == 1);
    REQUIRE(late.follow(up));

    r1.start();  // empty: no persistence
    REQUIRE(a.redis.wait_connected(10s));
    REQUIRE(b.redis.wait_connected(10s));
    const position next = a.hub->publish(down, payload(1, 2));
    CHECK(next.epoch != first->pos.epoch);
    // b learns of the new stream by its re-fetch or by this message: either way it says so
    // (recovered:false at a head that may already include it), then messages follow.
    REQUIRE(on_b.until([&] { return on_b.subscribed(down)->pos.epoch == next.epoch; }));
    const position after = a.hub->publish(down, payload(1, 3));
    REQUIRE(on_b.until([&] { auto m = on_b.of(frame_type::message, down); return !m.empty() && m.back()->pos == after; }));
    CHECK(silent_gap(on_b, down) == "");
    CHECK(on_b.subscribed(down)->recovered == false);  // told: the shard lost the channel's history
    CHECK(silent_gap(on_b, up) == "");
}
