// herald — the blocking form of an asynchronous backplane call.
#pragma once

#include <herald/backplane.hpp>
#include <herald/error.hpp>
#include <herald/frame.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <system_error>
#include <utility>

namespace herald::detail {

/// Runs `start(done)` and waits up to `timeout` for `done(ec, T)`: the blocking form of an
/// asynchronous backplane call (hub::publish, hub::head, hub::presence). On timeout `ec` is
/// error::timed_out; `done` may still run later (the waiter it holds outlives this call).
template <class T, class Start>
T wait_for(Start&& start, std::chrono::milliseconds timeout, std::error_code& ec) {
    struct waiter {
        std::mutex mu;
        std::condition_variable cv;
        bool done = false;
        std::error_code ec;
        T value;
    };
    auto w = std::make_shared<waiter>();
    start(std::function<void(std::error_code, T)>([w](std::error_code e, T v) {
        std::lock_guard<std::mutex> lock(w->mu);
        w->ec = e;
        w->value = std::move(v);
        w->done = true;
        w->cv.notify_one();
    }));
    std::unique_lock<std::mutex> lock(w->mu);
    if (!w->cv.wait_for(lock, timeout, [&] { return w->done; })) {
        ec = error::timed_out;
        return {};
    }
    ec = w->ec;
    return std::move(w->value);
}

/// wait_for for a position (publish_handler).
template <class Start>
position wait_for_position(Start&& start, std::chrono::milliseconds timeout, std::error_code& ec) {
    return wait_for<position>(std::forward<Start>(start), timeout, ec);
}

} // namespace herald::detail
