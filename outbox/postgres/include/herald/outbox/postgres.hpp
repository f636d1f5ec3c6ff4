// herald — the PostgreSQL transactional outbox: the CMS writes a notification into a table in
// the same transaction as the change; herald publishes what was committed, exactly once.
//
//   herald::outbox::postgres outbox(server.io_context(), server.hub(), {"postgresql://cms@db/cms"});
//   outbox.start();
//
// The CMS, in its transaction:  INSERT INTO herald_outbox (channel, data) VALUES ($1, $2);
// The table: postgres::schema() (README and outbox/postgres/README.md show it).
#pragma once

#include <herald/hub.hpp>
#include <herald/detail/prometheus_text.hpp>
#include <herald/outbox/detail/pg_connection.hpp>

#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace herald::outbox {

/// Where a consumer is.
enum class postgres_state {
    stopped,      ///< not started, or stopped
    connecting,   ///< connecting (first time or after a loss)
    standby,      ///< connected; another server holds the outbox lock and delivers
    leading,      ///< connected, holds the lock, delivers
    unreachable,  ///< PostgreSQL refused or dropped the connection; retrying with backoff
};

inline const char* to_string(postgres_state s) noexcept {
    switch (s) {
    case postgres_state::stopped: return "stopped";
    case postgres_state::connecting: return "connecting";
    case postgres_state::standby: return "standby";
    case postgres_state::leading: return "leading";
    case postgres_state::unreachable: return "unreachable";
    }
    return "?";
}

/// Counters of one consumer, for diagnose, metrics and tests (monotonic unless noted).
struct postgres_stats {
    postgres_state state = postgres_state::stopped;  ///< now
    std::uint64_t delivered = 0;          ///< rows published (confirmed by the hub) and removed
    std::uint64_t duplicates_skipped = 0; ///< rows found already in their channel after a crash or a lost connection
    std::uint64_t dead_lettered = 0;      ///< poison rows moved to the dead-letter table
    std::uint64_t publish_failures = 0;   ///< publishes the backplane refused or timed out (the row stays, is retried)
    std::uint64_t batches = 0;            ///< SELECTs of the outbox
    std::uint64_t notifies = 0;           ///< NOTIFY wake-ups received
    std::uint64_t connects = 0;           ///< connections made (the first included)
    std::uint64_t connection_losses = 0;  ///< connects that failed and connections lost
    std::string last_error;               ///< the latest PostgreSQL or publish error ("" none yet)
};

/// The counters as JSON (nlohmann's to_json), for /herald/diagnose and metrics.
inline void to_json(nlohmann::json& j, const postgres_stats& s) {
    j = {{"state", to_string(s.state)}, {"delivered", s.delivered}, {"duplicates_skipped", s.duplicates_skipped},
         {"dead_lettered", s.dead_lettered}, {"publish_failures", s.publish_failures}, {"batches", s.batches},
         {"notifies", s.notifies}, {"connects", s.connects}, {"connection_losses", s.connection_losses},
         {"last_error", s.last_error}};
}

/// The counters in Prometheus' text format (basic_server::add_metrics: /herald/metrics).
inline std::string metrics_text(const postgres_stats& s) {
    herald::detail::prometheus_text p;
    const auto u = [](std::uint64_t v) { return static_cast<double>(v); };
    p.single("herald_outbox_connected", "gauge", "1 while the outbox consumer is connected to PostgreSQL (leading or standing by).",
             s.state == postgres_state::leading || s.state == postgres_state::standby ? 1 : 0);
    p.single("herald_outbox_leading", "gauge", "1 while this server holds the outbox lock and delivers.", s.state == postgres_state::leading ? 1 : 0);
    p.single("herald_outbox_delivered_rows_total", "counter", "Outbox rows published (confirmed by the hub) and removed.", u(s.delivered));
    p.single("herald_outbox_duplicates_skipped_total", "counter", "Rows found already in their channel after a crash or a lost connection.",
             u(s.duplicates_skipped));
    p.single("herald_outbox_dead_lettered_rows_total", "counter", "Poison rows moved to the dead-letter table.", u(s.dead_lettered));
    p.single("herald_outbox_publish_failures_total", "counter", "Publishes the backplane refused or timed out (the row stays and is retried).",
             u(s.publish_failures));
    p.single("herald_outbox_batches_total", "counter", "Reads of the outbox table.", u(s.batches));
    p.single("herald_outbox_notifies_total", "counter", "NOTIFY wake-ups received.", u(s.notifies));
    p.single("herald_outbox_connects_total", "counter", "Connections to PostgreSQL made (the first included).", u(s.connects));
    p.single("herald_outbox_connection_losses_total", "counter", "Connections to PostgreSQL that failed or were lost.", u(s.connection_losses));
    return p.take();
}

