// herald — the wakes of one single-threaded executor's connections, run in one handler.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/post.hpp>

#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace herald::net::detail {

/// The wakes of connections that run on one single-threaded executor, run together: a
/// publish to 1000 subscribers posts one handler that pumps the 1000 connections, instead
/// of 1000 handlers (and 1000 strand round trips). add() is safe from any thread.
template <class Connection>
class basic_wake_batch {
public:
    explicit basic_wake_batch(asio::any_io_executor ex) : ex_(std::move(ex)) {}
    basic_wake_batch(const basic_wake_batch&) = delete;
    basic_wake_batch& operator=(const basic_wake_batch&) = delete;

    void add(std::shared_ptr<Connection> c) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            ready_.push_back(std::move(c));
            if (posted_) return;
            posted_ = true;
        }
        asio::post(ex_, [this] { run(); });
    }

    /// Drops what waits (the server stops).
    void clear() {
        std::lock_guard<std::mutex> lock(mu_);
        ready_.clear();
    }

private:
    // On the executor: wakes every connection added since the last run, in order.
    void run() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            running_.swap(ready_);
            posted_ = false;
        }
        for (auto& c : running_) c->wake();
        running_.clear();
        if (running_.capacity() > 4096) std::vector<std::shared_ptr<Connection>>().swap(running_);
    }

    asio::any_io_executor ex_;
    std::mutex mu_;
    std::vector<std::shared_ptr<Connection>> ready_, running_;
    bool posted_ = false;
};

} // namespace herald::net::detail
