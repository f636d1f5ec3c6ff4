// A PostgreSQL server of a test's own: initdb into a temporary directory, `postgres` on a free
// port of 127.0.0.1 (and a Unix socket in that directory), stopped by its pid. Used by the
// outbox tests and benchmark. No Catch2: failures throw std::runtime_error.
//
// initdb and postgres refuse to run as root: run as root (CI containers), the server runs as
// the `postgres` user (Debian's package makes it), else `nobody`, which then owns the directory.
#pragma once

#include <libpq-fe.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace herald::test {

/// One statement on a blocking connection of the test's own.
class pg_client {
public:
    explicit pg_client(const std::string& conninfo) : c_(PQconnectdb(conninfo.c_str())) {
        PQsetNoticeProcessor(c_, [](void*, const char*) {}, nullptr);
    }
    ~pg_client() { PQfinish(c_); }
    pg_client(const pg_client&) = delete;
    pg_client& operator=(const pg_client&) = delete;

    bool ok() const { return PQstatus(c_) == CONNECTION_OK; }
    std::string error() const { return PQerrorMessage(c_); }

    /// Runs `sql` (one or more statements, no parameters). @returns the first column of the
    /// last result's rows; `ok` tells whether every statement succeeded.
    std::vector<std::string> exec(const std::string& sql, bool* ok = nullptr) {
        std::vector<std::string> out;
        bool good = PQsendQuery(c_, sql.c_str()) == 1;
        while (PGresult* r = PQgetResult(c_)) {
            const auto st = PQresultStatus(r);
            if (st == PGRES_TUPLES_OK) {
                out.clear();
                for (int i = 0; i < PQntuples(r); ++i) out.emplace_back(PQgetvalue(r, i, 0));
            } else if (st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY) {
                good = false;
            }
            PQclear(r);
        }
        if (ok) *ok = good && PQstatus(c_) == CONNECTION_OK;
        return out;
    }
    /// exec() that throws when a statement fails.
    std::vector<std::string> must(const std::string& sql) {
        bool ok = false;
        auto rows = exec(sql, &ok);
        if (!ok) throw std::runtime_error("SQL failed: " + sql.substr(0, 200) + ": " + error());
        return rows;
    }

private:
    PGconn* c_;
};

class postgres_process {
public:
    using clock = std::chrono::steady_clock;

    /// The directory of initdb and postgres (the newest installed major version); "" if none.
    static std::string bindir() {
        std::string best;
        std::error_code ec;
        for (auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
            const std::string b = e.path().string() + "/bin";
            if (::access((b + "/postgres").c_str(), X_OK) == 0 && ::access((b + "/initdb").c_str(), X_OK) == 0 &&
                (best.empty() || std::stoi(e.path().filename().string()) > std::stoi(std::filesystem::path(best).parent_path().filename().string())))
                best = b;
        }
        return best;
    }

    /// initdb into a new temporary directory; start() runs the server.
    postgres_process() : port_(free_port()) {
        bin_ = bindir();
        if (bin_.empty()) throw std::runtime_error("PostgreSQL is not installed (scripts/setup.sh installs it)");
        char tmpl[] = "/tmp/herald-pg-XXXXXX";
        if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
        dir_ = tmpl;
        if (::geteuid() == 0) {
            const passwd* pw = ::getpwnam("postgres");
            if (!pw) pw = ::getpwnam("nobody");
            if (!pw) throw std::runtime_error("running as root and neither user postgres nor nobody exists");
            uid_ = pw->pw_uid;
            gid_ = pw->pw_gid;
            if (::chown(dir_.c_str(), uid_, gid_) != 0) throw std::runtime_error("chown " + dir_ + " failed");
        }
        const std::string data = dir_ + "/data", log = dir_ + "/initdb.log";
        pid_t p = spawn({bin_ + "/initdb", "-D", data, "-U", "herald", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"}, log);
        int status = 0;
        ::waitpid(p, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("initdb failed:\n" + tail(log));
    }
    ~postgres_process() {
        stop();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    postgres_process(const postgres_process&) = delete;
    postgres_process& operator=(const postgres_process&) = delete;

    std::uint16_t port() const { return port_; }
    std::string conninfo(const std::string& extra = "") const {
        return "host=127.0.0.1 port=" + std::to_string(port_) + " user=herald dbname=postgres connect_timeout=3" +
               (extra.empty() ? "" : " " + extra);
    }
    bool running() const { return pid_ > 0; }

    /// Starts postgres and waits (at most 20 s) until it accepts connections.
    void start() {
        if (pid_ > 0) return;
        pid_ = spawn({bin_ + "/postgres", "-D", dir_ + "/data", "-p", std::to_string(port_), "-k", dir_,
                      "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
                      "-c", "max_connections=50", "-c", "shared_buffers=16MB"},
                     dir_ + "/postgres.log");
        for (auto deadline = clock::now() + std::chrono::seconds(20); clock::now() < deadline;
             std::this_thread::sleep_for(std::chrono::milliseconds(20))) {
            int status;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = 0;
                throw std::runtime_error("postgres exited at start:\n" + tail(dir_ + "/postgres.log"));
            }
            if (pg_client(conninfo()).ok()) return;
        }
        throw std::runtime_error("postgres did not answer in 20 s:\n" + tail(dir_ + "/postgres.log"));
    }

    /// Fast shutdown (SIGINT: transactions aborted, clients disconnected, WAL flushed), SIGKILL
    /// after 10 s.
    void stop() { end(SIGINT); }
    /// Immediate shutdown (SIGQUIT): every backend quits at once, as in a crash; the next
    /// start() recovers from the WAL (every committed transaction is there).
    void crash() { end(SIGQUIT); }

    std::string log_text() const { return tail(dir_ + "/postgres.log"); }

private:
    static std::string tail(const std::string& path) {
        std::string text;
        if (FILE* f = std::fopen(path.c_str(), "r")) {
            char buf[4096];
            for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
            std::fclose(f);
        }
        return text.size() > 3000 ? text.substr(text.size() - 3000) : text;
    }

    static std::uint16_t free_port() {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            throw std::runtime_error("no free port");
        ::close(fd);
        return ntohs(a.sin_port);
    }

    // fork + exec, as the unprivileged user when we are root; output to `log`.
    pid_t spawn(std::vector<std::string> args, const std::string& log) const {
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        const pid_t p = ::fork();
        if (p < 0) throw std::runtime_error("fork failed");
        if (p == 0) {
            ::setsid();  // its own process group: a signal to the test does not reach it
            int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                if (uid_) (void)::fchown(fd, uid_, gid_);
                ::dup2(fd, 1);
                ::dup2(fd, 2);
                ::close(fd);
            }
            if (uid_ && (::setgroups(0, nullptr) != 0 || ::setgid(gid_) != 0 || ::setuid(uid_) != 0)) ::_exit(126);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        return p;
    }

    void end(int sig) {
        if (pid_ <= 0) return;
        ::kill(pid_, sig);
        int status;
        for (auto deadline = clock::now() + std::chrono::seconds(10); clock::now() < deadline;
             std::this_thread::sleep_for(std::chrono::milliseconds(5)))
            if (::waitpid(pid_, &status, WNOHANG) == pid_) { pid_ = 0; return; }
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        pid_ = 0;
    }

    std::string bin_, dir_;
    std::uint16_t port_;
    uid_t uid_ = 0;
    gid_t gid_ = 0;
    pid_t pid_ = 0;
};

} // namespace herald::test