/// How a herald::outbox::postgres connects and reads (postgres::options).
struct postgres_options {
    /// libpq connection string or URI (`host=... dbname=...`, `postgresql://...`).
    std::string conninfo;
    /// The outbox and dead-letter tables; `[schema.]name`, letters, digits and `_`.
    std::string table = "herald_outbox";
    std::string dead_letter_table = "herald_outbox_dead";
    /// Run schema() at each connect (CREATE ... IF NOT EXISTS), if the role may.
    bool create_schema = false;
    /// The session advisory lock that elects the leader (schema() takes lock_key + 1).
    std::int64_t lock_key = 0x6865726c64;  // "herld"
    /// Rows per SELECT: what one batch holds in memory is at most this many rows of at most
    /// hub_options::max_payload_bytes.
    std::size_t batch = 256;
    /// Poll while idle, in case a NOTIFY was missed (reconnects, a trigger dropped).
    std::chrono::milliseconds poll_interval{2000};
    /// How often a standby asks for the lock.
    std::chrono::milliseconds standby_retry{1000};
    std::chrono::milliseconds reconnect_min{100}, reconnect_max{5000};

    static postgres_options at(std::string conninfo) {
        postgres_options o;
        o.conninfo = std::move(conninfo);
        return o;
    }
};

/// Delivers the rows committed into a PostgreSQL outbox table through a hub.
///
/// **How.** One libpq connection, asynchronous, on the caller's `asio::io_context` (its
/// socket is watched by the loop: no thread, no polling while idle). The connection holds a
/// session advisory lock (`pg_try_advisory_lock(options::lock_key)`): the server that holds it
/// leads and delivers, the others stand by and try again every `standby_retry`; when the
/// leader dies PostgreSQL ends its session, frees the lock, and a standby takes over. One
/// reader means a channel's rows are published in id order (among rows that are committed:
/// a row whose transaction commits after a higher id was delivered comes after it; it is
/// never lost, since rows are removed, not passed by a watermark). The leader `LISTEN`s; an
/// insert trigger `NOTIFY`s at commit, and a poll every `poll_interval` covers a lost notify.
/// A rolled-back insert is never seen: only committed rows are read.
///
/// **A batch.** `SELECT id, channel, data, attempts ... ORDER BY id LIMIT batch`; then
/// `UPDATE ... SET attempts = attempts + 1` of those rows, committed *before* any publish;
/// then each row is published in order, waiting for the hub's confirmation; the confirmed
/// rows are deleted, the poison ones moved to the dead-letter table with their reason.
///
/// **Exactly once into a channel.** The message a row becomes is its `data` (a JSON object)
/// with the row id as first member: `{"outbox_id":17,...}`. A crash (or a lost connection)
/// between a confirmed publish and the DELETE leaves the row in the table with
/// `attempts > 0`; whoever reads it next knows that it may have been published, reads the
/// channel's last messages through the hub (hub::async_fetch: Redis keeps them across a herald
/// crash) and skips the row if a message starts with its `{"outbox_id":17`. Rows with
/// `attempts = 0` were never handed to the hub and are published without that look. A leader
/// starts no batch while a publish of its own is still under way, so it never re-reads a row
/// whose publish may yet land. Limits, documented: the look covers what the channel's history
/// holds, at most its last 1024 messages (a channel whose history was lost got a new epoch,
/// and its subscribers resync anyway); with the local backplane a herald crash loses the channels with the process (new
/// epochs, clients resync) and the row is delivered in the new stream; and a leader cut off
/// from PostgreSQL with a publish pending for longer than `standby_retry` could see a standby
/// take over and publish the row too.
///
/// **Poison rows.** A row the hub refuses (invalid channel, data that is not a JSON object or
/// not JSON, larger than hub_options::max_payload_bytes — read without its data) is moved to
/// the dead-letter table with the reason, logged, counted; the rows behind it go on.
///
/// **Faults.** PostgreSQL down at start, restarted, or the network cut: the consumer logs the
/// change of state once (through the hub's log function), counts it, reconnects with
/// exponential backoff (`reconnect_min` to `reconnect_max`, jittered) and catches up; herald
/// serves its clients meanwhile. A publish the backplane refuses (Redis down) leaves the row
/// in the table; the batch stops there (later rows wait, so a channel keeps its order) and is
/// retried with the same backoff.
///
/// Thread safety: start(), stop(), stats() and state() from any thread. The io_context and
/// the hub must outlive the consumer.
class postgres {
public:
    using options = postgres_options;

