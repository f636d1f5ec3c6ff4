// A herald server for the protocol and browser tests: the WebSocket transport (and long-poll
// when built with it), knobs on the command line, and test-only HTTP endpoints to publish.
//   herald-test-server --port 0 [--heartbeat-ms N] [--max-bytes N] [--queue N] [--history N]
//                      [--publish-secret S] [--metrics-token T] [--metrics-allow ADDR]...
//                      [--origin O]... [--trust-forwarded-proto]
//     [--max-connections N] [--max-connections-per-address N] [--header-timeout-ms N]
//     [--body-timeout-ms N] [--frame-timeout-ms N]
//     [--tls-cert FILE --tls-key FILE] (https and wss)
// Prints "port N" on its first line. SIGTERM drains (reconnect frames), then exits.
// Who a client is: the user of its access token (request_info::credentials) when it sent
// one, else the `user` query parameter, else the `user` cookie (empty: anonymous; "nobody":
// refused, 401). It may subscribe to public.** and user.<itself>.**, and publish to
// public.chat. Test-only endpoints: POST /test/publish?channel=C[&n=N], GET /test/stats, and
// the CMS's token service: POST /test/token?user=U&ttl_ms=N mints a token for U that expires
// in N ms (403 once U is revoked), POST /test/revoke?user=U revokes U (tokens already minted
// stay valid until they expire, as signed tokens do).
#include <herald/server.hpp>

#if __has_include(<herald/backplane/redis.hpp>)
#include <herald/backplane/redis.hpp>
#define HERALD_TEST_REDIS 1
#endif

#include <CLI/CLI.hpp>
#include <asio/ssl/context.hpp>

#include <chrono>
#include <csignal>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include <fcntl.h>
#include <unistd.h>
#include <iostream>

using server_type = herald::server;

