// A real redis-server per test, several herald servers (hubs) in one process, each with its
// own Redis backplane and io_context thread, and in-memory clients.
#pragma once

#include <herald.hpp>
#include <herald/backplane/redis.hpp>
#include <herald/transport/inmemory.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <hiredis/hiredis.h>

#include "support/recorder.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace cluster {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

using herald::test::range;
using herald::test::scale;  // HERALD_STRESS_SCALE=10 divides the loads by ten (sanitizer builds)

/// Polls `done` until it holds or `timeout` passes. @returns whether it holds.
inline bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s) {
    for (auto deadline = clock::now() + timeout; clock::now() < deadline; std::this_thread::sleep_for(2ms))
        if (done()) return true;
    return done();
}

/// A redis-server of our own: a free port on 127.0.0.1, no persistence, a temporary directory.
/// Or, made by sentinel(), a redis-sentinel of our own.
class redis_process {
public:
    static std::string binary(const char* name = "redis-server") {
        for (const char* dir : {"/usr/bin/", "/usr/local/bin/"})
            if (::access((std::string(dir) + name).c_str(), X_OK) == 0) return std::string(dir) + name;
        return {};
    }

    /// Skips the calling test (exit code 77, reported by ctest as skipped) when Redis (or
    /// redis-sentinel) is not installed. Nothing else skips.
    static void require_installed(const char* name = "redis-server") {
        if (!binary(name).empty()) return;
        std::cerr << "SKIPPED: " << name << " is not installed (scripts/setup.sh installs it)\n";
        std::exit(77);
    }

    /// `extra`: more redis-server arguments (`--replicaof 127.0.0.1 <port>`, ...).
    explicit redis_process(bool start_now = true, std::vector<std::string> extra = {})
        : port_(free_port()), extra_(std::move(extra)) {
        require_installed();
        char tmpl[] = "/tmp/herald-redis-XXXXXX";
        REQUIRE(::mkdtemp(tmpl));
        dir_ = tmpl;
        if (start_now) start();
    }

    /// A redis-sentinel on a port of its own, configured by `config` (`sentinel monitor ...`
    /// lines), started.
    static std::unique_ptr<redis_process> sentinel(const std::string& config) {
        require_installed("redis-sentinel");
        auto p = std::make_unique<redis_process>(false);
        p->sentinel_config_ = config;
        p->start();
        return p;
    }
    ~redis_process() {
        stop();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    redis_process(const redis_process&) = delete;
    redis_process& operator=(const redis_process&) = delete;

    std::uint16_t port() const { return port_; }

    /// Starts redis-server and waits (at most 10 s) until it answers PING.
    void start() {
        REQUIRE(pid_ <= 0);
        const std::string port = std::to_string(port_), log = dir_ + "/redis.log";
        std::vector<std::string> args{binary(), "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", dir_, "--logfile", log, "--daemonize", "no", "--protected-mode", "no"};
        args.insert(args.end(), extra_.begin(), extra_.end());
        if (!sentinel_config_.empty()) {  // sentinel rewrites its file: one of its own
            const std::string conf = dir_ + "/sentinel.conf";
            FILE* f = std::fopen(conf.c_str(), "w");
            REQUIRE(f);
            const std::string text = "port " + port + "\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir " + dir_ +
                                     "\nlogfile " + log + "\n" + sentinel_config_;
            std::fwrite(text.data(), 1, text.size(), f);
            std::fclose(f);
            args = {binary("redis-sentinel"), conf};
        }
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        REQUIRE(::posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) == 0);
        const bool up = eventually([&] {
            int status;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) { pid_ = 0; return true; }  // it died
            return command({"PING"}) == "PONG";
        }, 10s);
        INFO("redis-server log:\n" << log_text());
        REQUIRE(up);
        REQUIRE(pid_ > 0);
    }

    /// SIGKILL: Redis dies at once, without saving (there is nothing to save anyway).
    void kill() { end(SIGKILL); }
    /// SIGTERM, then SIGKILL after 5 s.
    void stop() { end(SIGTERM); }
    /// SIGSTOP / SIGCONT: a Redis that hangs without closing its connections.
    void pause() { ::kill(pid_, SIGSTOP); }
    void resume() { ::kill(pid_, SIGCONT); }

    /// One command on a new connection; the reply as text: an array's strings one a line,
    /// "" when there is none.
    std::string command(std::initializer_list<std::string> args) const {
        redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, timeval{1, 0});
        std::string out;
        if (c && !c->err) {
            redisSetTimeout(c, timeval{2, 0});
            std::vector<const char*> argv;
            std::vector<std::size_t> lens;
            for (auto& a : args) { argv.push_back(a.data()); lens.push_back(a.size()); }
            auto* r = static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
            if (r) {
                if (r->type == REDIS_REPLY_INTEGER) out = std::to_string(r->integer);
                else if (r->str) out.assign(r->str, r->len);
                for (std::size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; ++i)
                    if (r->element[i]->str) (out += i ? "\n" : "").append(r->element[i]->str, r->element[i]->len);
                freeReplyObject(r);
            }
        }
        if (c) redisFree(c);
        return out;
    }

    std::string log_text() const {
        std::string text;
        if (FILE* f = std::fopen((dir_ + "/redis.log").c_str(), "r")) {
            char buf[4096];
            for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
            std::fclose(f);
        }
        return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
    }