    /// The tables and the NOTIFY trigger (idempotent: `IF NOT EXISTS`), for `o`'s table names.
    static std::string schema(const options& o = {}) {
        const std::string t = checked_name(o.table), d = checked_name(o.dead_letter_table), f = t + "_notify";
        return "CREATE TABLE IF NOT EXISTS " + t + " (\n"
               "  id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
               "  channel  text NOT NULL,\n"
               "  data     text NOT NULL,              -- one JSON object\n"
               "  attempts integer NOT NULL DEFAULT 0, -- herald: > 0 once handed to the hub\n"
               "  created  timestamptz NOT NULL DEFAULT now()\n);\n"
               "CREATE TABLE IF NOT EXISTS " + d + " (\n"
               "  id bigint PRIMARY KEY, channel text, data text, attempts integer,\n"
               "  reason text NOT NULL, failed_at timestamptz NOT NULL DEFAULT now()\n);\n"
               "CREATE OR REPLACE FUNCTION " + f + "() RETURNS trigger LANGUAGE plpgsql AS\n"
               "  $$BEGIN PERFORM pg_notify('" + listen_channel(o) + "', ''); RETURN NULL; END$$;\n"
               "DROP TRIGGER IF EXISTS herald_outbox_notify ON " + t + ";\n"
               "CREATE TRIGGER herald_outbox_notify AFTER INSERT ON " + t + "\n"
               "  FOR EACH STATEMENT EXECUTE FUNCTION " + f + "();\n";
    }

    /// A consumer of `o.table` that publishes through `h`, on `ioc`. It does nothing before
    /// start(). @throws std::invalid_argument for a table name that is not `[schema.]name`.
    postgres(asio::io_context& ioc, hub& h, options o) : engine_(std::make_shared<engine>(ioc, h, std::move(o))) {}

    /// stop()s.
    ~postgres() { stop(); }
    postgres(const postgres&) = delete;
    postgres& operator=(const postgres&) = delete;

    /// Connects and delivers, in the background of the io_context. Idempotent.
    void start() {
        engine_->started = true;
        asio::post(engine_->strand, [e = engine_] { e->start(); });
    }

    /// Ends the connection (releasing the lock: a standby takes over). A publish under way
    /// completes in the hub; its row stays in the table with `attempts > 0` and the next
    /// reader looks before publishing it. Waits for the loop, when it runs, up to 5 s.
    void stop() {
        auto e = engine_;
        if (!e->started) return;  // never started: nothing runs
        if (e->strand.running_in_this_thread() || e->ioc.stopped()) return e->shutdown();
        auto done = std::make_shared<std::promise<void>>();
        auto f = done->get_future();
        asio::post(e->strand, [e, done] {
            e->shutdown();
            done->set_value();
        });
        f.wait_for(std::chrono::seconds(5));
    }

    postgres_stats stats() const {
        std::lock_guard<std::mutex> lock(engine_->mu);
        return engine_->stats;
    }
    postgres_state state() const { return stats().state; }

private:
    static std::string checked_name(const std::string& n) {
        bool ok = !n.empty() && n.size() < 120 && n.front() != '.' && n.back() != '.' && std::count(n.begin(), n.end(), '.') <= 1;
        for (char c : n) ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.');
        if (!ok) throw std::invalid_argument("herald::outbox::postgres: table name '" + n + "' is not [schema.]name");
        return n;
    }
    // The NOTIFY channel: the table's name, so that two outboxes in one database do not wake each other.
    static std::string listen_channel(const options& o) {
        std::string c = o.table;
        std::replace(c.begin(), c.end(), '.', '_');
        return c;
    }

