// herald — the blocking form of an asynchronous backplane call.
#pragma once

#include <herald/backplane.hpp>
#include <herald/error.hpp>
#include <herald/frame.hpp>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <system_error>
#include <utility>

namespace herald::detail {

/// Runs `start(done)` and waits up to `timeout` for `done(ec, position)`: the blocking form
/// of an asynchronous backplane call (hub::publish, hub::head). On timeout `ec` is
/// error::timed_out; `done` may still run later (the waiter it holds outlives this call).
template <class Start>
position wait_for_position(Start&& start, std::chrono::milliseconds timeout, std::error_code& ec) {
    struct waiter {
        std::mutex mu;
        std::condition_variable cv;
        bool done = false;
        std::error_code ec;
        position pos;
    };
    auto w = std::make_shared<waiter>();
    start(publish_handler([w](std::error_code e, position p) {
        std::lock_guard<std::mutex> lock(w->mu);
        w->ec = e;
        w->pos = std::move(p);
        w->done = true;
        w->cv.notify_one();
    }));
    std::unique_lock<std::mutex> lock(w->mu);
    if (!w->cv.wait_for(lock, timeout, [&] { return w->done; })) {
        ec = error::timed_out;
        return {};
    }
    ec = w->ec;
    return std::move(w->pos);
}

} // namespace herald::detail
