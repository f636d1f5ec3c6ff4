// Cross-server throughput on the Redis backplane: one publishing server and two subscribing
// servers (hubs in this process, each with its own backplane connections and io_context
// thread, as in tests/cluster), their channels on one Redis or sharded over several.
//
//   herald-bench-shards --redis 127.0.0.1:6379[,127.0.0.1:6380...] [--channels 64]
//                       [--messages 100000] [--window 2000]
//
// The publishing server publishes round robin over the channels, at most `window` publishes
// unanswered; each subscribing server has one in-memory client following every channel.
// Prints one JSON line: publishes ordered per second (every publish answered), messages
// delivered per second (every subscribing client has every message), and per shard how many
// publishes it ordered. Every wait is bounded (60 s); a failure exits 1.
#include <herald.hpp>
#include <herald/backplane/redis.hpp>
#include <herald/transport/inmemory.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct node {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    herald::backplane::redis redis;
    std::optional<herald::hub> hub;
    std::optional<herald::transport::inmemory> mem;
    std::thread loop;

    explicit node(std::vector<herald::backplane::redis::options> shards) : redis(io, std::move(shards)) {
        loop = std::thread([this] { io.run(); });
        herald::hub_options o;
        o.session.max_queued_messages = 1 << 20;  // the client drains in bursts: no slow-consumer cut
        o.log = [](herald::log_level level, std::string_view text) {
            if (level >= herald::log_level::warning) std::cerr << text << '\n';
        };
        hub.emplace(std::move(o), redis);
        herald::rule_authorizer followers;
        followers.allow(herald::action::subscribe, "**");
        hub->set_authorizer(std::move(followers));
        mem.emplace(*hub);
    }
    ~node() {
        mem.reset();
        hub.reset();
        work.reset();
        io.stop();
        loop.join();
    }
};

bool within(std::chrono::seconds limit, const std::function<bool()>& done) {
    for (auto deadline = clock_type::now() + limit; clock_type::now() < deadline; std::this_thread::sleep_for(std::chrono::milliseconds(1)))
        if (done()) return true;
    return done();
}

int fail(const std::string& why) {
    std::cerr << "herald-bench-shards: " << why << '\n';
    return 1;
}

} // namespace

int main(int argc, char** argv) {
    std::string redis_list;
    long channels = 64, messages = 100000, window = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i], value = argv[i + 1];
        if (flag == "--redis") redis_list = value;
        else if (flag == "--channels") channels = std::stol(value);
        else if (flag == "--messages") messages = std::stol(value);
        else if (flag == "--window") window = std::stol(value);
        else return fail("unknown flag " + flag);
    }
    if (redis_list.empty() || channels < 1 || messages < 1 || window < 1) return fail("usage: --redis host:port[,host:port...] [--channels N] [--messages N] [--window N]");
    const auto shards = herald::backplane::redis_options::from_flags(redis_list, "", "");

    node publisher(shards), b(shards), c(shards);
    for (node* n : {&publisher, &b, &c})
        if (!n->redis.wait_connected(std::chrono::seconds(10))) return fail("Redis not reachable");
    std::vector<std::string> names;
    for (long i = 0; i < channels; ++i) names.push_back("bench." + std::to_string(i));
    std::vector<herald::transport::inmemory::client> clients;
    clients.push_back(b.mem->connect());
    clients.push_back(c.mem->connect());
    std::vector<std::size_t> received(clients.size(), 0);
    auto drain = [&] {
        for (std::size_t k = 0; k < clients.size(); ++k)
            for (auto& f : clients[k].receive(std::chrono::milliseconds(0))) received[k] += f->type == herald::frame_type::message;
    };
    for (auto& cl : clients)
        for (const std::string& n : names)
            if (cl.subscribe(n)) return fail("subscribe refused");
    // Every subscription answered: 2 x channels `subscribed` frames.
    std::size_t subscribed = 0;
    if (!within(std::chrono::seconds(30), [&] {
            for (auto& cl : clients)
                for (auto& f : cl.receive(std::chrono::milliseconds(0))) subscribed += f->type == herald::frame_type::subscribed;
            return subscribed == clients.size() * names.size();
        }))
        return fail("subscriptions not answered");

    std::atomic<long> answered{0}, failed{0};
    const std::string payload = R"({"item":7,"status":"approved","by":"editor-12345"})";
    const auto t0 = clock_type::now();
    std::thread pump([&] {  // the subscribing clients drain while publishing goes on
        while (answered.load() < messages || received[0] < std::size_t(messages) || received[1] < std::size_t(messages)) {
            drain();
            if (clock_type::now() - t0 > std::chrono::seconds(120)) return;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    });
    for (long i = 0; i < messages; ++i) {
        for (auto until = clock_type::now() + std::chrono::seconds(60); i - answered.load() > window;) {
            if (clock_type::now() > until) { pump.join(); return fail("publishes unanswered"); }
            std::this_thread::yield();
        }
        publisher.hub->async_publish(names[std::size_t(i % channels)], payload, [&](std::error_code ec, herald::position) {
            if (ec) ++failed;
            ++answered;
        });
    }
    if (!within(std::chrono::seconds(60), [&] { return answered.load() == messages; })) { pump.join(); return fail("publishes unanswered"); }
    const auto ordered = clock_type::now();
    pump.join();
    const auto delivered = clock_type::now();
    if (received[0] < std::size_t(messages) || received[1] < std::size_t(messages)) return fail("messages missing");
    if (failed) return fail(std::to_string(failed.load()) + " publishes failed");

    const double publish_rate = messages / std::chrono::duration<double>(ordered - t0).count();
    const double delivery_rate = messages / std::chrono::duration<double>(delivered - t0).count();
    std::cout << "{\"shards\":" << shards.size() << ",\"channels\":" << channels << ",\"messages\":" << messages
              << ",\"ordered_per_s\":" << static_cast<long>(publish_rate) << ",\"delivered_per_s\":" << static_cast<long>(delivery_rate)
              << ",\"per_shard\":[";
    const auto per = publisher.redis.shard_stats();
    for (std::size_t i = 0; i < per.size(); ++i) std::cout << (i ? "," : "") << per[i].published;
    std::cout << "]}\n";
    return 0;
}