    /// A PostgreSQL array literal of text values: {"a","b\"c"}.
    static std::string text_array(const std::vector<std::string>& v) {
        std::string out = "{";
        for (std::size_t i = 0; i < v.size(); ++i) {
            out += i ? ",\"" : "\"";
            for (char c : v[i]) {
                if (c == '"' || c == '\\') out += '\\';
                out += c;
            }
            out += '"';
        }
        return out + "}";
    }

    struct row {
        std::string id, channel, data, oversize;  // oversize: "" or the reason the data was not read
        long attempts = 0;
    };

    // Everything runs on `strand`; `mu` guards `stats` only (read from any thread).
    struct engine : std::enable_shared_from_this<engine> {
        asio::io_context& ioc;
        detail::pg_strand strand;
        hub& h;
        const options opts;
        const std::string table, dead, channel;
        asio::steady_timer timer;
        std::shared_ptr<detail::pg_connection> conn;
        mutable std::mutex mu;
        postgres_stats stats;
        std::atomic<bool> started{false};  // start() was called (from any thread)

        bool running = false, busy = false, dirty = false, publishing = false, failing_publish = false, was_lost = false;
        unsigned batch_gen = 0;      // a new one per connection: a batch of a lost connection is abandoned
        unsigned timer_gen = 0;
        unsigned backoff_step = 0;
        std::vector<row> rows;
        std::vector<std::string> done_ids, dead_ids, dead_reasons;
        std::string transient;       // why the batch stopped early
        std::minstd_rand rng{std::random_device{}()};

        engine(asio::io_context& io, hub& hb, options o)
            : ioc(io), strand(asio::make_strand(io)), h(hb), opts(std::move(o)), table(checked_name(opts.table)),
              dead(checked_name(opts.dead_letter_table)), channel(listen_channel(opts)), timer(strand) {}

        // ---- state, log, counters --------------------------------------------------------
        void log(log_level level, const std::string& text) const {
            if (h.options().log) h.options().log(level, text);
        }
        template <class F>
        void count(F f) {
            std::lock_guard<std::mutex> lock(mu);
            f(stats);
        }
        // Logs a change of state once: a PostgreSQL that stays down is one line, not one per retry.
        void set_state(postgres_state s, const std::string& why = {}) {
            postgres_state was;
            {
                std::lock_guard<std::mutex> lock(mu);
                was = stats.state;
                stats.state = s;
                if (!why.empty()) stats.last_error = why;
            }
            if (was == s) return;
            const std::string t = "outbox " + table + ": ";
            // Back after a loss: said at the level of the loss, so that both lines show.
            const log_level up = was_lost ? log_level::warning : log_level::info;
            const std::string again = was_lost ? "PostgreSQL reachable again; " : "";
            switch (s) {
            case postgres_state::unreachable:
                if (was_lost) break;  // a reconnect that failed again: already said
                was_lost = true;
                log(log_level::warning, t + "PostgreSQL unreachable (" + why + "); herald keeps serving, reconnecting with backoff");
                break;
            case postgres_state::leading:
                was_lost = false;
                log(up, t + again + "delivering (this server holds the outbox lock)");
                break;
            case postgres_state::standby:
                was_lost = false;
                log(up, t + again + "standby (another server holds the outbox lock and delivers)");
                break;
            case postgres_state::stopped: log(log_level::info, t + "stopped"); break;
            case postgres_state::connecting: break;
            }
        }

        void schedule(std::chrono::milliseconds after, void (engine::*what)()) {
            const unsigned g = ++timer_gen;
            timer.expires_after(after);
            timer.async_wait([self = shared_from_this(), g, what](std::error_code ec) {
                if (ec || g != self->timer_gen || !self->running) return;
                ((*self).*what)();
            });
        }
        std::chrono::milliseconds backoff() {
            const auto max = std::max(opts.reconnect_max, opts.reconnect_min);
            auto d = opts.reconnect_min * (1LL << std::min(backoff_step++, 16u));
            if (d > max) d = max;
            std::uniform_int_distribution<long long> jitter(d.count() / 2, std::max<long long>(d.count(), 1));
            return std::chrono::milliseconds(jitter(rng));
        }

