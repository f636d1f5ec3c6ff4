// The PostgreSQL outbox: committed rows per second to deliveries, and the latency from a
// commit to a subscriber. A PostgreSQL of its own (initdb into /tmp, loopback port, stopped at
// the end), one herald hub on the local backplane with herald::outbox::postgres on one
// io_context thread, one in-process subscriber.
//   herald_outbox_bench [--rows 20000] [--samples 1000] [--redis host:port]
// --redis: the hub on a Redis backplane (a redis-server you started), as several servers run it.
// Prints one line per measure; benchmarks/README.md ("PostgreSQL outbox") keeps a run.
#include <herald.hpp>
#include <herald/backplane/redis.hpp>
#include <herald/outbox/postgres.hpp>
#include <herald/transport/inmemory.hpp>

#include "support/postgres_process.hpp"

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The subscriber: a thread that takes frames as they come and notes when each n arrived.
struct subscriber {
    herald::transport::inmemory::client c;
    std::vector<clock_type::time_point> at;  // by n
    std::atomic<std::size_t> count{0};
    std::atomic<bool> running{true};
    std::thread t;

    subscriber(herald::transport::inmemory::client client, std::size_t max_n) : c(std::move(client)), at(max_n + 1) {}
    void start() {
        t = std::thread([this] {
            while (running) {
                for (auto& f : c.receive(5ms)) {
                    if (f->type != herald::frame_type::message) continue;
                    const auto now = clock_type::now();
                    const std::string_view d = f->data();
                    const auto p = d.find("\"n\":");
                    if (p == d.npos) continue;
                    const std::size_t n = std::strtoull(d.data() + p + 4, nullptr, 10);
                    if (n < at.size()) at[n] = now;
                    count.fetch_add(1, std::memory_order_release);
                }
            }
        });
    }
    void stop() {
        running = false;
        if (t.joinable()) t.join();
    }
    bool wait_for(std::size_t n, std::chrono::seconds timeout) {
        for (auto deadline = clock_type::now() + timeout; clock_type::now() < deadline; std::this_thread::sleep_for(200us))
            if (count.load(std::memory_order_acquire) >= n) return true;
        return false;
    }
};

double ms(clock_type::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string insert_rows(std::size_t from, std::size_t count) {
    std::string sql = "INSERT INTO herald_outbox (channel, data) VALUES ";
    for (std::size_t n = from; n < from + count; ++n)
        sql += (n == from ? "" : ",") + std::string("('bench', '{\"n\":") + std::to_string(n) + ",\"title\":\"an item of the CMS\"}')";
    return sql;
}

} // namespace

