// herald's CMS demo: editors see project changes, comments and their own notifications live.
//   herald-cms-demo [--port 8080] [--address 127.0.0.1] [--interval-ms 1500] [--no-websocket] [--no-longpoll]
//                   [--redis host:port] [--postgres URL]
// Open http://127.0.0.1:8080/, pick a user; open a second window as the other user.
#include "cms.hpp"

#include <herald/server.hpp>
#include <herald/backplane/redis.hpp>

#include <CLI/CLI.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

#ifndef HERALD_DEMO_ASSETS
#define HERALD_DEMO_ASSETS "public"
#endif

namespace {

using server_type = herald::server;  // WebSocket + long-poll on one port

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

herald::http_response file(const std::string& dir, const std::string& name, const std::string& type) {
    herald::http_response r;
    r.body = read_file(dir + "/" + name);
    if (r.body.empty()) return herald::http_response::text(404, "missing asset " + name);
    r.content_type = type;
    return r;
}

std::string user_of(const herald::request_info& r) {
    const std::string u(r.cookie("cms_user"));
    for (const auto& known : cms::users)
        if (u == known) return u;
    return {};
}

// The CMS's short-lived tokens for herald: the page asks /api/herald-token (with its login
// cookie) for one, herald's authenticate hook checks it and reads who it is and until when. A
// signed-out editor gets no new token, and herald ends the session when the last one expires.
// Tokens are signed (HMAC-SHA256), not stored: any demo server with the same secret checks
// them, so several servers behind a balancer need no shared session store.
class token_service {
public:
    using clock = herald::principal::clock;

    /// `secret` empty: a random one, good for this process only.
    token_service(std::string secret, std::chrono::milliseconds ttl) : secret_(std::move(secret)), ttl_(ttl) {
        if (secret_.empty()) {
            std::random_device rd;
            for (int i = 0; i < 32; ++i) secret_ += static_cast<char>(rd());
        }
    }

    /// "user.expiry_ms.signature"
    std::string mint(const std::string& user) const {
        const auto expires = std::chrono::duration_cast<std::chrono::milliseconds>((clock::now() + ttl_).time_since_epoch());
        const std::string body = user + "." + std::to_string(expires.count());
        return body + "." + sign(body);
    }

    /// Who a token names, and until when; nothing for a forged or malformed one (an expired
    /// one is returned with its expiry: herald refuses it as expired).
    std::optional<herald::principal> who(const std::string& token) const {
        const std::size_t sig = token.rfind('.');
        if (sig == std::string::npos || sig == 0) return std::nullopt;
        const std::string body = token.substr(0, sig);
        if (!equal_constant_time(sign(body), token.substr(sig + 1))) return std::nullopt;
        const std::size_t dot = body.find('.');
        const std::string user = body.substr(0, dot), ms = body.substr(dot + 1);
        if (ms.empty() || ms.size() > 15 || ms.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
        herald::principal p{user, clock::time_point(std::chrono::milliseconds(std::stoll(ms)))};
        // What the others see of this editor in a project's presence ("also here: Bob").
        std::string name = user;
        if (!name.empty()) name[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(name[0])));
        p.presence_info = nlohmann::json({{"name", name}}).dump();
        return p;
    }

private:
    std::string sign(const std::string& body) const {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
             reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
        static const char* hex = "0123456789abcdef";
        std::string out;
        for (unsigned int i = 0; i < len; ++i) { out += hex[mac[i] >> 4]; out += hex[mac[i] & 15]; }
        return out;
    }
    static bool equal_constant_time(const std::string& a, const std::string& b) {
        return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
    }

    std::string secret_;
    std::chrono::milliseconds ttl_;
};

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"herald CMS demo: live project updates and notifications"};
    herald::server_options opts;
    opts.port = 8080;
    int interval_ms = 1500;
    bool websocket = true, longpoll = true;
    std::string assets = HERALD_DEMO_ASSETS, redis_address, redis_sentinels, redis_master;
    long token_ttl_ms = 10 * 60 * 1000;
    std::string token_secret;
    app.add_option("--address", opts.address, "address to listen on");
    app.add_option("--port", opts.port, "port (0: any free port, printed at start)");
    app.add_option("--interval-ms", interval_ms, "milliseconds between the simulated editors' actions (0: never)");
    app.add_option("--heartbeat-ms", [&](const CLI::results_t& v) { opts.heartbeat = std::chrono::milliseconds(std::stol(v[0])); return true; },
                   "milliseconds: the server is never quiet longer (a ping), and closes a client quiet for two");
    app.add_flag("!--no-websocket", websocket, "switch the WebSocket transport off (clients use long-poll)");
    app.add_flag("!--no-longpoll", longpoll, "switch the long-poll transport off");
    app.add_option("--assets", assets, "directory of the page's files");
    app.add_option("--redis", redis_address,
                   "host:port[,host:port...] of Redis: several demo servers share publishes and history (several Redis: channels sharded over them)");
    app.add_option("--redis-sentinel", redis_sentinels, "host:port[,host:port...] of Redis Sentinels that watch --redis-master");
    app.add_option("--redis-master", redis_master, "NAME[,NAME...]: the primary the sentinels know by that name (several: shards)");
    std::string postgres_url;