        // ---- connection --------------------------------------------------------------------
        void start() {
            if (running) return;
            running = true;
            connect();
        }

        void shutdown() {
            if (!running) return;
            running = false;
            ++timer_gen;
            ++batch_gen;
            timer.cancel();
            if (conn) conn->close();
            conn.reset();
            busy = false;
            set_state(postgres_state::stopped);
        }

        void connect() {
            if (!running) return;
            set_state(postgres_state::connecting);
            std::weak_ptr<engine> w = shared_from_this();
            conn = std::make_shared<detail::pg_connection>(
                strand, [w] { if (auto e = w.lock()) e->on_notify(); },
                [w](const std::string& why) { if (auto e = w.lock()) e->on_lost(why); });
            ++batch_gen;
            busy = false;
            conn->connect(opts.conninfo, [w] { if (auto e = w.lock()) e->on_connected(); });
        }

        void on_lost(const std::string& why) {
            if (!running) return;
            count([](postgres_stats& s) { ++s.connection_losses; });
            ++batch_gen;  // the batch under way is abandoned; its rows are read again
            busy = false;
            set_state(postgres_state::unreachable, why);
            schedule(backoff(), &engine::connect);
        }

        // A statement failed on a connection that is up (a missing table, a permission): the
        // connection is dropped and made again with backoff, which also says it in the log.
        void query_failed(const std::string& why) {
            if (conn) conn->close();
            on_lost(why);
        }

        void on_connected() {
            backoff_step = 0;
            count([](postgres_stats& s) { ++s.connects; });
            if (opts.create_schema)
                conn->query("BEGIN; SELECT pg_advisory_xact_lock(" + std::to_string(opts.lock_key + 1) + "); " + schema(opts) + "COMMIT;", {},
                            [self = shared_from_this()](detail::pg_answer a) {
                                if (!a.error.empty()) self->query_failed("creating the outbox tables: " + a.error);
                            });
            conn->query("LISTEN " + channel, {}, [self = shared_from_this()](detail::pg_answer a) {
                if (!a.error.empty()) self->query_failed(a.error);
            });
            try_lead();
        }

        void try_lead() {
            if (!running || !conn || !conn->connected()) return;
            conn->query("SELECT pg_try_advisory_lock($1)", {std::to_string(opts.lock_key)}, [self = shared_from_this()](detail::pg_answer a) {
                if (!a.error.empty() || a.rows.empty()) return self->query_failed(a.error.empty() ? "no answer to pg_try_advisory_lock" : a.error);
                if (a.rows[0][0] == "t") {
                    self->set_state(postgres_state::leading);
                    self->kick();
                } else {
                    self->set_state(postgres_state::standby);
                    self->schedule(self->opts.standby_retry, &engine::try_lead);
                }
            });
        }

        bool leading() {
            std::lock_guard<std::mutex> lock(mu);
            return stats.state == postgres_state::leading;
        }

        void on_notify() {
            count([](postgres_stats& s) { ++s.notifies; });
            kick();
        }

        // Something may wait in the table: read it, now or after the batch under way.
        void kick() {
            if (!running || !leading()) return;
            if (busy || publishing) {
                dirty = true;
                return;
            }
            batch();
        }

        // ---- one batch ---------------------------------------------------------------------
        void batch() {
            busy = true;
            dirty = false;
            rows.clear();
            done_ids.clear();
            dead_ids.clear();
            dead_reasons.clear();
            transient.clear();
            count([](postgres_stats& s) { ++s.batches; });
            const unsigned g = batch_gen;
            // Data and channel too long to be published are not read: bounded memory.
            const std::string max_data = std::to_string(h.options().max_payload_bytes);
            conn->query("SELECT id, CASE WHEN octet_length(channel) > 1024 THEN '' ELSE channel END,"
                        " CASE WHEN octet_length(data) > $2 THEN NULL ELSE data END, octet_length(data) > $2, attempts"
                        " FROM " + table + " ORDER BY id LIMIT $1",
                        {std::to_string(std::max<std::size_t>(opts.batch, 1)), max_data},
                        [self = shared_from_this(), g, max_data](detail::pg_answer a) {
                            if (g != self->batch_gen) return;
                            if (!a.error.empty()) return self->query_failed(a.error);
                            for (auto& r : a.rows) {
                                if (r.size() < 5) continue;
                                row x;
                                x.id = r[0];
                                x.channel = r[1];
                                x.data = r[2];
                                if (r[3] == "t") x.oversize = "data longer than " + max_data + " bytes (hub_options::max_payload_bytes)";
                                x.attempts = std::strtol(r[4].c_str(), nullptr, 10);
                                self->rows.push_back(std::move(x));
                            }
                            self->claim(g);
                        });
        }

