// herald — the server: one port for every transport, herald's endpoints, and the CMS's pages.
// The top layer: it composes the network host (herald/net/) and the transports it is given.
#pragma once

#include <herald/hub.hpp>
#include <herald/version.hpp>
#include <herald/detail/client_js.hpp>
#include <herald/detail/diagnose.hpp>
#include <herald/detail/metrics_text.hpp>
#include <herald/net/http.hpp>
#include <herald/net/server_options.hpp>
#include <herald/net/transport.hpp>
#include <herald/net/detail/refusal.hpp>
#include <herald/net/detail/tcp_connection.hpp>

#include <asio.hpp>
#include <asio/ssl/context.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>
#define HERALD_POSIX_DESCRIPTORS 1
#endif

namespace herald {

/// A herald server: listens on one port, speaks HTTP/1.1 with keep-alive, and hands each
/// request to the first enabled transport that takes it; also serves `/herald/info`,
/// `/herald/client.js`, `/herald/diagnose`, `/herald/health` (for load balancers),
/// `/herald/metrics` (Prometheus, off until server_options::metrics names a scraper), and
/// the pages the CMS registers with handle().
///
/// @tparam Transports network transports, tried in order (e.g. transport::websocket,
/// transport::longpoll). Each is compiled in by being listed, and switched on or off at run
/// time by its options' `enabled`.
///
/// @code
/// herald::server_options opts;
/// opts.port = 8080;
/// herald::server server(opts);   // websocket + long-poll, local backplane
/// server.start();
/// server.publish("projects", R"({"id":42,"title":"Launch"})");   // from any thread
/// @endcode
///
/// Thread safety: publish(), hub() and stats are safe from any thread; configure (options_of,
/// handle, set_authorizer) before start(); call stop() from a thread that is not one of the
/// server's I/O threads.
template <class... Transports>
class basic_server final : private net::detail::connection_owner {
    static_assert((net::check_network_transport<Transports>() && ...));

public:
    using http_handler = std::function<http_response(const http_request&)>;

    /// A server with `opts.threads` I/O threads of its own, an io_context each.
    explicit basic_server(server_options opts = {})
        : opts_(std::move(opts)), own_ioc_(std::make_unique<asio::io_context>()), ioc_(*own_ioc_),
          hub_(opts_.hub), ctx_(hub_, opts_) {}

    /// A server on the caller's io_context; the caller runs it.
    basic_server(asio::io_context& ioc, server_options opts)
        : opts_(std::move(opts)), ioc_(ioc), hub_(opts_.hub), ctx_(hub_, opts_) {}

    /// A server on the given backplane (e.g. backplane::redis).
    template <class Backplane>
    basic_server(server_options opts, Backplane bp)
        : opts_(std::move(opts)), own_ioc_(std::make_unique<asio::io_context>()), ioc_(*own_ioc_),
          hub_(opts_.hub, std::move(bp)), ctx_(hub_, opts_) {}

    template <class Backplane>
    basic_server(asio::io_context& ioc, server_options opts, Backplane bp)
        : opts_(std::move(opts)), ioc_(ioc), hub_(opts_.hub, std::move(bp)), ctx_(hub_, opts_) {}

    ~basic_server() {
        stop(std::chrono::milliseconds(0));
        tick_timer_.reset();
        acceptor_.reset();
        for (auto& w : wakes_) w->clear();
        // Pending handlers (and the connections they hold) go while the hub and the wake
        // batches live.
        more_iocs_.clear();
        own_ioc_.reset();
#ifdef HERALD_POSIX_DESCRIPTORS
        if (reserve_fd_ >= 0) ::close(reserve_fd_);
#endif
    }

    basic_server(const basic_server&) = delete;
    basic_server& operator=(const basic_server&) = delete;

    /// The options of transport `T` (e.g. `options_of<transport::websocket>().enabled = false`).
    template <class T>
    typename T::options& options_of() { return std::get<typename T::options>(transport_options_); }