private:
    static std::uint16_t free_port() {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        ::close(fd);
        return ntohs(a.sin_port);
    }

    void end(int sig) {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGCONT);
        ::kill(pid_, sig);
        int status;
        for (auto deadline = clock::now() + 5s; clock::now() < deadline; std::this_thread::sleep_for(5ms))
            if (::waitpid(pid_, &status, WNOHANG) == pid_) { pid_ = 0; return; }
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        pid_ = 0;
    }

    std::uint16_t port_;
    std::vector<std::string> extra_;
    std::string sentinel_config_;
    std::string dir_;
    pid_t pid_ = 0;
};

/// What a server logged, kept for assertions (and shown on stderr).
struct log_capture {
    std::mutex mu;
    std::vector<std::string> lines;
    herald::log_function function() {
        return [this](herald::log_level level, std::string_view text) {
            std::lock_guard<std::mutex> lock(mu);
            lines.emplace_back(text);
            if (level >= herald::log_level::warning) std::cerr << "  [log] " << text << '\n';
        };
    }
    bool contains(std::string_view part) {
        std::lock_guard<std::mutex> lock(mu);
        return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(part) != l.npos; });
    }
};

/// One herald server: a hub on a Redis backplane, its own io_context thread, in-memory clients.
struct server {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    herald::backplane::redis redis;
    log_capture logs;
    std::optional<herald::hub> hub;  // destroyed before the loop stops
    std::optional<herald::transport::inmemory> mem;
    std::thread loop;

    explicit server(std::uint16_t port, herald::hub_options opts = {}, herald::backplane::redis::options ro = {})
        : server(std::vector<std::uint16_t>{port}, std::move(opts), std::move(ro)) {}

    /// Channels sharded over the Redis at `ports`, in that order.
    explicit server(const std::vector<std::uint16_t>& ports, herald::hub_options opts = {},
                    herald::backplane::redis::options ro = {})
        : redis(io, shards(ports, ro)) {
        loop = std::thread([this] { io.run(); });
        opts.log = logs.function();
        hub.emplace(std::move(opts), redis);
        // The clients here follow any channel; none publishes (the servers do).
        herald::rule_authorizer followers;
        followers.allow(herald::action::subscribe, "**");
        hub->set_authorizer(std::move(followers));
        mem.emplace(*hub);
    }
    ~server() {
        mem.reset();
        hub.reset();
        work.reset();
        io.stop();
        loop.join();
    }

    herald::transport::inmemory::client connect() { return mem->connect(); }

    static std::vector<herald::backplane::redis::options> shards(const std::vector<std::uint16_t>& ports,
                                                                 const herald::backplane::redis::options& ro) {
        std::vector<herald::backplane::redis::options> out;
        for (std::uint16_t port : ports) out.push_back(with_port(ro, port));
        return out;
    }

    static herald::backplane::redis::options with_port(herald::backplane::redis::options o, std::uint16_t port) {
        o.port = port;
        o.reconnect_min = 20ms;  // tests wait for reconnections: keep them quick
        o.reconnect_max = 200ms;
        return o;
    }
};

/// A client and everything it received (duplicates already dropped by the client).
struct follower {
    herald::transport::inmemory::client c;
    std::vector<herald::frame_ptr> frames;
    std::size_t messages = 0;  // message frames, all channels

    explicit follower(herald::transport::inmemory::client client) : c(std::move(client)) {}