        // Marks the rows as handed to the hub, committed before the first publish (the
        // statement is its own transaction): a crash from here on leaves `attempts > 0`.
        void claim(unsigned g) {
            if (rows.empty()) return idle();
            std::vector<std::string> ids;
            for (auto& r : rows) ids.push_back(r.id);
            conn->query("UPDATE " + table + " SET attempts = attempts + 1 WHERE id = ANY($1::bigint[])", {text_array(ids)},
                        [self = shared_from_this(), g](detail::pg_answer a) {
                            if (g != self->batch_gen) return;
                            if (!a.error.empty()) return self->query_failed(a.error);
                            self->next(g, 0);
                        });
        }

        void idle() {
            busy = false;
            if (dirty) return kick();
            schedule(opts.poll_interval, &engine::kick);
        }

        static bool poison(std::error_code ec) {
            return ec == error::invalid_channel || ec == error::invalid_payload || ec == error::payload_too_large;
        }

        // `{"outbox_id":17,` + the object's members; nothing when data is not an object.
        static std::optional<std::string> message_of(const row& r) {
            std::size_t i = r.data.find_first_not_of(" \t\r\n");
            if (i == std::string::npos || r.data[i] != '{') return std::nullopt;
            std::size_t j = r.data.find_first_not_of(" \t\r\n", i + 1);
            std::string m = "{\"outbox_id\":" + r.id;
            if (j != std::string::npos && r.data[j] != '}') m += ',';
            m.append(r.data, i + 1, std::string::npos);
            return m;
        }

        void next(unsigned g, std::size_t i) {
            if (g != batch_gen) return;
            if (i == rows.size()) return finish(g);
            row& r = rows[i];
            if (!r.oversize.empty()) return bury(g, i, r.oversize);
            auto m = message_of(r);
            if (!m) return bury(g, i, "data is not a JSON object");
            if (r.attempts == 0) return publish(g, i, std::move(*m));
            // Handed to the hub before: publish only if the channel does not have it.
            look(r.channel, "{\"outbox_id\":" + r.id, 1024, {}, [self = shared_from_this(), g, i, m = std::move(*m)](std::error_code ec, bool found) mutable {
                if (g != self->batch_gen) return;
                if (ec && !poison(ec)) return self->stop_batch(g, "reading the channel's history: " + ec.message());
                if (found) {
                    self->count([](postgres_stats& s) { ++s.duplicates_skipped; });
                    self->done_ids.push_back(self->rows[i].id);
                    return self->next(g, i + 1);
                }
                self->publish(g, i, std::move(m));
            });
        }

        // Whether one of `channel`'s last messages starts with `prefix` (`,` or `}` next),
        // looking at most `window` messages back. On another thread's handler: posts back.
        void look(const std::string& ch, std::string prefix, std::uint64_t window, std::optional<position> head,
                  std::function<void(std::error_code, bool)> done) {
            auto self = shared_from_this();
            std::optional<position> since;
            if (head) since = position{head->epoch, head->offset > window ? head->offset - window : 0};
            h.async_fetch(ch, since, [self, ch, prefix = std::move(prefix), window, head, done = std::move(done)](std::error_code ec, fetch_result res) mutable {
                asio::post(self->strand, [self, ch, prefix = std::move(prefix), window, head, done = std::move(done), ec, res = std::move(res)]() mutable {
                    if (ec) return done(ec, false);
                    if (!head) {
                        if (res.head.offset == 0) return done({}, false);  // an empty stream
                        return self->look(ch, std::move(prefix), std::min<std::uint64_t>(window, res.head.offset), res.head, std::move(done));
                    }
                    if (!res.recovered) {  // the history holds less: look at fewer
                        if (window <= 1) return done({}, false);
                        return self->look(ch, std::move(prefix), window / 4, head, std::move(done));
                    }
                    for (auto& f : res.messages) {
                        std::string_view d = f->data();
                        if (d.size() > prefix.size() && d.compare(0, prefix.size(), prefix) == 0 &&
                            (d[prefix.size()] == ',' || d[prefix.size()] == '}'))
                            return done({}, true);
                    }
                    done({}, false);
                });
            });
        }