int main(int argc, char** argv) {
    std::size_t rows = 20000, samples = 1000;
    std::string redis_at;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--rows")) rows = std::strtoull(argv[i + 1], nullptr, 10);
        else if (!std::strcmp(argv[i], "--samples")) samples = std::strtoull(argv[i + 1], nullptr, 10);
        else if (!std::strcmp(argv[i], "--redis")) redis_at = argv[i + 1];
    }
    const char* backplane = redis_at.empty() ? "local backplane" : "Redis backplane";
    if (herald::test::postgres_process::bindir().empty()) {
        std::cerr << "PostgreSQL is not installed (scripts/setup.sh installs it)\n";
        return 1;
    }
    herald::test::postgres_process pg;
    pg.start();
    herald::test::pg_client db(pg.conninfo());
    db.must(herald::outbox::postgres::schema());

    asio::io_context io;
    auto work = asio::make_work_guard(io);
    herald::hub_options ho;
    ho.session.max_queued_messages = 4 * (rows + samples);  // the subscriber must not be cut off while it catches up
    ho.session.max_queued_bytes = 1024 * (rows + samples);
    ho.history.max_messages = 1000;
    std::optional<herald::backplane::redis> redis;
    if (!redis_at.empty()) {
        auto ro = herald::backplane::redis::options::at(redis_at);
        ro.key_prefix = "herald-outbox-bench-" + std::to_string(::getpid()) + ":";  // a fresh stream each run
        redis.emplace(io, ro);
    }
    std::optional<herald::hub> hub_holder;
    if (redis) hub_holder.emplace(ho, *redis); else hub_holder.emplace(ho);
    herald::hub& hub = *hub_holder;
    herald::rule_authorizer auth;
    auth.allow(herald::action::subscribe, "**");
    hub.set_authorizer(auth);
    herald::transport::inmemory mem(hub);
    const std::size_t total = 2 * rows + samples;
    subscriber sub(mem.connect(), total);
    if (sub.c.subscribe("bench")) return 1;
    sub.start();
    std::thread loop([&] { io.run(); });
    if (redis && !redis->wait_connected(5s)) { std::cerr << "Redis at " << redis_at << " does not answer\n"; return 1; }
    std::optional<herald::outbox::postgres> outbox;
    auto o = herald::outbox::postgres::options::at(pg.conninfo());
    o.batch = 512;

    // 1. A backlog: `rows` committed while no herald runs, then the consumer starts.
    for (std::size_t n = 1; n <= rows; n += 500) db.must(insert_rows(n, std::min<std::size_t>(500, rows - n + 1)));
    auto t0 = clock_type::now();
    outbox.emplace(io, hub, o);
    outbox->start();
    if (!sub.wait_for(rows, 120s)) { std::cerr << "backlog not delivered\n"; return 1; }
    auto t1 = clock_type::now();
    std::printf("backlog: %zu committed rows delivered in %.0f ms: %.0f rows/s (batch %zu, one consumer, %s)\n",
                rows, ms(t1 - t0), rows / (ms(t1 - t0) / 1000), o.batch, backplane);

    // 2. Steady: the CMS commits 10-row transactions as fast as one connection goes while herald delivers.
    t0 = clock_type::now();
    for (std::size_t n = rows + 1; n <= 2 * rows; n += 10) db.must("BEGIN; " + insert_rows(n, 10) + "; COMMIT");
    auto t_commit = clock_type::now();
    if (!sub.wait_for(2 * rows, 120s)) { std::cerr << "steady load not delivered\n"; return 1; }
    t1 = clock_type::now();
    std::printf("steady: %zu rows in 10-row transactions committed at %.0f rows/s, all delivered %.1f ms after the last commit: %.0f rows/s end to end\n",
                rows, rows / (ms(t_commit - t0) / 1000), ms(t1 - t_commit), rows / (ms(t1 - t0) / 1000));

    // 3. Latency: one-row transactions, 2 ms apart; commit (COMMIT returned) to the subscriber.
    std::vector<double> lat;
    for (std::size_t k = 0; k < samples; ++k) {
        const std::size_t n = 2 * rows + 1 + k;
        db.must(insert_rows(n, 1));
        const auto committed = clock_type::now();
        if (!sub.wait_for(2 * rows + k + 1, 10s)) { std::cerr << "row " << n << " not delivered\n"; return 1; }
        lat.push_back(ms(sub.at[n] - committed));
        std::this_thread::sleep_for(2ms);
    }
    std::sort(lat.begin(), lat.end());
    auto q = [&](double p) { return lat[std::min(lat.size() - 1, static_cast<std::size_t>(p * lat.size()))]; };
    std::printf("latency commit -> subscriber over %zu one-row transactions: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                samples, q(0.5), q(0.9), q(0.99), lat.back());
    const auto st = outbox->stats();
    std::printf("consumer: delivered %llu, batches %llu, notifies %llu, duplicates skipped %llu\n",
                static_cast<unsigned long long>(st.delivered), static_cast<unsigned long long>(st.batches),
                static_cast<unsigned long long>(st.notifies), static_cast<unsigned long long>(st.duplicates_skipped));

    outbox.reset();
    sub.stop();
    work.reset();
    io.stop();
    loop.join();
    return sub.count == total ? 0 : 1;
}