    void pump(std::chrono::milliseconds wait = 0ms) {
        for (auto& f : c.receive(wait)) {
            messages += f->type == herald::frame_type::message;
            frames.push_back(std::move(f));
        }
    }
    /// Pumps until `done` holds, at most `timeout`.
    bool until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s) {
        return eventually([&] { pump(1ms); return done(); }, timeout);
    }
    std::vector<const herald::frame*> of(herald::frame_type t, const std::string& channel) const {
        std::vector<const herald::frame*> out;
        for (auto& f : frames)
            if (f->type == t && f->channel == channel) out.push_back(f.get());
        return out;
    }
    std::vector<std::uint64_t> offsets(const std::string& channel) const {
        std::vector<std::uint64_t> out;
        for (auto* f : of(herald::frame_type::message, channel)) out.push_back(f->pos.offset);
        return out;
    }
    std::vector<std::string> data(const std::string& channel) const {
        std::vector<std::string> out;
        for (auto* f : of(herald::frame_type::message, channel)) out.emplace_back(f->data());
        return out;
    }
    const herald::frame* subscribed(const std::string& channel) const {
        auto s = of(herald::frame_type::subscribed, channel);
        return s.empty() ? nullptr : s.back();
    }
    /// Subscribes and waits for the answer. @returns the `subscribed` frame, or null.
    const herald::frame* follow(const std::string& channel, std::optional<herald::position> since = {}) {
        const std::size_t before = of(herald::frame_type::subscribed, channel).size();
        const std::size_t errors = of(herald::frame_type::error, channel).size();
        auto ec = since ? c.subscribe(channel, *since) : c.subscribe(channel);
        if (ec) return nullptr;
        until([&] { return of(herald::frame_type::subscribed, channel).size() > before ||
                           of(herald::frame_type::error, channel).size() > errors; });
        return of(herald::frame_type::subscribed, channel).size() > before ? subscribed(channel) : nullptr;
    }
};

using herald::position;

inline std::string payload(int publisher, int n) { return "{\"p\":" + std::to_string(publisher) + ",\"n\":" + std::to_string(n) + "}"; }

/// Publishes through `hub` at a steady pace from its own thread, counting every answer.
struct steady_publisher {
    herald::hub& hub;
    std::string channel;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> attempts{0}, answered{0}, ok{0}, errors{0};
    std::mutex mu;
    std::vector<position> positions;  // of the successful ones, in answer order
    std::map<int, std::uint64_t> error_codes;  // error value -> count
    clock::time_point first_error_at{}, last_error_at{};
    std::thread thread;

    steady_publisher(herald::hub& h, std::string c, std::chrono::microseconds pace) : hub(h), channel(std::move(c)) {
        thread = std::thread([this, pace] {
            for (int n = 0; !stop && n < 1000000; ++n) {
                ++attempts;
                hub.async_publish(channel, payload(0, n), [this](std::error_code ec, position p) {
                    std::lock_guard<std::mutex> lock(mu);
                    if (ec) {
                        ++errors;
                        ++error_codes[ec.value()];
                        last_error_at = clock::now();
                        if (first_error_at == clock::time_point{}) first_error_at = last_error_at;
                    }
                    else { ++ok; positions.push_back(std::move(p)); }
                    ++answered;
                });
                std::this_thread::sleep_for(pace);
            }
        });
    }
    void finish() {
        stop = true;
        if (thread.joinable()) thread.join();
    }
    ~steady_publisher() { finish(); }
    std::uint64_t ok_count() { return ok.load(); }
    /// The successful positions so far (a copy).
    std::vector<position> ok_positions() {
        std::lock_guard<std::mutex> lock(mu);
        return positions;
    }
};



/// Walks what a client received on `channel` as its app would: each message must follow its
/// cursor (same epoch, next offset), unless a `subscribed` came first: `recovered: false` moves
/// the cursor to the head (a resync: told, not silent), `recovered: true` in another epoch
/// renames the stream at the cursor's offset. `since`: the cursor the client subscribed with.
/// @returns "" when there is no silent gap, else what broke, and counts the resyncs and renames.
inline std::string silent_gap(const follower& f, const std::string& channel, std::optional<position> since = {},
                              int* resyncs = nullptr, int* renames = nullptr) {
    std::optional<position> at = std::move(since);
    for (const auto& fr : f.frames) {
        if (fr->channel != channel) continue;
        if (fr->type == herald::frame_type::subscribed) {
            if (!at || !fr->recovered) {
                if (at && resyncs) ++*resyncs;
                at = fr->pos;
            } else if (at->epoch != fr->pos.epoch) {
                if (renames) ++*renames;
                at->epoch = fr->pos.epoch;
            }
        } else if (fr->type == herald::frame_type::message) {
            if (!at || fr->pos.epoch != at->epoch || fr->pos.offset != at->offset + 1)
                return "message " + fr->pos.epoch + ":" + std::to_string(fr->pos.offset) + " after " +
                       (at ? at->epoch + ":" + std::to_string(at->offset) : std::string("nothing"));
            at = fr->pos;
        }
    }
    return "";
}

} // namespace cluster