int main(int argc, char** argv) {
    CLI::App app{"herald test server"};
    herald::server_options opts;
    opts.port = 0;
    long heartbeat_ms = 25000, drain_spread_ms = 1000, drain_timeout_ms = 3000;
    long presence_linger_ms = static_cast<long>(herald::presence_options{}.linger.count());
    long header_timeout_ms = opts.header_timeout.count(), body_timeout_ms = opts.body_timeout.count();
    long frame_timeout_ms = opts.websocket_frame_timeout.count();
    bool websocket = true, longpoll = true;
    std::vector<std::string> origins;
    std::string redis_address, redis_sentinels, redis_master;
    app.add_option("--redis", redis_address,
                   "host:port[,host:port...]: share publishes and history with other servers through Redis (several: channels sharded over them)");
    app.add_option("--redis-sentinel", redis_sentinels, "host:port[,host:port...] of Redis Sentinels that watch --redis-master");
    app.add_option("--redis-master", redis_master, "NAME[,NAME...]: the primary the sentinels know by that name (several: shards)");
    app.add_option("--port", opts.port, "port (0: any free port, printed first)");
    app.add_option("--max-protocol", opts.max_protocol_version,
                   "server_options::max_protocol_version: 1 serves as a herald.v1-only server would")
        ->check(CLI::Range(1, 2));
    app.add_option("--threads", opts.threads, "server_options::threads: I/O threads (an io_context each)");
    app.add_option("--heartbeat-ms", heartbeat_ms, "server_options::heartbeat, milliseconds");
    app.add_option("--max-bytes", opts.max_request_bytes, "server_options::max_request_bytes, bytes");
    app.add_option("--queue", opts.hub.session.max_queued_messages, "session_options::max_queued_messages, frames");
    app.add_option("--history", opts.hub.history.max_messages, "history_options::max_messages, messages per channel");
    app.add_option("--drain-spread-ms", drain_spread_ms, "server_options::drain_spread, milliseconds");
    app.add_option("--presence-linger-ms", presence_linger_ms, "presence_options::linger, milliseconds");
    app.add_option("--drain-timeout-ms", drain_timeout_ms, "server_options::drain_timeout, milliseconds");
    app.add_option("--origin", origins, "allowed origin (repeatable)");
    app.add_option("--publish-secret", opts.publish_secret, "server-to-server publishing with this Bearer secret");
    app.add_option("--metrics-token", opts.metrics.token, "server_options::metrics.token: /herald/metrics with this Bearer token");
    app.add_option("--metrics-allow", opts.metrics.allow_addresses, "server_options::metrics.allow_addresses (repeatable)");
    app.add_flag("--trust-forwarded-proto", opts.trust_forwarded_proto, "believe X-Forwarded-Proto: https in the origin check");
    app.add_option("--max-connections", opts.max_connections, "server_options::max_connections, connections");
    app.add_option("--max-connections-per-address", opts.max_connections_per_address, "connections from one address (0: no limit)");
    app.add_option("--header-timeout-ms", header_timeout_ms, "server_options::header_timeout, milliseconds");
    app.add_option("--body-timeout-ms", body_timeout_ms, "server_options::body_timeout, milliseconds");
    app.add_option("--frame-timeout-ms", frame_timeout_ms, "server_options::websocket_frame_timeout, milliseconds");
    int hold_descriptors = 0;
    app.add_option("--hold-descriptors", hold_descriptors,
                   "after start, open this many descriptors (the CMS's own files): the server runs out of them before max_connections");
    app.add_flag("!--no-websocket", websocket, "switch the WebSocket transport off");
    app.add_flag("!--no-longpoll", longpoll, "switch the long-poll transport off");
    app.add_option("--tls-cert", opts.tls.cert_chain_file, "PEM certificate chain: serve https and wss");
    app.add_option("--tls-key", opts.tls.private_key_file, "PEM private key of --tls-cert");
    bool asio_context = false;
    app.add_flag("--tls-asio-context", asio_context, "load the files into an asio::ssl::context of ours (as a CMS would) and hand herald that");
    long handshake_ms = 10000;
    app.add_option("--tls-handshake-ms", handshake_ms, "milliseconds: close a connection with no TLS handshake by then");
    CLI11_PARSE(app, argc, argv);
    opts.heartbeat = std::chrono::milliseconds(heartbeat_ms);
    opts.drain_spread = std::chrono::milliseconds(drain_spread_ms);
    opts.hub.presence.linger = std::chrono::milliseconds(presence_linger_ms);
    opts.drain_timeout = std::chrono::milliseconds(drain_timeout_ms);
    opts.allowed_origins = origins;
    opts.header_timeout = std::chrono::milliseconds(header_timeout_ms);
    opts.body_timeout = std::chrono::milliseconds(body_timeout_ms);
    opts.websocket_frame_timeout = std::chrono::milliseconds(frame_timeout_ms);
    opts.tls.handshake_timeout = std::chrono::milliseconds(handshake_ms);
    if (asio_context) {
        auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
        ctx->set_options(asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
        ctx->use_certificate_chain_file(opts.tls.cert_chain_file);
        ctx->use_private_key_file(opts.tls.private_key_file, asio::ssl::context::pem);
        opts.tls = {};
        opts.tls.context = std::move(ctx);
        opts.tls.handshake_timeout = std::chrono::milliseconds(handshake_ms);
    }

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

#ifdef HERALD_TEST_REDIS
    std::optional<herald::backplane::redis_thread> redis;
    if (!redis_address.empty() || !redis_sentinels.empty()) {
        // Listens at once; /herald/health says `starting` until Redis first answers.
        try {
            redis.emplace(herald::backplane::redis_options::from_flags(redis_address, redis_sentinels, redis_master));
        } catch (const std::invalid_argument& e) {
            std::cerr << e.what() << '\n';
            return 2;
        }
    }
    server_type server = redis ? server_type(opts, redis->backplane()) : server_type(opts);
#else
    if (!redis_address.empty() || !redis_sentinels.empty()) {
        std::cerr << "built without the Redis backplane\n";
        return 2;
    }
    server_type server(opts);
#endif
    server.options_of<herald::transport::websocket>().enabled = websocket;
    server.options_of<herald::transport::longpoll>().enabled = longpoll;
    // The CMS's token service: token -> who and until when; revoked users get no new token.
    struct token_store {
        std::mutex mu;
        std::map<std::string, herald::principal> tokens;
        std::set<std::string> revoked;
        unsigned long next = 0;
    };
    auto tokens = std::make_shared<token_store>();
    // Who: the access token's user, else the `user` query parameter or cookie; "nobody" is
    // refused (401), and so is an unknown token.
    herald::rule_authorizer auth([tokens](const herald::request_info& r) -> std::optional<herald::principal> {
        if (!r.credentials.empty()) {
            std::lock_guard<std::mutex> lock(tokens->mu);
            auto it = tokens->tokens.find(r.credentials);
            if (it == tokens->tokens.end()) return std::nullopt;
            return it->second;  // with its expiry, passed or not: herald refuses an expired one
        }
        std::string u(r.query("user"));
        if (u.empty()) u = std::string(r.cookie("user"));
        if (u == "nobody") return std::nullopt;
        herald::principal p{u};
        if (!u.empty()) p.presence_info = nlohmann::json({{"name", u}}).dump();  // what presence shows
        return p;
    });
    // room.*: presence channels (herald.v2); public.* carries none, so that its tests see no join.
    auth.allow(herald::action::subscribe, "public.**")
        .allow(herald::action::subscribe, "user.{principal}.**")
        .allow(herald::action::publish, "public.chat")
        .allow(herald::action::subscribe, "room.*")
        .allow(herald::action::presence, "room.*");
    server.set_authorizer(auth);

    // POST /test/publish?channel=C[&n=N]: publishes the body N times (default once).
    server.handle("/test/publish", [&](const herald::http_request& r) {
        const std::string channel(r.query("channel"));
        const std::string n_text(r.query("n"));
        const int n = n_text.empty() ? 1 : std::stoi(n_text);
        herald::position last;
        for (int i = 0; i < n; ++i) {
            std::error_code ec;
            last = server.publish(channel, r.body.empty() ? std::string("{\"i\":") + std::to_string(i) + "}" : r.body, ec);
            if (ec) return herald::http_response::json(400, nlohmann::json({{"error", herald::to_wire(ec)}}).dump());
        }
        return herald::http_response::json(200, nlohmann::json({{"epoch", last.epoch}, {"offset", last.offset}}).dump());
    });
    server.handle("/test/token", [tokens](const herald::http_request& r) {
        const std::string user(r.query("user")), ttl(r.query("ttl_ms"));
        if (user.empty() || ttl.empty() || ttl.size() > 9 || ttl.find_first_not_of("0123456789") != std::string::npos)
            return herald::http_response::json(400, R"({"error":"user and ttl_ms expected"})");
        std::lock_guard<std::mutex> lock(tokens->mu);
        if (tokens->revoked.count(user)) return herald::http_response::json(403, R"({"error":"revoked"})");
        const std::string token = "tok-" + user + "-" + std::to_string(++tokens->next);
        herald::principal who{user, herald::principal::clock::now() + std::chrono::milliseconds(std::stol(ttl))};
        who.presence_info = nlohmann::json({{"name", user}}).dump();
        tokens->tokens[token] = std::move(who);
        return herald::http_response::json(200, nlohmann::json({{"token", token}}).dump());
    });
    server.handle("/test/revoke", [tokens](const herald::http_request& r) {
        std::lock_guard<std::mutex> lock(tokens->mu);
        tokens->revoked.insert(std::string(r.query("user")));
        return herald::http_response::json(200, "{}");
    });
    // GET /test/presence?channel=C: basic_server::presence, the CMS's view of who is there.
    server.handle("/test/presence", [&](const herald::http_request& r) {
        std::error_code ec;
        const auto members = server.presence(r.query("channel"), ec);
        if (ec) return herald::http_response::json(400, nlohmann::json({{"error", herald::to_wire(ec)}}).dump());
        nlohmann::json out = nlohmann::json::array();
        for (const auto& m : members) out.push_back({{"user", m.user}, {"info", nlohmann::json::parse(m.info)}});
        return herald::http_response::json(200, out.dump());
    });
    server.handle("/test/stats", [&](const herald::http_request&) {
        auto s = server.hub().stats();
        return herald::http_response::json(200, nlohmann::json({{"sessions", s.sessions}, {"slow_consumers", s.slow_consumers},
                                                                 {"connections", server.connection_count()}}).dump());
    });
    server.handle("*", [](const herald::http_request&) {
        herald::http_response r;
        r.content_type = "text/html; charset=utf-8";
        r.body = "<!doctype html><title>herald test</title><p>herald test server</p>";
        return r;
    });

    std::error_code ec;
    server.start(ec);
    if (ec) {
        std::cerr << "start: " << ec.message() << '\n';
        return 1;
    }
    std::vector<int> held;
    for (int i = 0; i < hold_descriptors; ++i)
        if (int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC); fd >= 0) held.push_back(fd);
    std::cout << "port " << server.port() << std::endl;
    int sig = 0;
    sigwait(&stop_signals, &sig);
    server.stop();
    for (int fd : held) ::close(fd);
    std::cout << "stopped" << std::endl;
    return 0;
}