    const server_options& options() const noexcept { return opts_; }

    template <class Authorizer>
    void set_authorizer(Authorizer a) { hub_.set_authorizer(std::move(a)); }

    /// Serves `path` (exact match; "*" for any path nothing else took) with `h`. For the CMS's
    /// own small pages; herald is not a web framework.
    void handle(std::string path, http_handler h) { handlers_[std::move(path)] = std::move(h); }

    /// Adds `report()`'s JSON to `/herald/diagnose` under `components.<name>`: the state and
    /// counters of a part the CMS runs beside the server (herald::outbox::postgres's stats()).
    /// Called on an I/O thread per diagnose request; set before start().
    void add_diagnose(std::string name, std::function<nlohmann::json()> report) {
        diagnose_reports_[std::move(name)] = std::move(report);
    }

    /// Appends `text()` (metric families in Prometheus' text format, names starting with
    /// `herald_`; herald::outbox::postgres::metrics_text()) to `/herald/metrics`. Called on an
    /// I/O thread per scrape; set before start().
    void add_metrics(std::function<std::string()> text) { metrics_reports_.push_back(std::move(text)); }

    /// Binds, listens and (with its own io_context) starts the I/O threads.
    void start(std::error_code& ec) {
        ec.clear();
        if (started_) return;
        // The heartbeat is checked on the once-a-second tick: a shorter one could not be kept.
        opts_.heartbeat = std::max<std::chrono::milliseconds>(opts_.heartbeat, net::tick_interval);
        opts_.max_protocol_version = std::clamp(opts_.max_protocol_version, 1, protocol::latest_version);
        ctx_.server_id = opts_.server_id;
        ctx_.transports.clear();
        make_transports(std::index_sequence_for<Transports...>{});
        if (!load_tls(ec)) return;
        asio::ip::tcp::endpoint ep(asio::ip::make_address(opts_.address, ec), opts_.port);
        if (ec) return;
        acceptor_ = std::make_unique<asio::ip::tcp::acceptor>(asio::make_strand(ioc_));
        acceptor_->open(ep.protocol(), ec);
        if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec) acceptor_->bind(ep, ec);
        if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
        if (ec) { acceptor_.reset(); return; }
        port_ = acceptor_->local_endpoint().port();
        max_connections_ = opts_.max_connections == 0 ? SIZE_MAX : opts_.max_connections;
#ifdef HERALD_POSIX_DESCRIPTORS
        // More connections than descriptors cannot be: the limit answers (503) before accept fails.
        rlimit rl{};
        if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 64)
            max_connections_ = std::min<std::size_t>(max_connections_, static_cast<std::size_t>(rl.rlim_cur) - 32);
        if (reserve_fd_ < 0) reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
#endif
        // I/O threads of our own: one io_context per thread, each an implicit strand, so a
        // connection runs on its thread's io_context directly, and the wakes of one thread's
        // connections are batched (see net::detail::wake_batch): a publish posts one handler
        // per thread that has subscribers of it, not one per connection. The acceptor (on the
        // first) deals new connections to the threads in turn.
        if (own_ioc_ && wakes_.empty()) {
            const unsigned n = std::max(1u, opts_.threads);
            for (unsigned i = 1; i < n; ++i) more_iocs_.push_back(std::make_unique<asio::io_context>());
            for (unsigned i = 0; i < n; ++i) wakes_.push_back(std::make_unique<net::detail::wake_batch>(io_of(i).get_executor()));
        }
        if (ctx_.server_id.empty()) ctx_.server_id = opts_.address + ":" + std::to_string(port_);
        started_ = true;
        hub_.report_authorizer();  // says so once when no authorizer was set
        accept();
        tick_timer_ = std::make_unique<asio::steady_timer>(ioc_);
        schedule_tick();
        if (own_ioc_) {
            for (std::size_t i = 0; i < wakes_.size(); ++i) {
                work_.push_back(asio::make_work_guard(io_of(i)));
                threads_.emplace_back([this, i] { io_of(i).run(); });
            }
        }
    }

    /// Throwing form: herald::system_error (e.g. the port is in use).
    void start() {
        std::error_code ec;
        start(ec);
        detail::throw_if(ec, "herald::basic_server::start");
    }

    /// Stops: no new connections; every client is told to reconnect after a jittered delay
    /// (WebSocket: a `reconnect` frame, then close 4001; held polls: 503 with the same frame),
    /// waits up to `drain` for them to go, closes what remains. Idempotent.
    void stop(std::chrono::milliseconds drain) {
        if (!started_ || stopped_.exchange(true)) return;
        ctx_.draining = true;
        asio::post(acceptor_->get_executor(), [this] {
            std::error_code ignored;
            acceptor_->close(ignored);
        });
        for (auto& c : live_connections()) {
            auto after = ctx_.jitter();
            asio::post(c->get_executor(), [c, after] { c->drain(after); });
        }
        const auto deadline = std::chrono::steady_clock::now() + drain;
        while (std::chrono::steady_clock::now() < deadline && connection_count() > 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        for (auto& c : live_connections()) asio::post(c->get_executor(), [c] { c->close(); });
        asio::post(ioc_, [this] { if (tick_timer_) tick_timer_->cancel(); });
        if (own_ioc_) {
            const auto hard = std::chrono::steady_clock::now() + std::chrono::seconds(2);
            while (std::chrono::steady_clock::now() < hard && connection_count() > 0)
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            work_.clear();
            for (std::size_t i = 0; i < wakes_.size(); ++i) io_of(i).stop();
            for (auto& t : threads_) t.join();
            threads_.clear();
        }
    }
    void stop() { stop(opts_.drain_timeout); }

    /// The port listened on (useful with port 0).
    std::uint16_t port() const noexcept { return port_; }
    herald::hub& hub() noexcept { return hub_; }
    /// The io_context of the first I/O thread (the acceptor's and the tick's), or the caller's.
    asio::io_context& io_context() noexcept { return ioc_; }
    std::size_t connection_count() const {
        std::lock_guard<std::mutex> lock(conn_mu_);
        return connections_.size();
    }

    /// Publishes to a channel; see hub::publish. Safe from any thread.
    position publish(std::string_view channel, std::string_view data, std::error_code& ec) {
        return hub_.publish(channel, data, ec);
    }
    position publish(std::string_view channel, std::string_view data) { return hub_.publish(channel, data); }

    /// Who is in a channel now (herald.v2 presence): one member per principal, over every
    /// server with Redis; see hub::presence. Safe from any thread (it may block up to
    /// hub_options::publish_timeout with Redis: not from an I/O thread's handler).
    std::vector<presence_member> presence(std::string_view channel, std::error_code& ec) {
        return hub_.presence(channel, ec);
    }
    std::vector<presence_member> presence(std::string_view channel) { return hub_.presence(channel); }

private:
    template <std::size_t... I>
    void make_transports(std::index_sequence<I...>) {
        (make_transport<I>(), ...);
    }
    template <std::size_t I>
    void make_transport() {
        using T = std::tuple_element_t<I, std::tuple<Transports...>>;
        auto& o = std::get<typename T::options>(transport_options_);
        if (!o.enabled) return;
        std::get<I>(transports_) = std::make_unique<T>(ctx_, o);
        ctx_.transports.emplace_back(T::name);
    }

    // server_options::tls: herald's context from the files, or the CMS's. A bad file is
    // std::errc::invalid_argument, with OpenSSL's reason in the log.
    bool load_tls(std::error_code& ec) {
        const tls_options& o = opts_.tls;
        if (!o.enabled()) return true;
        tls_.handshake_timeout = o.handshake_timeout;
        tls_.log = opts_.hub.log;
        std::string why;
        if (o.context) {
            tls_.context = std::make_unique<net::detail::tls_context>(o.context->native_handle(), o.context);
        } else if (o.cert_chain_file.empty() || o.private_key_file.empty()) {
            why = "both tls.cert_chain_file and tls.private_key_file are needed";
        } else {
            tls_.context = net::detail::tls_context::load_server(o.cert_chain_file, o.private_key_file, why);
        }
        if (tls_.context) return true;
        if (opts_.hub.log) opts_.hub.log(log_level::error, "TLS: " + why);
        ec = std::make_error_code(std::errc::invalid_argument);
        return false;
    }

    // The I/O thread `i`'s io_context (0: ioc_).
    asio::io_context& io_of(std::size_t i) { return i == 0 ? ioc_ : *more_iocs_[i - 1]; }

    // The accept loop, on the acceptor's strand. With threads of our own, each new socket is
    // made on the next thread's io_context (round robin): it is registered with that
    // thread's reactor and never moves.
    void accept() {
        const std::size_t thread = wakes_.empty() ? 0 : next_thread_++ % wakes_.size();
        asio::any_io_executor ex = wakes_.empty() ? asio::any_io_executor(asio::make_strand(ioc_))
                                                  : asio::any_io_executor(io_of(thread).get_executor());
        // The accept operation is allocated with plain new/delete, not Asio's per-thread
        // recycling (which std::allocator would still select): the recycled block of an accept (~270 bytes: it holds a socket) was then
        // taken by the new connection's read wait (~140 bytes), which an idle connection holds
        // for its whole life.
        acceptor_->async_accept(ex, asio::bind_allocator(net::detail::plain_allocator<void>(), [this, thread](std::error_code ec, asio::ip::tcp::socket socket) {
            if (ec == asio::error::operation_aborted || !acceptor_->is_open()) return;
            if (!ec) {
                admit(std::move(socket), thread);
            } else if (ec == asio::error::no_descriptors) {
                // Out of file descriptors: answer one waiting client with the reserve
                // descriptor, then pause accepting rather than spin.
                refuse_with_reserve();
                auto t = std::make_shared<asio::steady_timer>(ioc_, std::chrono::milliseconds(100));
                t->async_wait([this, t](std::error_code) { if (!stopped_) accept(); });
                return;
            }
            accept();
        }));
    }

    // Lets a new connection in, or refuses it (server_options: max_connections, 503;
    // max_connections_per_address, 429) before reading anything from it.
    void admit(asio::ip::tcp::socket socket, std::size_t thread) {
        std::error_code ec;
        const auto ep = socket.remote_endpoint(ec);
        if (ec) return;  // gone already
        std::string address = ep.address().to_string();
        std::shared_ptr<net::detail::tcp_connection> c;
        int refuse = 0;
        {
            std::lock_guard<std::mutex> lock(conn_mu_);
            std::size_t& from_address = addresses_[address];
            if (connections_.size() >= max_connections_) refuse = 503;
            else if (opts_.max_connections_per_address && from_address >= opts_.max_connections_per_address) refuse = 429;
            if (refuse) {
                ctx_.metrics.connections_refused.fetch_add(1, std::memory_order_relaxed);
                if (from_address == 0) addresses_.erase(address);
            } else {
                ++from_address;
                ctx_.metrics.connections_accepted.fetch_add(1, std::memory_order_relaxed);
                net::detail::connection_owner& owner = *this;
                c = std::make_shared<net::detail::tcp_connection>(std::move(socket), owner, limits_,
                                                                     wakes_.empty() ? nullptr : wakes_[thread].get(),
                                                                     tls_.context ? &tls_ : nullptr);
                connections_.emplace(c.get(), c);
            }
        }
        if (refuse && tls_.context) {
            // A TLS client cannot read a plain answer, and a handshake is the very cost an
            // overloaded server must not pay: closed unread (the browser retries).
            socket.close(ec);
        } else if (refuse == 503)
            net::detail::refuse_connection(std::move(socket), 503, "overloaded",
                                           "too many connections: retry later", std::chrono::seconds(5), true);
        else if (refuse == 429)
            net::detail::refuse_connection(std::move(socket), 429, "too_many_connections",
                                           "too many connections from your address", std::chrono::seconds(5), true);
        else
            asio::post(c->get_executor(), [c] { c->start(); });
    }

    // EMFILE/ENFILE: frees the reserve descriptor, accepts one client with it, answers it
    // 503 and closes it at once, then takes the reserve back.
    void refuse_with_reserve() {
#ifdef HERALD_POSIX_DESCRIPTORS
        if (reserve_fd_ < 0) return;
        ::close(reserve_fd_);
        reserve_fd_ = -1;
        std::error_code ec;
        asio::ip::tcp::socket s(acceptor_->get_executor());
        acceptor_->non_blocking(true, ec);
        acceptor_->accept(s, ec);
        std::error_code ignored;
        acceptor_->non_blocking(false, ignored);
        if (!ec && tls_.context)
            s.close(ec);  // a TLS client cannot read a plain answer
        else if (!ec)
            net::detail::refuse_connection(std::move(s), 503, "overloaded", "server out of descriptors: retry later",
                                           std::chrono::seconds(5), false);
        reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
#endif
    }

    void schedule_tick() {
        tick_timer_->expires_after(net::tick_interval);
        tick_timer_->async_wait([this](std::error_code ec) {
            if (ec || stopped_) return;
            const auto now = net::clock::now();
            if (wakes_.empty()) {
                for (auto& c : live_connections()) asio::post(c->get_executor(), [c, now] { c->tick(now); });
            } else {
                // One handler per I/O thread ticks its connections: no allocation per
                // connection per second (10k posted handlers a second were both CPU and heap).
                std::vector<std::vector<std::shared_ptr<net::detail::tcp_connection>>> per(wakes_.size());
                for (auto& c : live_connections())
                    for (std::size_t i = 0; i < wakes_.size(); ++i)
                        if (c->batch() == wakes_[i].get()) { per[i].push_back(std::move(c)); break; }
                for (std::size_t i = 0; i < per.size(); ++i)
                    if (!per[i].empty())
                        asio::post(io_of(i), [cs = std::move(per[i]), now] { for (auto& c : cs) c->tick(now); });
            }
            hub_.sweep();
            schedule_tick();
        });
    }

    std::vector<std::shared_ptr<net::detail::tcp_connection>> live_connections() {
        std::vector<std::shared_ptr<net::detail::tcp_connection>> out;
        std::lock_guard<std::mutex> lock(conn_mu_);
        out.reserve(connections_.size());
        for (auto& [p, w] : connections_)
            if (auto c = w.lock()) out.push_back(std::move(c));
        return out;
    }

    // connection_owner
    void forget(net::detail::tcp_connection* c) noexcept override {
        std::lock_guard<std::mutex> lock(conn_mu_);
        if (connections_.erase(c) == 0) return;
        auto a = addresses_.find(std::string(c->address()));
        if (a != addresses_.end() && --a->second == 0) addresses_.erase(a);
    }

    net::server_metrics& metrics() noexcept override { return ctx_.metrics; }

    void route(const std::shared_ptr<net::detail::tcp_connection>& c, http_request&& r) override {
        const std::string_view path = r.path();
        if (path == "/herald/info") return c->respond(r, http_response::json(200, info().dump()));
        if (path == "/herald/health") return c->respond(r, health());
        if (path == "/herald/metrics") return c->respond(r, metrics_answer(*c, r));
        if (path == "/herald/client.js") {
            http_response res;
            res.content_type = "text/javascript; charset=utf-8";
            res.body = std::string(detail::client_js);
            return c->respond(r, std::move(res));
        }
        if (path == "/herald/diagnose") {
            // What a page of another site must not read: answered to allowed origins only.
            if (!ctx_.origin_allowed(r)) return c->respond(r, http_response::error(403, error::forbidden, "origin not allowed"));
            return detail::serve_diagnose(c, r, diagnose(r), diagnose_held_);
        }
        bool taken = false;
        std::apply([&](auto&... t) { ((taken = taken || (t && t->serve(c, r))), ...); }, transports_);
        if (taken) return;
        // herald's own paths never fall to the CMS's catch-all page: a switched-off transport's
        // endpoint answers herald's 404, which a client or herald-doctor can tell from a proxy's page.
        const bool herald_path = path.substr(0, 8) == "/herald/";
        auto h = handlers_.find(std::string(path));
        if (h == handlers_.end() && !herald_path) h = handlers_.find("*");
        if (h != handlers_.end()) {
            http_response res;
            try {
                res = h->second(r);
            } catch (const std::exception& e) {
                res = http_response::error(500, "internal_error", e.what());
            }
            return c->respond(r, std::move(res));
        }
        c->respond(r, http_response::error(404, "not_found",
                                           herald_path ? "no such herald endpoint here (a transport switched off on this server "
                                                         "answers so too: /herald/info lists those that are on)"
                                                       : "no such path on this herald server"));
    }

    // /herald/health, for load balancers: 200 `ready`; 503 `starting` until the backplane has
    // been up once (a server that cannot publish yet takes no clients), 503 `draining` once
    // stop() began. A backplane lost later leaves the server ready: its clients stay connected
    // and resume when it is back, and taking every server out of the balancer at once would
    // turn a Redis outage into a full one. The body says the backplane's state either way.
    http_response health() const {
        const herald::backplane_status b = hub_.backplane_status();
        const char* status = ctx_.draining ? "draining" : !b.started ? "starting" : "ready";
        http_response res = http_response::json(
            std::string_view(status) == "ready" ? 200 : 503,
            nlohmann::json({{"status", status}, {"backplane", {{"name", std::string(hub_.backplane_name())}, {"up", b.up}, {"state", b.state}}}})
                .dump());
        res.headers.emplace_back("Cache-Control", "no-store");
        return res;
    }

    // /herald/metrics: 404 while off, 403 to a peer that is neither an allowed address nor
    // holds the token (server_options::metrics).
    http_response metrics_answer(const net::detail::tcp_connection& c, const http_request& r) const {
        const metrics_options& m = opts_.metrics;
        if (!m.enabled())
            return http_response::error(404, "not_found", "metrics are off: set server_options::metrics (a token or addresses)");
        const bool allowed = net::transport_context::bearer_is(r, m.token) ||
                             std::find(m.allow_addresses.begin(), m.allow_addresses.end(), c.address()) != m.allow_addresses.end();
        if (!allowed) return http_response::error(403, error::forbidden, "metrics: not an allowed scraper");
        detail::metrics_input in;
        in.version = HERALD_VERSION_STRING;
        in.backplane = hub_.backplane_name();
        in.hub = hub_.stats();
        in.backplane_status = hub_.backplane_status();
        in.net = &ctx_.metrics;
        in.connections = connection_count();
        in.draining = ctx_.draining;
        http_response res;
        res.content_type = "text/plain; version=0.0.4; charset=utf-8";
        res.body = detail::metrics_text(in);
        for (const auto& text : metrics_reports_) res.body += text();
        res.headers.emplace_back("Cache-Control", "no-store");
        return res;
    }

    nlohmann::json info() const {
        nlohmann::json protocols = nlohmann::json::array();
        for (int v = opts_.max_protocol_version; v >= 1; --v) protocols.push_back(std::string(protocol::name_of(v)));
        return {{"protocol", std::string(protocol::name_of(opts_.max_protocol_version))},
                {"protocols", std::move(protocols)},
                {"version", HERALD_VERSION_STRING},
                {"transports", ctx_.transports},
                {"heartbeat", opts_.heartbeat.count()},
                {"server", ctx_.server_id},
                {"backplane", std::string(hub_.backplane_name())}};
    }

    // What this server sees of a request: which headers survived the proxies on the way.
    // Credentials (Cookie, Authorization...) show as their length only: never echoed.
    nlohmann::json diagnose(const http_request& r) const {
        nlohmann::json headers = nlohmann::json::object();
        for (const auto& [k, v] : r.headers) headers[k] = detail::shown_header_value(k, v);
        const auto st = hub_.stats();
        return {{"server", info()},
                {"request", {{"method", r.method}, {"target", detail::shown_target(r.target)}, {"version", r.version}, {"remote", r.remote},
                             {"headers", headers}}},
                {"stats", {{"connections", connection_count()}, {"sessions", st.sessions}, {"channels", st.channels},
                           {"published", st.published}, {"deliveries", st.deliveries},
                           {"slow_consumers", st.slow_consumers}}},
                {"backplane", backplane_json(st.refetches)},
                {"draining", ctx_.draining.load()},
                {"components", components()}};
    }

    nlohmann::json components() const {
        nlohmann::json out = nlohmann::json::object();
        for (const auto& [name, report] : diagnose_reports_) out[name] = report();
        return out;
    }

    nlohmann::json backplane_json(std::uint64_t refetches) const {
        const herald::backplane_status b = hub_.backplane_status();
        nlohmann::json j = {{"name", std::string(hub_.backplane_name())}, {"up", b.up}, {"state", b.state},
                            {"reconnects", b.reconnects}, {"errors", b.errors}, {"timeouts", b.timeouts},
                            {"refetches", refetches}};
        if (b.round_trip.count() > 0) j["round_trip_ms"] = static_cast<double>(b.round_trip.count()) / 1000.0;
        if (!b.last_error.empty()) j["last_error"] = b.last_error;
        return j;
    }

    server_options opts_;
    net::detail::connection_limits limits_ = net::detail::connection_limits::of(opts_);
    net::detail::connection_tls tls_;
    std::unique_ptr<asio::io_context> own_ioc_;
    asio::io_context& ioc_;
    herald::hub hub_;
    net::transport_context ctx_;
    std::tuple<typename Transports::options...> transport_options_;
    std::tuple<std::unique_ptr<Transports>...> transports_;
    std::map<std::string, http_handler, std::less<>> handlers_;
    std::map<std::string, std::function<nlohmann::json()>> diagnose_reports_;  // add_diagnose
    std::vector<std::function<std::string()>> metrics_reports_;                // add_metrics
    std::atomic<int> diagnose_held_{0};  // diagnose answers held or streaming now

    std::vector<std::unique_ptr<asio::io_context>> more_iocs_;       // I/O threads 1..n-1 (0 runs ioc_)
    std::vector<std::unique_ptr<net::detail::wake_batch>> wakes_;   // per I/O thread of our own
    std::size_t next_thread_ = 0;                                   // the next accepted connection's
    std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
    std::unique_ptr<asio::steady_timer> tick_timer_;
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
    std::vector<std::thread> threads_;
    std::uint16_t port_ = 0;
    bool started_ = false;
    std::atomic<bool> stopped_{false};

    mutable std::mutex conn_mu_;
    std::unordered_map<net::detail::tcp_connection*, std::weak_ptr<net::detail::tcp_connection>> connections_;
    std::unordered_map<std::string, std::size_t> addresses_;  // open connections per peer address
    std::size_t max_connections_ = SIZE_MAX;                 // opts_.max_connections, within RLIMIT_NOFILE
    int reserve_fd_ = -1;  // /dev/null, given up to answer a client when out of descriptors
};

} // namespace herald
