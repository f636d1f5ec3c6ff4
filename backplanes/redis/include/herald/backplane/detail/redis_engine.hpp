// herald — detail: the Redis backplane's engine. Two hiredis connections (commands; pub/sub)
// driven on one Asio strand, a table of requests awaiting their answer, and the link's state
// machine: connecting -> connected -> reconnecting (backoff) -> connected ...
// With Sentinel, each attempt first asks a sentinel for the primary's address (a short-lived
// connection, `ask_`), and a second one (`watch_`) listens for `+switch-master`.
#pragma once

#include <herald/backplane.hpp>
#include <herald/error.hpp>
#include <herald/frame.hpp>
#include <herald/options.hpp>
#include <herald/protocol.hpp>
#include <herald/backplane/redis_options.hpp>
#include <herald/backplane/detail/redis_asio.hpp>
#include <herald/backplane/detail/redis_scripts.hpp>
#include <herald/detail/random.hpp>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <future>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace herald::detail {

class redis_engine : public std::enable_shared_from_this<redis_engine> {
public:
    using clock = std::chrono::steady_clock;
    using state = backplane::redis_state;

    redis_engine(asio::io_context& io, backplane::redis_options opts)
        : io_(io), strand_(asio::make_strand(io)), timer_(strand_), opts_(std::move(opts)),
          host_(opts_.sentinels.empty() ? opts_.host : std::string()), port_(opts_.port), backoff_(opts_.reconnect_min) {}

    ~redis_engine() {  // only when shutdown never ran (the io_context stopped first)
        close_connections();
        close(watch_);
    }

    redis_engine(const redis_engine&) = delete;
    redis_engine& operator=(const redis_engine&) = delete;

    // ---- called by the hub, from any thread ----------------------------------------------

    /// Throws std::logic_error when a hub attached already: one engine follows one hub's
    /// channels (its SUBSCRIBEs, its positions), so a second hub on a copy of the same
    /// backplane would silently steal the first one's deliveries.
    void attach(backplane_sink& sink) {
        {
            std::lock_guard<std::mutex> lock(sink_mu_);
            if (attached_)
                throw std::logic_error("herald: this Redis backplane is attached to a hub already; "
                                       "give each hub a redis backplane of its own");
            attached_ = true;
            sink_ = &sink;
            limits_ = sink.history_limits();
            presence_opts_ = sink.presence_limits();
            log_ = sink.logger();
        }
        set_state(state::connecting);
        asio::post(strand_, [self = shared_from_this()] {
            self->connect();
            self->tick();
        });
    }

    void detach() {
        {
            std::lock_guard<std::mutex> lock(sink_mu_);
            sink_ = nullptr;
            {
                std::lock_guard<std::mutex> l(mu_);
                stopped_ = true;
            }
            fail_all_locked(error::shutting_down);
        }
        set_state(state::stopped);
        if (strand_.running_in_this_thread()) return shutdown();
        // Close the connections now if the loop runs; else the destructor does.
        if (io_.stopped()) return;
        auto done = std::make_shared<std::promise<void>>();
        std::future<void> closed = done->get_future();
        asio::post(strand_, [self = shared_from_this(), done] {
            self->shutdown();
            done->set_value();
        });
        closed.wait_for(std::chrono::seconds(2));
    }

    void publish(std::string channel, std::string data, publish_handler done) {
        auto r = std::make_shared<request>();
        r->channel = std::move(channel);
        r->data = std::move(data);
        r->on_published = std::move(done);
        submit(std::move(r));
    }

    void fetch(std::string channel, std::optional<position> since, fetch_handler done) {
        auto r = std::make_shared<request>();
        r->channel = std::move(channel);
        r->since = std::move(since);
        r->on_fetched = std::move(done);
        submit(std::move(r));
    }

    // ---- presence (redis_scripts::presence explains the keys) ------------------------------

    /// This server has `user` in `channel`: recorded in Redis now and renewed until
    /// presence_leave (fire and forget: while the link is down, the next link_up records it).
    void presence_join(std::string channel, std::string user, std::string info) {
        asio::post(strand_, [self = shared_from_this(), channel = std::move(channel), user = std::move(user),
                             info = std::move(info)]() mutable {
            auto& here = self->mine_[channel];
            here[user] = info;
            if (self->current() == state::connected) self->presence_run(channel, "join", {user, info});
        });
    }

    void presence_leave(std::string channel, std::string user) {
        asio::post(strand_, [self = shared_from_this(), channel = std::move(channel), user = std::move(user)] {
            auto it = self->mine_.find(channel);
            if (it == self->mine_.end() || !it->second.erase(user)) return;
            if (it->second.empty()) self->mine_.erase(it);
            if (self->current() == state::connected) self->presence_run(channel, "leave", {user});
        });
    }

    /// Reads `channel`'s members over every server; `done` runs once.
    void presence(std::string channel, presence_handler done) {
        auto r = std::make_shared<request>();
        r->channel = std::move(channel);
        r->on_presence = std::move(done);
        r->by_eval = true;
        submit(std::move(r));
    }

    state current() const noexcept { return state_.load(std::memory_order_acquire); }

    bool wait_connected(std::chrono::milliseconds timeout) const {
        std::unique_lock<std::mutex> lock(state_mu_);
        return state_cv_.wait_for(lock, timeout, [&] { return current() == state::connected; });
    }

