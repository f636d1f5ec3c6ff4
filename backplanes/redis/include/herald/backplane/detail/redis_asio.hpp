// herald — detail: drives a hiredis async context from an Asio strand.
#pragma once

#ifndef ASIO_STANDALONE
#define ASIO_STANDALONE
#endif
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/strand.hpp>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <memory>
#include <system_error>

namespace herald::detail {

using redis_strand = asio::strand<asio::io_context::executor_type>;

/// hiredis's event-loop hooks (async.h: ev.addRead ... ev.cleanup) on an Asio
/// stream_descriptor: a hook arms an `async_wait` on the context's socket, and the wait's
/// completion calls redisAsyncHandleRead/Write. Every hook and completion runs on `strand`,
/// which must be the only place the context is used.
///
/// hiredis owns the socket: the descriptor is released, never closed, at cleanup (called
/// when hiredis frees the context, possibly from inside redisAsyncHandleRead). Completions
/// hold the adapter alive and find `ac_` null once that happened.
class redis_asio_adapter : public std::enable_shared_from_this<redis_asio_adapter> {
public:
    redis_asio_adapter(redisAsyncContext* ac, const redis_strand& strand) : ac_(ac), socket_(strand, ac->c.fd) {}

    /// Installs the hooks on `ac` and starts watching the socket for the end of the connect.
    static void attach(redisAsyncContext* ac, const redis_strand& strand) {
        auto a = std::make_shared<redis_asio_adapter>(ac, strand);
        a->self_ = a;  // hiredis refers to it through ev.data until cleanup
        ac->ev.data = a.get();
        ac->ev.addRead = [](void* p) { static_cast<redis_asio_adapter*>(p)->want(read_side); };
        ac->ev.delRead = [](void* p) { static_cast<redis_asio_adapter*>(p)->wanted_[read_side] = false; };
        ac->ev.addWrite = [](void* p) { static_cast<redis_asio_adapter*>(p)->want(write_side); };
        ac->ev.delWrite = [](void* p) { static_cast<redis_asio_adapter*>(p)->wanted_[write_side] = false; };
        ac->ev.cleanup = [](void* p) { static_cast<redis_asio_adapter*>(p)->cleanup(); };
        // hiredis completes a non-blocking connect on the first write readiness (onConnect).
        a->want(write_side);
    }

private:
    enum side { read_side = 0, write_side = 1 };

    void want(side s) {
        wanted_[s] = true;
        if (waiting_[s] || !ac_) return;
        waiting_[s] = true;
        socket_.async_wait(s == read_side ? asio::posix::stream_descriptor::wait_read
                                          : asio::posix::stream_descriptor::wait_write,
                           [self = shared_from_this(), s](std::error_code ec) { self->ready(s, ec); });
    }

    void ready(side s, std::error_code ec) {
        waiting_[s] = false;
        if (ec || !ac_ || !wanted_[s]) return;  // released, or hiredis no longer asks
        if (s == read_side) redisAsyncHandleRead(ac_);  // may re-arm, or free the context
        else redisAsyncHandleWrite(ac_);
        if (ac_ && wanted_[s] && !waiting_[s]) want(s);
    }

    void cleanup() {
        auto keep = std::move(self_);  // may be the last reference: `this` dies with it
        ac_->ev.data = nullptr;
        ac_->ev.addRead = ac_->ev.delRead = ac_->ev.addWrite = ac_->ev.delWrite = nullptr;
        ac_->ev.cleanup = nullptr;  // hiredis may call cleanup twice; the second finds none
        ac_ = nullptr;
        socket_.release();  // cancels the waits; hiredis closes the socket itself
    }

    redisAsyncContext* ac_;
    asio::posix::stream_descriptor socket_;
    bool wanted_[2] = {false, false};
    bool waiting_[2] = {false, false};
    std::shared_ptr<redis_asio_adapter> self_;
};

} // namespace herald::detail