#ifdef HERALD_DEMO_POSTGRES
    app.add_option("--postgres", postgres_url,
                   "libpq URL of PostgreSQL: the CMS's state lives there, each change commits with its outbox row, herald publishes what commits");
#endif
    app.add_option("--server-id", opts.server_id, "this server's name in welcome and /herald/info");
    app.add_option("--metrics-token", opts.metrics.token, "serve /herald/metrics (Prometheus) to scrapers with this Bearer token");
    app.add_option("--metrics-allow", opts.metrics.allow_addresses,
                   "serve /herald/metrics to this peer address without a token (repeatable; not behind a proxy on the same host)");
    app.add_option("--tls-cert", opts.tls.cert_chain_file, "PEM certificate chain: serve https and wss on the port");
    app.add_option("--tls-key", opts.tls.private_key_file, "PEM private key of --tls-cert");
    app.add_option("--token-ttl-ms", token_ttl_ms,
                   "milliseconds a page's herald token lives: how long a signed-out editor may still receive")
        ->check(CLI::Range(2000L, 24L * 3600 * 1000));
    app.add_option("--token-secret", token_secret,
                   "the key that signs herald tokens; the same on every server behind one balancer (default: random, this process only)");
    CLI11_PARSE(app, argc, argv);

    // Block the stop signals before any thread starts; main waits for them with sigwait.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    // One process: the local backplane. Several: Redis, on a loop of its own (see examples/cluster).
    std::optional<herald::backplane::redis_thread> redis;
    if (!redis_address.empty() || !redis_sentinels.empty()) {
        // The server listens at once and connects to Redis in the background: until Redis
        // first answers, /herald/health says `starting` (a balancer sends no one here yet).
        try {
            redis.emplace(herald::backplane::redis_options::from_flags(redis_address, redis_sentinels, redis_master));
        } catch (const std::invalid_argument& e) {
            std::cerr << e.what() << '\n';
            return 2;
        }
    }
    server_type server = redis ? server_type(opts, redis->backplane()) : server_type(opts);
    server.options_of<herald::transport::websocket>().enabled = websocket;
    server.options_of<herald::transport::longpoll>().enabled = longpoll;

    // Who is who: the token the page got from /api/herald-token with its login cookie, and
    // until when. Editors follow the projects and their own notifications, nobody else's.
    const token_service tokens{token_secret, std::chrono::milliseconds(token_ttl_ms)};
    herald::rule_authorizer auth([&tokens](const herald::request_info& r) { return tokens.who(r.credentials); });
    // Who else looks at a project: `project.<id>` carries nothing but its presence (herald.v2).
    auth.allow(herald::action::subscribe, "projects").allow(herald::action::subscribe, "user.{principal}.notifications");
    auth.allow(herald::action::subscribe, "project.*").allow(herald::action::presence, "project.*");
    server.set_authorizer(auth);

    // In memory (the default), the store publishes after each change. On PostgreSQL, each
    // change commits with its outbox row and herald's outbox consumer publishes it.
#ifdef HERALD_DEMO_POSTGRES
    std::optional<cms::database> db;
    std::optional<herald::outbox::postgres> outbox;
    if (!postgres_url.empty()) {
        db.emplace(postgres_url);
        outbox.emplace(server.io_context(), server.hub(), herald::outbox::postgres::options::at(postgres_url));
        server.add_diagnose("outbox", [&outbox] { return nlohmann::json(outbox->stats()); });
        server.add_metrics([&outbox] { return herald::outbox::metrics_text(outbox->stats()); });
    }
    cms::database* database = db ? &*db : nullptr;
#else
    cms::database* database = nullptr;