    backplane::redis_stats stats() const {
        backplane::redis_stats s;
        s.state = current();
        s.connects = connects_.load(std::memory_order_relaxed);
        s.disconnects = disconnects_.load(std::memory_order_relaxed);
        s.timeouts = timeouts_.load(std::memory_order_relaxed);
        s.published = published_.load(std::memory_order_relaxed);
        s.publish_errors = publish_errors_.load(std::memory_order_relaxed);
        s.fetches = fetches_.load(std::memory_order_relaxed);
        s.fetch_errors = fetch_errors_.load(std::memory_order_relaxed);
        s.received = received_.load(std::memory_order_relaxed);
        s.followed = followed_count_.load(std::memory_order_relaxed);
        s.failovers = failovers_.load(std::memory_order_relaxed);
        s.server_errors = server_errors_.load(std::memory_order_relaxed);
        std::lock_guard<std::mutex> lock(mu_);
        s.pending = requests_.size();
        s.last_error = last_error_;
        s.primary = primary_;
        return s;
    }

private:
    /// A publish or a fetch awaiting its answer. Whoever takes it out of `requests_` calls
    /// its handler: the reply, a failure, or detach. So each handler runs exactly once.
    struct request {
        std::string channel;
        std::string data;                // publish
        std::optional<position> since;   // fetch
        publish_handler on_published;    // one of the three is set
        fetch_handler on_fetched;
        presence_handler on_presence;
        bool by_eval = false;            // Redis had lost the script (NOSCRIPT): send its text
        bool is_publish() const { return static_cast<bool>(on_published); }
        bool is_presence() const { return static_cast<bool>(on_presence); }
    };
    using request_ptr = std::shared_ptr<request>;

    struct connection {
        redisAsyncContext* ac = nullptr;
        std::deque<clock::time_point> sent;  // when each unanswered command went out
    };

    // A channel subscribed in Redis. It is `confirmed` once Redis answered the last
    // SUBSCRIBE: from then on, every message published reaches us, so fetches may read.
    struct follow {
        bool confirmed = false;
        bool resync = false;                // it was live before the link dropped
        std::vector<std::uint64_t> waiting; // fetches waiting for the confirmation
    };

    // ---- requests ------------------------------------------------------------------------

