// herald — detail: one libpq connection driven by an Asio strand, through libpq's
// asynchronous API (PQconnectStart/PQconnectPoll, PQsendQueryParams, PQconsumeInput,
// PQisBusy, PQgetResult, PQnotifies) and its socket. No thread, no blocking call.
#pragma once

#ifndef ASIO_STANDALONE
#define ASIO_STANDALONE
#endif
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/strand.hpp>

#include <libpq-fe.h>

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace herald::outbox::detail {

using pg_strand = asio::strand<asio::io_context::executor_type>;

/// A query's answer: its rows as text (a NULL reads as ""), or the error libpq reported.
struct pg_answer {
    std::string error;  ///< empty: the statement succeeded
    std::vector<std::vector<std::string>> rows;
};

/// One connection. Every member runs on `strand` (the owner calls them there); callbacks run
/// there too. The socket belongs to libpq: the descriptor is released, never closed, and made
/// again whenever PQsocket changes (libpq may open a new socket during the connect, e.g. for
/// the next host of a list, and does at every connect).
///
/// States: idle (no connection) -> connecting -> ready; any failure -> `on_lost(reason)` once,
/// then idle. Queries queue and are sent one at a time; a query pending when the connection is
/// lost is dropped (its callback is not called: `on_lost` says it all).
class pg_connection : public std::enable_shared_from_this<pg_connection> {
public:
    using notify_function = std::function<void()>;
    using lost_function = std::function<void(const std::string& reason)>;
    using ready_function = std::function<void()>;
    using answer_function = std::function<void(pg_answer)>;

    pg_connection(const pg_strand& strand, notify_function on_notify, lost_function on_lost)
        : strand_(strand), socket_(strand), on_notify_(std::move(on_notify)), on_lost_(std::move(on_lost)) {}
    ~pg_connection() { close(); }
    pg_connection(const pg_connection&) = delete;
    pg_connection& operator=(const pg_connection&) = delete;

    bool connected() const noexcept { return conn_ && ready_; }

    /// Starts connecting to `conninfo` (a libpq keyword string or URI); `on_ready` once it is
    /// up, else `on_lost`.
    void connect(const std::string& conninfo, ready_function on_ready) {
        close();
        ++generation_;
        conn_ = PQconnectStart(conninfo.c_str());
        if (!conn_) return fail("out of memory");
        if (PQstatus(conn_) == CONNECTION_BAD) return fail(message());
        PQsetnonblocking(conn_, 1);
        PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);  // NOTICEs ("... skipping") are not news
        on_ready_ = std::move(on_ready);
        step_connect(PGRES_POLLING_WRITING);  // libpq: act as if PQconnectPoll asked to write first
    }

    /// Sends one statement with text parameters (after the queued ones); `done` gets the rows.
    void query(std::string sql, std::vector<std::string> params, answer_function done) {
        queue_.push_back({std::move(sql), std::move(params), std::move(done)});
        if (connected() && !in_flight_) send_next();
    }

    /// Ends the connection (no callback). Idempotent.
    void close() {
        ++generation_;
        release_socket();
        if (conn_) PQfinish(conn_);
        conn_ = nullptr;
        ready_ = in_flight_ = false;
        reading_ = writing_ = false;
        queue_.clear();
        results_ = {};
    }

private:
    struct pending {
        std::string sql;
        std::vector<std::string> params;
        answer_function done;
    };

    std::string message() const {
        std::string m = conn_ ? PQerrorMessage(conn_) : "no connection";
        while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
        for (auto& c : m) if (c == '\n' || c == '\t') c = ' ';
        return m.empty() ? "connection lost" : m;
    }

    void fail(const std::string& reason) {
        close();
        if (on_lost_) on_lost_(reason);
    }

    void release_socket() {
        if (socket_.is_open()) {
            std::error_code ignored;
            socket_.cancel(ignored);
            socket_.release();
        }
        fd_ = -1;
    }

    // The descriptor follows PQsocket: a new socket gets a new descriptor (the old one's waits
    // are cancelled and complete with another generation, which ignores them). During the
    // connect it is made again at every step: libpq may close its socket and open another
    // that gets the same number, which the reactor would not know.
    bool track_socket(bool renew = false) {
        const int fd = PQsocket(conn_);
        if (fd < 0) return false;
        if (fd != fd_ || renew) {
            release_socket();
            ++generation_;
            std::error_code ec;
            socket_.assign(fd, ec);
            if (ec) return false;
            fd_ = fd;
            reading_ = writing_ = false;
        }
        return true;
    }

    template <class F>
    void wait(asio::posix::stream_descriptor::wait_type w, F f) {
        socket_.async_wait(w, [self = shared_from_this(), g = generation_, f = std::move(f)](std::error_code ec) {
            if (g != self->generation_ || !self->conn_) return;  // closed or a new socket since
            f(ec);
        });
    }

    void step_connect(PostgresPollingStatusType st) {
        if (st == PGRES_POLLING_FAILED) return fail(message());
        if (st == PGRES_POLLING_OK) {
            ready_ = true;
            if (!track_socket(true)) return fail("no socket");
            arm_read();
            auto r = std::move(on_ready_);
            on_ready_ = nullptr;
            if (r) r();
            if (connected() && !in_flight_ && !queue_.empty()) send_next();
            return;
        }
        if (!track_socket(true)) return fail(message());
        wait(st == PGRES_POLLING_READING ? asio::posix::stream_descriptor::wait_read : asio::posix::stream_descriptor::wait_write,
             [this](std::error_code ec) {
                 if (ec) return fail(ec.message());
                 step_connect(PQconnectPoll(conn_));
             });
    }

    void send_next() {
        if (queue_.empty() || in_flight_) return;
        pending& q = queue_.front();
        std::vector<const char*> values;
        values.reserve(q.params.size());
        for (auto& p : q.params) values.push_back(p.c_str());
        // No parameters: the simple protocol, which takes several statements (the schema).
        const int sent = values.empty() ? PQsendQuery(conn_, q.sql.c_str())
                                        : PQsendQueryParams(conn_, q.sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0);
        if (!sent)
            return fail(message());
        in_flight_ = true;
        results_ = {};
        flush();
    }

    void flush() {
        const int r = PQflush(conn_);
        if (r < 0) return fail(message());
        if (r == 0 || writing_) return;
        writing_ = true;
        wait(asio::posix::stream_descriptor::wait_write, [this](std::error_code ec) {
            writing_ = false;
            if (ec) return fail(ec.message());
            if (!PQconsumeInput(conn_)) return fail(message());  // libpq: read while the write waits
            if (!take_input()) return;
            flush();
        });
    }

    // What PQconsumeInput read: finished results, then notifications. The socket will not
    // say again that this data is there: all of it is taken now. Notifications are drained
    // after the results, for libpq parses those that follow a result only when asked
    // (PQgetResult, PQnotifies). @returns false when the connection ended or was replaced.
    bool take_input() {
        const auto g = generation_;
        if (in_flight_ && !collect()) return false;
        if (g != generation_ || !conn_) return false;
        std::size_t notifies = 0;
        while (PGnotify* n = PQnotifies(conn_)) {
            ++notifies;
            PQfreemem(n);
        }
        if (notifies && on_notify_) on_notify_();
        return g == generation_ && conn_;
    }

    void arm_read() {
        if (reading_) return;
        reading_ = true;
        wait(asio::posix::stream_descriptor::wait_read, [this](std::error_code ec) {
            reading_ = false;
            if (ec) return fail(ec.message());
            if (!PQconsumeInput(conn_)) return fail(message());
            if (!take_input()) return;
            arm_read();
        });
    }

    // Takes every result that is complete. @returns false when the connection ended meanwhile.
    bool collect() {
        while (in_flight_ && !PQisBusy(conn_)) {
            PGresult* r = PQgetResult(conn_);
            if (!r) {  // the statement is over
                in_flight_ = false;
                pending q = std::move(queue_.front());
                queue_.pop_front();
                pg_answer a = std::move(results_);
                results_ = {};
                const auto g = generation_;
                q.done(std::move(a));
                if (g != generation_ || !conn_) return false;
                send_next();
                continue;
            }
            const ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_TUPLES_OK) {
                for (int i = 0; i < PQntuples(r); ++i) {
                    std::vector<std::string> row;
                    for (int j = 0; j < PQnfields(r); ++j) row.emplace_back(PQgetvalue(r, i, j), static_cast<std::size_t>(PQgetlength(r, i, j)));
                    results_.rows.push_back(std::move(row));
                }
            } else if (st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY && results_.error.empty()) {
                results_.error = PQresultErrorMessage(r);
                while (!results_.error.empty() && results_.error.back() == '\n') results_.error.pop_back();
                if (results_.error.empty()) results_.error = PQresStatus(st);
            }
            PQclear(r);
            if (PQstatus(conn_) == CONNECTION_BAD) {
                fail(message());
                return false;
            }
        }
        return true;
    }

    pg_strand strand_;
    asio::posix::stream_descriptor socket_;
    int fd_ = -1;
    PGconn* conn_ = nullptr;
    bool ready_ = false, in_flight_ = false, reading_ = false, writing_ = false;
    unsigned long generation_ = 0;
    std::deque<pending> queue_;
    pg_answer results_;
    ready_function on_ready_;
    notify_function on_notify_;
    lost_function on_lost_;
};

} // namespace herald::outbox::detail