#endif
    cms::store store([&](const std::string& channel, const nlohmann::json& data) {
        std::error_code ec;
        server.publish(channel, data.dump(), ec);
        if (ec) std::cerr << "publish to " << channel << " failed: " << ec.message() << '\n';
    }, database);

    server.handle("/", [&](const herald::http_request&) { return file(assets, "index.html", "text/html; charset=utf-8"); });
    server.handle("/app.js", [&](const herald::http_request&) { return file(assets, "app.js", "text/javascript; charset=utf-8"); });
    server.handle("/style.css", [&](const herald::http_request&) { return file(assets, "style.css", "text/css; charset=utf-8"); });
    // The page names /favicon.svg; browsers that ask /favicon.ico all the same get it too.
    for (const char* path : {"/favicon.svg", "/favicon.ico"})
        server.handle(path, [&](const herald::http_request&) { return file(assets, "favicon.svg", "image/svg+xml"); });
    server.handle("/login", [](const herald::http_request& r) {
        herald::http_response res;
        std::string u(r.query("user"));
        bool known = false;
        for (const auto& k : cms::users) known = known || k == u;
        if (!known) return herald::http_response::text(400, "unknown user");
        res.status = 303;
        res.headers = {{"Location", "/"}, {"Set-Cookie", "cms_user=" + u + "; Path=/; SameSite=Lax; HttpOnly"}};
        return res;
    });
    server.handle("/logout", [](const herald::http_request&) {
        herald::http_response res;
        res.status = 303;
        res.headers = {{"Location", "/"}, {"Set-Cookie", "cms_user=; Path=/; Max-Age=0"}};
        return res;
    });
    server.handle("/api/herald-token", [&tokens](const herald::http_request& r) {
        std::string u = user_of(r);
        if (u.empty()) return herald::http_response::json(401, R"({"error":"not logged in"})");
        if (r.method != "POST") return herald::http_response::json(405, R"({"error":"POST only"})");
        return herald::http_response::json(200, nlohmann::json({{"token", tokens.mint(u)}}).dump());
    });
    server.handle("/api/me", [](const herald::http_request& r) {
        std::string u = user_of(r);
        if (u.empty()) return herald::http_response::json(401, R"({"error":"not logged in"})");
        return herald::http_response::json(200, nlohmann::json({{"user", u}, {"users", cms::users}}).dump());
    });
    // State for a page that (re)loads: the channel's position is read before the state, so
    // that subscribing `since` it replays anything the state might have missed (the page
    // applies updates idempotently).
    auto position_json = [&](const std::string& channel) {
        herald::position p = server.hub().head(channel);
        return nlohmann::json({{"epoch", p.epoch}, {"offset", p.offset}});
    };
    server.handle("/api/projects", [&](const herald::http_request&) {
        auto position = position_json("projects");
        return herald::http_response::json(200, nlohmann::json({{"position", position}, {"projects", store.projects()}}).dump());
    });
    server.handle("/api/notifications", [&](const herald::http_request& r) {
        std::string u = user_of(r);
        if (u.empty()) return herald::http_response::json(401, R"({"error":"not logged in"})");
        auto position = position_json("user." + u + ".notifications");
        return herald::http_response::json(200, nlohmann::json({{"position", position}, {"notifications", store.notifications(u)}}).dump());
    });
    server.handle("/api/status", [&](const herald::http_request& r) {
        std::string u = user_of(r);
        if (u.empty()) return herald::http_response::json(401, R"({"error":"not logged in"})");
        if (r.method != "POST") return herald::http_response::json(405, R"({"error":"POST only"})");
        auto body = nlohmann::json::parse(r.body, nullptr, false);
        if (body.is_discarded() || !body.contains("project") || !body.contains("item") || !body.contains("status") ||
            !body["project"].is_number_integer() || !body["item"].is_number_integer() || !body["status"].is_string())
            return herald::http_response::json(400, R"({"error":"expected {project, item, status}"})");
        if (!store.set_status(body["project"], body["item"], body["status"], u))
            return herald::http_response::json(404, R"({"error":"no such item"})");
        return herald::http_response::json(200, R"({"ok":true})");
    });
    server.handle("/api/comment", [&](const herald::http_request& r) {
        std::string u = user_of(r);
        if (u.empty()) return herald::http_response::json(401, R"({"error":"not logged in"})");
        auto body = nlohmann::json::parse(r.body, nullptr, false);
        if (body.is_discarded() || !body.contains("project") || !body["project"].is_number_integer() ||
            !body.contains("text") || !body["text"].is_string() || body["text"].get<std::string>().empty())
            return herald::http_response::json(400, R"({"error":"expected {project, text}"})");
        store.add_comment(body["project"], u, body["text"].get<std::string>().substr(0, 500));
        return herald::http_response::json(200, R"({"ok":true})");
    });

    std::error_code ec;
    server.start(ec);
    if (ec) {
        std::cerr << "cannot listen on " << opts.address << ':' << opts.port << ": " << ec.message()
                  << (opts.tls.enabled() ? " (or the TLS certificate or key: see the line above)" : "") << '\n';
        return 1;
    }
#ifdef HERALD_DEMO_POSTGRES
    if (outbox) outbox->start();
#endif
    std::cout << "herald CMS demo on " << (opts.tls.enabled() ? "https://" : "http://") << opts.address << ':' << server.port() << "/  (transports:";
    if (websocket) std::cout << " websocket";
    if (longpoll) std::cout << " long-poll";
    std::cout << "; Ctrl-C stops)" << std::endl;

    std::atomic<bool> running{true};
    std::thread simulator([&] {
        bool failing = false;
        while (running && interval_ms > 0) {
            for (int waited = 0; running && waited < interval_ms; waited += 50)
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            try {  // a database that is down: said once, until an edit works again
                if (running) store.simulate_once();
                failing = false;
            } catch (const std::exception& e) {
                if (!std::exchange(failing, true)) std::cerr << "simulated edits fail: " << e.what() << '\n';
            }
        }
    });

    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::cout << "stopping: clients are told to reconnect" << std::endl;
    running = false;
    simulator.join();
#ifdef HERALD_DEMO_POSTGRES
    if (outbox) outbox->stop();
#endif
    server.stop();
    return 0;
}