    void submit(request_ptr r) {
        std::error_code ec;
        std::uint64_t id = 0;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (stopped_) ec = error::shutting_down;
            else if (current() == state::reconnecting) ec = error::backplane_unavailable;
            else requests_.emplace(id = ++next_id_, r);
        }
        if (ec) return finish(*r, ec);  // known down: at once, on the caller's thread
        asio::post(strand_, [self = shared_from_this(), id] { self->dispatch(id); });
    }

    request_ptr find(std::uint64_t id) const {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = requests_.find(id);
        return it == requests_.end() ? nullptr : it->second;
    }

    request_ptr take(std::uint64_t id) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = requests_.find(id);
        if (it == requests_.end()) return nullptr;
        request_ptr r = std::move(it->second);
        requests_.erase(it);
        return r;
    }

    /// Calls the handler of a request with an error.
    void finish(request& r, std::error_code ec) {
        if (r.is_presence()) {
            fetch_errors_.fetch_add(1, std::memory_order_relaxed);
            r.on_presence(ec, {});
        } else if (r.is_publish()) {
            publish_errors_.fetch_add(1, std::memory_order_relaxed);
            r.on_published(ec, {});
        } else {
            fetch_errors_.fetch_add(1, std::memory_order_relaxed);
            r.on_fetched(ec, {});
        }
    }

    void fail(std::uint64_t id, std::error_code ec) {
        std::lock_guard<std::mutex> lock(sink_mu_);  // no handler once detach returned
        if (request_ptr r = take(id)) finish(*r, ec);
    }

    void fail_all_locked(std::error_code ec) {
        std::unordered_map<std::uint64_t, request_ptr> all;
        {
            std::lock_guard<std::mutex> lock(mu_);
            all.swap(requests_);
        }
        for (auto& [id, r] : all) finish(*r, ec);
    }

    /// On the strand: sends a request, or parks it until the link is up.
    void dispatch(std::uint64_t id) {
        request_ptr r = find(id);
        if (!r) return;
        if (current() == state::connecting) return queued_.push_back(id);
        if (current() != state::connected) return fail(id, error::backplane_unavailable);
        if (r->is_publish()) return send(id, *r);
        if (r->is_presence()) return presence_send(id, r->channel, "read", {});
        follow& f = subscribe(r->channel);
        if (f.confirmed) send(id, *r);
        else f.waiting.push_back(id);
    }

    void send(std::uint64_t id, const request& r) {
        const std::string meta = opts_.key_prefix + "{" + r.channel + "}:meta";
        const std::string log = opts_.key_prefix + "{" + r.channel + "}:log";
        const std::string epoch = detail::make_epoch();
        const std::string ttl = std::to_string(std::max(opts_.key_ttl, limits_.max_age).count());
        const std::string max_messages = std::to_string(std::max<std::size_t>(limits_.max_messages, 1));
        const std::string max_age = std::to_string(limits_.max_age.count());
        const char* script = r.is_publish() ? redis_scripts::publish : redis_scripts::fetch;
        const std::string& sha = r.is_publish() ? publish_sha_ : fetch_sha_;
        std::vector<std::string_view> args{r.by_eval ? "EVAL" : "EVALSHA", r.by_eval ? std::string_view(script) : sha,
                                           "2", meta, log, epoch};
        std::string since_offset;
        const std::string channel = opts_.key_prefix + r.channel;
        if (r.is_publish()) {
            args.insert(args.end(), {r.data, max_messages, max_age, ttl, channel, term_});
            return command(cmd_, &on_reply, id, args);
        }
        args.insert(args.end(), {ttl, term_});
        if (r.since) {
            since_offset = std::to_string(r.since->offset);
            args.insert(args.end(), {r.since->epoch, since_offset, max_messages, max_age});
        }
        command(cmd_, &on_reply, id, args);
    }

    /// Sends one command; a context that refuses it (it is being torn down) fails the request.
    void command(connection& c, redisCallbackFn* fn, std::uint64_t id, const std::vector<std::string_view>& args) {
        if (send_argv(c, fn, id, args)) return;
        if (id > setup_ids) fail(id, error::backplane_unavailable);
        post_link_down("command refused by the connection");
    }

    static bool send_argv(connection& c, redisCallbackFn* fn, std::uintptr_t privdata, const std::vector<std::string_view>& args) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (std::string_view a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        if (!c.ac || redisAsyncCommandArgv(c.ac, fn, reinterpret_cast<void*>(privdata), static_cast<int>(argv.size()),
                                           argv.data(), lens.data()) != REDIS_OK)
            return false;
        c.sent.push_back(clock::now());
        return true;
    }

    // ---- replies (hiredis callbacks, on the strand) ----------------------------------------

    static redis_engine& engine(const redisAsyncContext* ac) { return *static_cast<redis_engine*>(ac->data); }

    connection* connection_of(const redisAsyncContext* ac) {
        if (!ac) return nullptr;
        for (connection* c : {&cmd_, &sub_, &ask_, &watch_})
            if (ac == c->ac) return c;
        return nullptr;
    }

    // privdata of setup commands; requests have ids above setup_ids, 0 is a PING
    static constexpr std::uintptr_t setup_ok = 1, setup_publish_sha = 2, setup_fetch_sha = 3, setup_role = 4,
                                    setup_info = 5, setup_ids = 5;

    static void on_reply(redisAsyncContext* ac, void* reply, void* privdata) {
        engine(ac).reply(ac, static_cast<redisReply*>(reply), reinterpret_cast<std::uintptr_t>(privdata));
    }

    void reply(redisAsyncContext* ac, redisReply* rep, std::uint64_t id) {
        connection* c = connection_of(ac);
        if (!rep) {  // hiredis is freeing the context: the command went out, its outcome is unknown
            lost(ac, "connection lost");
            if (id > setup_ids) fail(id, error::timed_out);
            return;
        }
        if (c && !c->sent.empty()) c->sent.pop_front();
        if (id == 0) return;  // PING
        if (id <= setup_ids) return setup_reply(rep, id);
        if (rep->type == REDIS_REPLY_ERROR && std::strncmp(rep->str, "NOSCRIPT", 8) == 0) {
            if (request_ptr r = find(id); r && !r->by_eval) {
                r->by_eval = true;  // SCRIPT FLUSH or a restart: send the text; Redis caches it again
                return send(id, *r);
            }
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            server_error(std::string_view(rep->str, rep->len), id);
        } else if (error_kind_.size()) {
            note(log_level::info, "redis: commands succeed again on " + where() + " after " + std::to_string(error_count_) +
                                      " error(s) " + error_kind_);
            error_kind_.clear();
            error_count_ = 0;
        }
        std::string fetched;  // a fetch's channel: still followed here once answered?
        {
            std::lock_guard<std::mutex> lock(sink_mu_);
            request_ptr r = take(id);
            if (!r) return;
            if (rep->type == REDIS_REPLY_ERROR) return finish(*r, error::backplane_unavailable);
            if (r->is_presence()) {
                std::vector<presence_member> members;
                if (!read_members(rep, members)) return finish(*r, error::backplane_unavailable);
                return r->on_presence({}, std::move(members));
            }
            if (r->is_publish()) {
                position pos;
                if (!read_position(rep, pos)) return finish(*r, error::backplane_unavailable);
                published_.fetch_add(1, std::memory_order_relaxed);
                return r->on_published({}, std::move(pos));
            }
            fetch_result result;
            if (!read_fetch(rep, r->channel, result)) return finish(*r, error::backplane_unavailable);
            fetches_.fetch_add(1, std::memory_order_relaxed);
            r->on_fetched({}, std::move(result));
            fetched = std::move(r->channel);
        }
        // A fetch nobody here follows once answered (hub::head(), a subscriber gone meanwhile)
        // leaves no SUBSCRIBE behind.
        if (!to_sink([&](backplane_sink& s) { return s.following(fetched); })) unsubscribe(fetched);
    }

    /// An error reply to a request: counted, and logged once per kind of error in a row (OOM
    /// under load would otherwise log once per publish). A primary demoted to a replica
    /// (READONLY) is left: the link is rebuilt, with Sentinel on the new primary.
    void server_error(std::string_view text, std::uint64_t id) {
        server_errors_.fetch_add(1, std::memory_order_relaxed);
        const std::string kind(text.substr(0, std::min(text.find(' '), std::size_t(32))));
        remember_error(std::string(text.substr(0, 200)));
        if (kind != error_kind_) {
            std::string line = "redis: " + std::string(text.substr(0, 200));
            if (request_ptr r = find(id)) line += " (channel " + r->channel + ")";
            if (!error_kind_.empty()) line += "; before it, " + std::to_string(error_count_) + " error(s) " + error_kind_;
            line += "; further ones are counted, not logged";
            note(log_level::error, line);
            error_kind_ = kind;
            error_count_ = 0;
        }
        ++error_count_;
        if (kind == "READONLY") post_link_down(where() + " is read-only (a replica now)");
    }

    static bool is_string(const redisReply* r) { return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS; }

    // {user, info, ...}, sorted here by user
    static bool read_members(const redisReply* rep, std::vector<presence_member>& out) {
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 2 != 0) return false;
        for (std::size_t i = 0; i < rep->elements; i += 2) {
            if (!is_string(rep->element[i]) || !is_string(rep->element[i + 1])) return false;
            out.push_back({std::string(rep->element[i]->str, rep->element[i]->len),
                           std::string(rep->element[i + 1]->str, rep->element[i + 1]->len)});
        }
        std::sort(out.begin(), out.end(), [](const presence_member& a, const presence_member& b) { return a.user < b.user; });
        return true;
    }

    // {epoch, offset}
    static bool read_position(const redisReply* rep, position& pos) {
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 || !is_string(rep->element[0]) ||
            rep->element[1]->type != REDIS_REPLY_INTEGER || rep->element[1]->integer < 0)
            return false;
        pos.epoch.assign(rep->element[0]->str, rep->element[0]->len);
        pos.offset = static_cast<std::uint64_t>(rep->element[1]->integer);
        return true;
    }

    // {epoch, head, recovered, offset, data, ...}
    static bool read_fetch(const redisReply* rep, const std::string& channel, fetch_result& out) {
        if (!read_position(rep, out.head) || rep->elements < 3 || rep->element[2]->type != REDIS_REPLY_INTEGER ||
            (rep->elements - 3) % 2 != 0)
            return false;
        out.recovered = rep->element[2]->integer != 0;
        for (std::size_t i = 3; i < rep->elements; i += 2) {
            const redisReply* off = rep->element[i];
            const redisReply* data = rep->element[i + 1];
            if (off->type != REDIS_REPLY_INTEGER || !is_string(data)) return false;
            out.messages.push_back(protocol::make_message(
                channel, {out.head.epoch, static_cast<std::uint64_t>(off->integer)}, std::string_view(data->str, data->len)));
        }
        return true;
    }

    void setup_reply(const redisReply* rep, std::uintptr_t step) {
        if (rep->type == REDIS_REPLY_ERROR) {
            setup_failed_ = true;
            return post_link_down("Redis refused the connection's setup: " + std::string(rep->str, rep->len));
        }
        if (step == setup_publish_sha) publish_sha_.assign(rep->str, rep->len);
        if (step == setup_fetch_sha) fetch_sha_.assign(rep->str, rep->len);
        if (step == setup_role && !(rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 && is_string(rep->element[0]) &&
                                    std::string_view(rep->element[0]->str, rep->element[0]->len) == "master")) {
            setup_failed_ = true;  // a replica (a sentinel that lies, or a failover under way)
            return post_link_down(where() + " is not a primary (ROLE)");
        }
        if (step == setup_info) {
            term_.clear();
            if (is_string(rep)) {
                const std::string_view info(rep->str, rep->len), key = "master_replid:";
                if (std::size_t at = info.find(key); at != std::string_view::npos) {
                    const std::string_view rest = info.substr(at + key.size());
                    term_ = std::string(rest.substr(0, std::min(rest.find_first_of("\r\n"), std::size_t(64))));
                }
            }
            if (term_.empty()) {
                setup_failed_ = true;
                return post_link_down(where() + " did not tell its replication id (INFO replication)");
            }
        }
        if (--setup_pending_ == 0 && !setup_failed_ && current() != state::connected) link_up();
    }

    static void on_connect(const redisAsyncContext* ac, int status) {
        if (status != REDIS_OK) engine(ac).lost(ac, ac->errstr[0] ? ac->errstr : "connect failed");
    }

    static void on_disconnect(const redisAsyncContext* ac, int status) {
        engine(ac).lost(ac, status == REDIS_OK ? "disconnected" : (ac->errstr[0] ? ac->errstr : "connection lost"));
    }

    /// hiredis frees `ac` once this callback returns: forget it, and rebuild the link.
    void lost(const redisAsyncContext* ac, const std::string& why) {
        connection* c = connection_of(ac);
        if (!c) return;
        c->ac = nullptr;
        c->sent.clear();
        if (c == &watch_) return;  // the tick opens another
        if (c == &ask_) return post_sentinel_failed("sentinel " + sentinel_at(asking_) + ": " + why);
        post_link_down(why);
    }

    // ---- pub/sub ---------------------------------------------------------------------------

    follow& subscribe(const std::string& channel) {
        auto [it, fresh] = followed_.try_emplace(channel);
        if (fresh) {
            followed_count_.store(followed_.size(), std::memory_order_relaxed);
            sub_command("SUBSCRIBE", channel);
        }
        return it->second;
    }

    void unsubscribe(const std::string& channel) {
        auto it = followed_.find(channel);
        if (it == followed_.end() || !it->second.waiting.empty()) return;  // a fetch still needs it
        followed_.erase(it);
        followed_count_.store(followed_.size(), std::memory_order_relaxed);
        sub_command("UNSUBSCRIBE", channel);
    }

    // Counts SUBSCRIBE/UNSUBSCRIBE answers per channel: only the answer to the last one
    // sent confirms a subscription (hiredis delivers them in order).
    void sub_command(const char* verb, const std::string& channel) {
        const std::string name = opts_.key_prefix + channel;
        const char* argv[] = {verb, name.c_str()};
        const std::size_t lens[] = {std::strlen(verb), name.size()};
        if (sub_.ac && redisAsyncCommandArgv(sub_.ac, &on_message, nullptr, 2, argv, lens) == REDIS_OK) {
            ++unanswered_[channel];
            sub_.sent.push_back(clock::now());
        } else {
            post_link_down("subscribe refused by the connection");
        }
    }

    /// Unsubscribes the channels no session here follows any more. Asking and unsubscribing in
    /// one strand turn keeps it safe: a subscribe registered after the question sends its
    /// SUBSCRIBE after this UNSUBSCRIBE.
    void prune() {
        std::vector<std::string> idle;
        for (auto& entry : followed_) {
            const std::string& channel = entry.first;
            if (entry.second.confirmed && !to_sink([&](backplane_sink& s) { return s.following(channel); }))
                idle.push_back(channel);
        }
        for (const std::string& channel : idle) unsubscribe(channel);
    }

    static void on_message(redisAsyncContext* ac, void* reply, void* /*privdata*/) {
        engine(ac).message(ac, static_cast<redisReply*>(reply));
    }

    void message(redisAsyncContext* ac, const redisReply* rep) {
        if (!rep) return lost(ac, "connection lost");
        if (ac == watch_.ac) return sentinel_event(rep);
        if (ac != sub_.ac || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || !is_string(rep->element[0]) ||
            !is_string(rep->element[1]))
            return;
        const std::string_view kind(rep->element[0]->str, rep->element[0]->len);
        std::string_view name(rep->element[1]->str, rep->element[1]->len);
        if (name.substr(0, opts_.key_prefix.size()) != opts_.key_prefix) return;
        const std::string channel(name.substr(opts_.key_prefix.size()));
        if (kind == "message") return received(channel, rep->element[2]);
        if (kind != "subscribe" && kind != "unsubscribe") return;
        if (!sub_.sent.empty()) sub_.sent.pop_front();
        auto n = unanswered_.find(channel);
        if (n == unanswered_.end() || --n->second > 0) return;
        unanswered_.erase(n);
        auto it = followed_.find(channel);
        if (it == followed_.end() || it->second.confirmed) return;
        it->second.confirmed = true;
        for (std::uint64_t id : std::exchange(it->second.waiting, {}))
            if (request_ptr r = find(id)) send(id, *r);
        if (std::exchange(it->second.resync, false) && !to_sink([&](backplane_sink& s) { return s.resync(channel); }))
            unsubscribe(channel);
    }

    // "<epoch> <offset> <data>", as the publish script sends it; or a presence change
    void received(const std::string& channel, const redisReply* payload) {
        if (!is_string(payload) || !followed_.count(channel)) return;
        const std::string_view text(payload->str, payload->len);
        if (!text.empty() && text[0] == '!') return presence_received(channel, text);
        const std::size_t a = text.find(' ');
        const std::size_t b = a == std::string_view::npos ? a : text.find(' ', a + 1);
        if (b == std::string_view::npos || a == 0 || b == a + 1) return;
        position pos{std::string(text.substr(0, a)), 0};
        for (char c : text.substr(a + 1, b - a - 1)) {
            if (c < '0' || c > '9') return;
            pos.offset = pos.offset * 10 + static_cast<std::uint64_t>(c - '0');
        }
        received_.fetch_add(1, std::memory_order_relaxed);
        if (!to_sink([&](backplane_sink& s) { return s.deliver(channel, pos, text.substr(b + 1)); })) unsubscribe(channel);
    }

    // "!j<len> <user><info>" or "!l<len> <user>" (redis_scripts::presence)
    void presence_received(const std::string& channel, std::string_view text) {
        if (text.size() < 4 || (text[1] != 'j' && text[1] != 'l')) return;
        const std::size_t sp = text.find(' ', 2);
        if (sp == std::string_view::npos || sp == 2) return;
        std::size_t len = 0;
        for (char c : text.substr(2, sp - 2)) {
            if (c < '0' || c > '9' || len > text.size()) return;
            len = len * 10 + static_cast<std::size_t>(c - '0');
        }
        if (text.size() - sp - 1 < len) return;
        presence_event e;
        e.joined = text[1] == 'j';
        e.member.user = std::string(text.substr(sp + 1, len));
        if (e.joined) e.member.info = std::string(text.substr(sp + 1 + len));
        to_sink([&](backplane_sink& s) {
            s.presence_changed(channel, e);
            return true;
        });
    }

    // On the strand: runs the presence script on `channel` for `op`, its answer unread (a
    // lost one is made good by the next renewal, or by the expiry of the entries).
    void presence_run(const std::string& channel, std::string_view op, std::vector<std::string> args) {
        presence_send(0, channel, op, std::move(args));
    }

    void presence_send(std::uint64_t id, const std::string& channel, std::string_view op, std::vector<std::string> args) {
        const std::string base = opts_.key_prefix + "{" + channel + "}:presence";
        const std::string info = base + "-info", count = base + "-count";
        const std::string pubsub = opts_.key_prefix + channel;
        const std::string ttl = std::to_string(std::max<long long>(presence_opts_.ttl.count(), 1));
        const std::string max = std::to_string(presence_opts_.max_members);
        std::vector<std::string_view> argv{"EVAL", redis_scripts::presence, "3", base, info, count, pubsub, ttl, server_id_, max, op};
        for (const std::string& a : args) argv.push_back(a);
        command(cmd_, &on_reply, id, argv);
    }

    // On the strand, connected: renews this server's entries, or looks for expired ones.
    void presence_tick(clock::time_point now) {
        if (now - last_presence_renewal_ >= presence_opts_.refresh_interval) {
            last_presence_renewal_ = now;
            presence_renew();
        } else if (now - last_presence_sweep_ >= presence_opts_.sweep_interval) {
            last_presence_sweep_ = now;
            for (const auto& entry : mine_) presence_run(entry.first, "sweep", {});
        }
    }

    void presence_renew() {
        for (const auto& [channel, users] : mine_) {
            std::vector<std::string> args;
            for (const auto& [user, info] : users) {
                args.push_back(user);
                args.push_back(info);
            }
            presence_run(channel, "join", std::move(args));
        }
    }

    /// Calls into the hub unless it detached. @returns what `f` returns, true when detached.
    template <class F>
    bool to_sink(F&& f) {
        std::lock_guard<std::mutex> lock(sink_mu_);
        return sink_ ? f(*sink_) : true;
    }

    // ---- the link ------------------------------------------------------------------------

    bool open(connection& c, const std::string& host, std::uint16_t port) {
        redisAsyncContext* ac = redisAsyncConnect(host.c_str(), port);
        if (!ac) return false;
        if (ac->err) {
            remember_error(ac->errstr);
            redisAsyncFree(ac);
            return false;
        }
        ac->data = this;
        redisEnableKeepAlive(&ac->c);
        redis_asio_adapter::attach(ac, strand_);
        redisAsyncSetConnectCallback(ac, &on_connect);
        redisAsyncSetDisconnectCallback(ac, &on_disconnect);
        c.ac = ac;
        c.sent.clear();
        return true;
    }

    void setup(connection& c, std::uintptr_t step, const std::vector<std::string_view>& args) {
        ++setup_pending_;
        command(c, &on_reply, step, args);
    }

    void connect() {
        if (current() == state::stopped) return;
        ++attempt_;
        attempt_started_ = clock::now();
        setup_pending_ = 0;
        setup_failed_ = false;
        if (opts_.sentinels.empty()) return connect_primary();
        asked_ = 0;
        ask_sentinel();
    }

    void connect_primary() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            primary_ = where();
        }
        if (!open(cmd_, host_, port_) || !open(sub_, host_, port_)) return link_down("cannot open a connection");
        for (connection* c : {&cmd_, &sub_}) {
            if (!opts_.password.empty() && opts_.username.empty()) setup(*c, setup_ok, {"AUTH", opts_.password});
            if (!opts_.password.empty() && !opts_.username.empty())
                setup(*c, setup_ok, {"AUTH", opts_.username, opts_.password});
        }
        const std::string db = std::to_string(opts_.db);
        if (opts_.db != 0) setup(cmd_, setup_ok, {"SELECT", db});
        setup(cmd_, setup_role, {"ROLE"});  // never write to a replica, whoever named it
        setup(cmd_, setup_info, {"INFO", "replication"});  // the term: see redis_scripts.hpp
        setup(cmd_, setup_publish_sha, {"SCRIPT", "LOAD", redis_scripts::publish});
        setup(cmd_, setup_fetch_sha, {"SCRIPT", "LOAD", redis_scripts::fetch});
        setup(sub_, setup_ok, {"PING"});  // before SUBSCRIBE: proves the connection answers
    }

    void link_up() {
        backoff_ = opts_.reconnect_min;
        failures_ = 0;
        connects_.fetch_add(1, std::memory_order_relaxed);
        if (!last_primary_.empty() && last_primary_ != where()) {
            failovers_.fetch_add(1, std::memory_order_relaxed);
            note(log_level::warning, "redis: now on primary " + where() + " (was " + last_primary_ + ")");
        }
        last_primary_ = where();
        named_ = false;
        set_state(state::connected);
        note(log_level::info, "redis: connected to " + where());
        for (auto& [channel, f] : followed_) sub_command("SUBSCRIBE", channel);
        for (std::uint64_t id : std::exchange(queued_, {})) dispatch(id);
        last_presence_renewal_ = clock::now();
        presence_renew();  // a new Redis (failover, restart) learns this server's members again
    }

    void post_link_down(std::string why) {
        if (link_down_posted_) return;
        link_down_posted_ = true;
        asio::post(strand_, [self = shared_from_this(), why = std::move(why)] {
            self->link_down_posted_ = false;
            self->link_down(why);
        });
    }

    /// On the strand, outside hiredis callbacks: drops both connections, fails every request
    /// awaiting an answer, and schedules the next attempt.
    void link_down(const std::string& why) {
        if (current() == state::stopped) return;
        const bool was_up = current() == state::connected;
        set_state(state::reconnecting);
        remember_error(why);
        if (was_up) disconnects_.fetch_add(1, std::memory_order_relaxed);
        // That sentinel did not answer in time, or named a server that is down or not a
        // primary (it lies, or it is behind): the next one, next time.
        if (ask_.ac || std::exchange(named_, false)) ++asking_;
        close_connections();
        for (auto& [channel, f] : followed_) {
            f.resync = f.resync || f.confirmed;
            f.confirmed = false;
            f.waiting.clear();
        }
        queued_.clear();
        {
            std::lock_guard<std::mutex> lock(sink_mu_);
            fail_all_locked(error::backplane_unavailable);
        }
        const auto jitter = backoff_ * static_cast<long>(detail::unique64() % 500) / 1000;
        next_attempt_ = clock::now() + backoff_ - jitter;
        if (std::exchange(switched_, false)) {  // a sentinel named a new primary: go at once
            backoff_ = opts_.reconnect_min;
            next_attempt_ = clock::now();
        }
        if (was_up || failures_++ == 0)
            note(log_level::warning, "redis: " + std::string(was_up ? "lost " : "cannot reach ") + where() + " (" + why +
                                         "); retrying in " + std::to_string((backoff_ - jitter).count()) + " ms");
        backoff_ = std::min(backoff_ * 2, opts_.reconnect_max);
    }

    void close_connections() {
        for (connection* c : {&cmd_, &sub_, &ask_}) close(*c);
        unanswered_.clear();
    }

    static void close(connection& c) {
        c.sent.clear();
        if (redisAsyncContext* ac = std::exchange(c.ac, nullptr)) redisAsyncFree(ac);  // callbacks get null replies
    }

    /// Closes a connection from within one of its callbacks: hiredis frees it after.
    void retire(connection& c) {
        c.sent.clear();
        if (redisAsyncContext* ac = std::exchange(c.ac, nullptr))
            asio::post(strand_, [self = shared_from_this(), ac] { redisAsyncFree(ac); });
    }

    void shutdown() {
        timer_.cancel();
        close_connections();
        close(watch_);
        followed_.clear();
        followed_count_.store(0, std::memory_order_relaxed);
        mine_.clear();  // Redis drops them at their expiry (presence_options::ttl)
    }

    /// Every 50 ms on the strand: timeouts, keep-alive, reconnection.
    void tick() {
        if (current() == state::stopped) return;
        const auto now = clock::now();
        auto overdue = [&](const connection& c) { return !c.sent.empty() && now - c.sent.front() > opts_.command_timeout; };
        switch (current()) {
        case state::connecting:
            if (now - attempt_started_ > opts_.connect_timeout) link_down("no connection in " + ms(opts_.connect_timeout));
            break;
        case state::connected:
            if (overdue(cmd_) || overdue(sub_)) {
                timeouts_.fetch_add(1, std::memory_order_relaxed);
                link_down("no answer in " + ms(opts_.command_timeout));
            } else if (cmd_.sent.empty() && now - last_ping_ > opts_.ping_interval) {
                last_ping_ = now;
                command(cmd_, &on_reply, 0, {"PING"});
            }
            if (now - last_prune_ > opts_.prune_interval) {
                last_prune_ = now;
                prune();
            }
            if (!mine_.empty()) presence_tick(now);
            break;
        case state::reconnecting:
            if (cmd_.ac || sub_.ac || ask_.ac) {  // an attempt is under way
                if (now - attempt_started_ > opts_.connect_timeout || overdue(cmd_) || overdue(sub_) || overdue(ask_))
                    link_down("no connection in " + ms(opts_.connect_timeout));
            } else if (now >= next_attempt_) {
                connect();
            }
            break;
        case state::stopped: return;
        }
        watch_sentinels(now);
        timer_.expires_after(std::chrono::milliseconds(50));
        timer_.async_wait([self = shared_from_this()](std::error_code ec) {
            if (!ec) self->tick();
        });
    }

    void set_state(state s) {
        {
            std::lock_guard<std::mutex> lock(state_mu_);
            if (detached_ && s != state::stopped) return;  // the strand may still be finishing
            detached_ = detached_ || (s == state::stopped && current() != state::stopped);
            state_.store(s, std::memory_order_release);
        }
        state_cv_.notify_all();
    }

    void remember_error(const std::string& why) {
        std::lock_guard<std::mutex> lock(mu_);
        last_error_ = why;
    }

    void note(log_level level, const std::string& text) const {
        if (log_) log_(level, text);
    }

    std::string where() const {
        return host_.empty() ? "the primary of " + opts_.master_name : host_ + ":" + std::to_string(port_);
    }

    // ---- Sentinel --------------------------------------------------------------------------

    // privdata of sentinel commands
    static constexpr std::uintptr_t sentinel_auth = 1, sentinel_ask = 2;

    std::string sentinel_at(std::size_t i) const {
        return opts_.sentinels.empty() ? std::string() : opts_.sentinels[i % opts_.sentinels.size()];
    }

    /// Asks the sentinel `asking_` for the primary's address.
    void ask_sentinel() {
        const std::string s = sentinel_at(asking_);
        std::string host;
        std::uint16_t port = 0;
        try {
            backplane::redis_options::split_address(s, host, port);
        } catch (const std::invalid_argument&) {
        }
        if (port == 0) return sentinel_failed("sentinel " + s + ": not host:port");
        if (!open(ask_, host, port)) return sentinel_failed("sentinel " + s + ": cannot open a connection");
        if ((!opts_.sentinel_password.empty() && !send_argv(ask_, &on_sentinel_reply, sentinel_auth, {"AUTH", opts_.sentinel_password})) ||
            !send_argv(ask_, &on_sentinel_reply, sentinel_ask, {"SENTINEL", "get-master-addr-by-name", opts_.master_name}))
            return sentinel_failed("sentinel " + s + ": command refused by the connection");
    }

    /// That sentinel did not name the primary: the next one at once, or, when each was asked
    /// in this attempt, the link is down (and retried with backoff).
    void sentinel_failed(const std::string& why) {
        retire(ask_);
        remember_error(why);
        ++asking_;
        if (++asked_ < opts_.sentinels.size()) return ask_sentinel();
        link_down("no sentinel named the primary of " + opts_.master_name + " (last: " + why + ")");
    }

    void post_sentinel_failed(std::string why) {
        asio::post(strand_, [self = shared_from_this(), why = std::move(why), attempt = attempt_] {
            if (attempt == self->attempt_ && self->current() != state::stopped) self->sentinel_failed(why);
        });
    }

    static void on_sentinel_reply(redisAsyncContext* ac, void* reply, void* privdata) {
        engine(ac).sentinel_reply(ac, static_cast<redisReply*>(reply), reinterpret_cast<std::uintptr_t>(privdata));
    }

    void sentinel_reply(redisAsyncContext* ac, const redisReply* rep, std::uintptr_t step) {
        if (ac == watch_.ac) {  // the watcher's AUTH
            if (!rep || rep->type == REDIS_REPLY_ERROR) retire(watch_);
            return;
        }
        if (ac != ask_.ac) return;
        if (!rep) return lost(ac, "connection lost");
        if (!ask_.sent.empty()) ask_.sent.pop_front();
        const std::string who = "sentinel " + sentinel_at(asking_);
        if (rep->type == REDIS_REPLY_ERROR) return post_sentinel_failed(who + ": " + std::string(rep->str, std::min<std::size_t>(rep->len, 200)));
        if (step == sentinel_auth) return;
        // {host, port}; nil when it does not know the name
        std::string host;
        std::uint16_t port = 0;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 && is_string(rep->element[0]) && is_string(rep->element[1]) &&
            rep->element[0]->len > 0 && rep->element[0]->len <= 255 && rep->element[1]->len <= 5) {
            try {
                backplane::redis_options::split_address(std::string(rep->element[0]->str, rep->element[0]->len) + ":" +
                                                            std::string(rep->element[1]->str, rep->element[1]->len),
                                                        host, port);
            } catch (const std::invalid_argument&) {
                port = 0;
            }
        }
        if (port == 0) return post_sentinel_failed(who + " names no primary for " + opts_.master_name);
        asio::post(strand_, [self = shared_from_this(), host, port, attempt = attempt_] {
            if (attempt != self->attempt_ || self->current() == state::stopped || !self->ask_.ac) return;
            self->retire(self->ask_);
            self->named_ = true;
            self->host_ = host;
            self->port_ = port;
            self->connect_primary();
        });
    }

    /// Keeps one connection to a sentinel subscribed to `+switch-master`, so that a failover
    /// is followed at once rather than when the old primary's connections fail.
    void watch_sentinels(clock::time_point now) {
        if (watch_.ac && !watch_confirmed_ && now - watch_opened_ > opts_.connect_timeout) close(watch_);  // it hangs
        if (opts_.sentinels.empty() || watch_.ac || now < next_watch_) return;
        next_watch_ = now + std::max(opts_.reconnect_min, std::chrono::milliseconds(500));
        std::string host;
        std::uint16_t port = 0;
        try {
            backplane::redis_options::split_address(sentinel_at(watching_++), host, port);
        } catch (const std::invalid_argument&) {
        }
        if (port == 0 || !open(watch_, host, port)) return;
        watch_confirmed_ = false;
        watch_opened_ = now;
        if ((!opts_.sentinel_password.empty() && !send_argv(watch_, &on_sentinel_reply, 0, {"AUTH", opts_.sentinel_password})) ||
            !send_argv(watch_, &on_message, 0, {"SUBSCRIBE", "+switch-master"}))
            close(watch_);
        watch_.sent.clear();  // no answer is awaited on a subscription
    }

    // "+switch-master" "<name> <old ip> <old port> <new ip> <new port>"
    void sentinel_event(const redisReply* rep) {
        const bool shaped = rep->type == REDIS_REPLY_ARRAY && rep->elements >= 3 && is_string(rep->element[0]) &&
                            is_string(rep->element[1]);
        const std::string_view kind = shaped ? std::string_view(rep->element[0]->str, rep->element[0]->len) : "";
        if (!watch_confirmed_) {  // a sentinel confirms the subscription first; anything else: the next one
            if (kind == "subscribe" && std::string_view(rep->element[1]->str, rep->element[1]->len) == "+switch-master")
                watch_confirmed_ = true;
            else
                retire(watch_);
            return;
        }
        if (kind != "message" || !is_string(rep->element[2]) || rep->element[2]->len > 1024) return;
        std::vector<std::string_view> words;
        std::string_view text(rep->element[2]->str, rep->element[2]->len);
        while (!text.empty() && words.size() < 6) {
            const std::size_t space = text.find(' ');
            words.push_back(text.substr(0, space));
            text = space == std::string_view::npos ? std::string_view() : text.substr(space + 1);
        }
        if (words.size() != 5 || words[0] != opts_.master_name) return;
        const std::string to = std::string(words[3]) + ":" + std::string(words[4]);
        if (current() == state::connected && to == where()) return;
        note(log_level::warning, "redis: a sentinel reports that the primary of " + opts_.master_name + " moved to " + to);
        switched_ = true;
        if (current() == state::connected) post_link_down("the primary moved to " + to);
        else next_attempt_ = clock::now();
    }
    static std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

    asio::io_context& io_;
    redis_strand strand_;
    asio::steady_timer timer_;
    const backplane::redis_options opts_;

    // the hub; handlers run under sink_mu_, so that none runs once detach returned
    std::mutex sink_mu_;
    backplane_sink* sink_ = nullptr;
    bool attached_ = false;  // once, for the engine's life (guarded by sink_mu_)
    history_options limits_;
    presence_options presence_opts_;
    log_function log_;

    // shared with the hub's threads
    mutable std::mutex mu_;
    std::unordered_map<std::uint64_t, request_ptr> requests_;
    std::uint64_t next_id_ = setup_ids;
    bool stopped_ = false;
    std::string last_error_;
    std::string primary_;
    mutable std::mutex state_mu_;
    mutable std::condition_variable state_cv_;
    std::atomic<state> state_{state::stopped};
    bool detached_ = false;  // under state_mu_
    std::atomic<std::uint64_t> connects_{0}, disconnects_{0}, timeouts_{0}, published_{0}, publish_errors_{0},
        fetches_{0}, fetch_errors_{0}, received_{0}, failovers_{0}, server_errors_{0};
    std::atomic<std::size_t> followed_count_{0};

    // the strand's own
    connection cmd_, sub_;
    connection ask_, watch_;              // Sentinel: the question, the watch for +switch-master
    std::string host_;                    // the Redis in use: from the options, or named by a sentinel
    std::uint16_t port_;
    std::string last_primary_;            // where the last link was up
    std::string term_;                    // the primary's master_replid (redis_scripts.hpp)
    std::uint64_t attempt_ = 0;           // connection attempts, to ignore late answers of old ones
    std::size_t asking_ = 0, asked_ = 0;  // the sentinel asked now; how many in this attempt
    std::size_t watching_ = 0;            // the sentinel to watch next
    bool switched_ = false;               // a sentinel named a new primary: reconnect at once
    bool named_ = false;                  // this attempt's primary was named by sentinel asking_
    clock::time_point next_watch_, watch_opened_;
    bool watch_confirmed_ = false;        // the watched sentinel confirmed its SUBSCRIBE
    std::string error_kind_;              // the error Redis answered last (its first word), until a success
    std::uint64_t error_count_ = 0;       // how many in a row
    std::string publish_sha_, fetch_sha_;
    int setup_pending_ = 0;
    bool setup_failed_ = false;
    std::unordered_map<std::string, follow> followed_;
    std::unordered_map<std::string, int> unanswered_;
    std::vector<std::uint64_t> queued_;  // dispatched while connecting
    bool link_down_posted_ = false;
    std::chrono::milliseconds backoff_;
    int failures_ = 0;
    clock::time_point attempt_started_, next_attempt_, last_ping_, last_prune_;
    // presence: this server's members, by channel then user (their info); its name in Redis
    std::unordered_map<std::string, std::map<std::string, std::string>> mine_;
    const std::string server_id_ = detail::make_epoch();
    clock::time_point last_presence_renewal_, last_presence_sweep_;
};

} // namespace herald::detail
