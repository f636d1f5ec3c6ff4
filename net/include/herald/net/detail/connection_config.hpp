// herald — what the server gives each of its connections: itself as their owner, the limits
// against hostile peers (from server_options), and the shared TLS context.
#pragma once

#include <herald/net/http.hpp>
#include <herald/net/metrics.hpp>
#include <herald/net/server_options.hpp>
#include <herald/net/detail/http1.hpp>
#include <herald/net/detail/tls.hpp>
#include <herald/options.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <new>

namespace herald::net::detail {

class tcp_connection;

/// The server, as a connection sees it.
class connection_owner {
public:
    virtual void route(const std::shared_ptr<tcp_connection>& c, http_request&& r) = 0;
    virtual void forget(tcp_connection* c) noexcept = 0;
    virtual server_metrics& metrics() noexcept = 0;

protected:
    ~connection_owner() = default;
};

/// What a connection allows its peer (server_options documents each).
struct connection_limits : http1::reader_limits {
    std::chrono::milliseconds header_timeout{5000};
    std::chrono::milliseconds body_timeout{10000};
    std::chrono::milliseconds keep_alive_timeout{30000};
    std::size_t max_unwritten_bytes = 256 * 1024;
    std::size_t max_pipelined_bytes = 64 * 1024;

    static connection_limits of(const server_options& o) {
        connection_limits l;
        l.max_body_bytes = o.max_request_bytes;
        l.max_header_bytes = o.max_header_bytes;
        l.max_headers = o.max_headers;
        l.header_timeout = o.header_timeout;
        l.body_timeout = o.body_timeout;
        l.keep_alive_timeout = o.keep_alive_timeout;
        l.max_unwritten_bytes = o.max_unwritten_bytes;
        l.max_pipelined_bytes = o.max_pipelined_bytes;
        return l;
    }
};

/// How long a closing connection waits for its peer to close too, once its last answer is
/// written (so that the answer is not lost to a reset: closing with the peer's bytes unread
/// makes the kernel send one).
inline constexpr std::chrono::seconds linger_timeout{2};

/// TLS on the server's connections (server_options::tls), shared by all of them.
struct connection_tls {
    std::unique_ptr<tls_context> context;
    std::chrono::milliseconds handshake_timeout{10000};
    log_function log;
};

/// An allocator that is plain new/delete: bound to an Asio handler (asio::bind_allocator),
/// its operation bypasses Asio's per-thread recycling of operation memory.
template <class T>
struct plain_allocator {
    using value_type = T;
    plain_allocator() noexcept = default;
    template <class U>
    plain_allocator(const plain_allocator<U>&) noexcept {}  // NOLINT: rebinding is implicit
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p); }
    template <class U>
    bool operator==(const plain_allocator<U>&) const noexcept { return true; }
    template <class U>
    bool operator!=(const plain_allocator<U>&) const noexcept { return false; }
};

} // namespace herald::net::detail