        void publish(unsigned g, std::size_t i, std::string message) {
            publishing = true;
            h.async_publish(rows[i].channel, std::move(message), [self = shared_from_this(), g, i](std::error_code ec, position) {
                asio::post(self->strand, [self, g, i, ec] {
                    self->publishing = false;
                    if (!self->running) return;
                    if (g != self->batch_gen) {  // the connection was lost meanwhile: the row is read again
                        if (!ec) self->count([](postgres_stats& s) { ++s.delivered; });
                        if (self->dirty && !self->busy) self->kick();
                        return;
                    }
                    if (!ec) {
                        self->failing_publish = false;
                        self->count([](postgres_stats& s) { ++s.delivered; });
                        self->done_ids.push_back(self->rows[i].id);
                        return self->next(g, i + 1);
                    }
                    if (poison(ec)) return self->bury(g, i, "the hub refused it: " + ec.message());
                    self->count([](postgres_stats& s) { ++s.publish_failures; });
                    self->stop_batch(g, "publish failed: " + ec.message());
                });
            });
        }

        void bury(unsigned g, std::size_t i, const std::string& reason) {
            log(log_level::warning, "outbox " + table + ": row " + rows[i].id + " moved to " + dead + ": " + reason);
            dead_ids.push_back(rows[i].id);
            dead_reasons.push_back(reason);
            next(g, i + 1);
        }

        // A transient failure: the rows from here on stay for the next batch (a channel keeps
        // its order), which runs after a backoff.
        void stop_batch(unsigned g, const std::string& why) {
            if (!failing_publish) log(log_level::warning, "outbox " + table + ": " + why + "; the rows stay in the outbox, retrying");
            failing_publish = true;
            count([&](postgres_stats& s) { s.last_error = why; });
            transient = why;
            finish(g);
        }

        // Deletes the delivered rows, moves the poison ones aside, then goes on.
        void finish(unsigned g) {
            const bool full = rows.size() >= opts.batch;
            auto after = [self = shared_from_this(), g, full] {
                if (g != self->batch_gen) return;
                self->busy = false;
                if (!self->transient.empty()) return self->schedule(self->backoff(), &engine::kick);
                self->backoff_step = 0;
                if (full || self->dirty) return self->kick();
                self->schedule(self->opts.poll_interval, &engine::kick);
            };
            // One statement each, in order on the connection: the move, then the delete.
            auto remove = [self = shared_from_this(), g, after] {
                if (self->done_ids.empty()) return after();
                self->conn->query("DELETE FROM " + self->table + " WHERE id = ANY($1::bigint[])", {text_array(self->done_ids)},
                                  [self, g, after](detail::pg_answer a) {
                                      if (g != self->batch_gen) return;
                                      if (!a.error.empty()) return self->query_failed(a.error);
                                      after();
                                  });
            };
            if (dead_ids.empty()) return remove();
            conn->query("WITH m AS (DELETE FROM " + table + " WHERE id = ANY($1::bigint[]) RETURNING id, channel, data, attempts) "
                        "INSERT INTO " + dead + " (id, channel, data, attempts, reason) SELECT m.id, m.channel, m.data, m.attempts, r.reason "
                        "FROM m JOIN unnest($1::bigint[], $2::text[]) AS r(id, reason) USING (id) ON CONFLICT (id) DO NOTHING",
                        {text_array(dead_ids), text_array(dead_reasons)},
                        [self = shared_from_this(), g, n = dead_ids.size(), remove](detail::pg_answer a) {
                            if (g != self->batch_gen) return;
                            if (!a.error.empty()) return self->query_failed("moving rows to the dead-letter table: " + a.error);
                            self->count([n](postgres_stats& s) { s.dead_lettered += n; });
                            remove();
                        });
        }
    };

    std::shared_ptr<engine> engine_;
};

} // namespace herald::outbox
