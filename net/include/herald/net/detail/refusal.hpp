// herald — the answer to a connection the server does not let in (over a connection limit,
// or out of descriptors): a short response written without blocking, then the socket goes.
#pragma once

#include <herald/net/http.hpp>
#include <herald/net/detail/http1.hpp>

#include <asio.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

namespace herald::net::detail {

/// Writes `status` with `Retry-After` and `Connection: close` to a just-accepted socket, in
/// one non-blocking write (a new socket's send buffer takes the few hundred bytes whole),
/// before reading anything. With `linger`, the socket then half-closes and drops what the
/// peer sends for up to 2 s, so that the peer's unread request does not turn the close into
/// a reset that destroys the answer; at most 256 refused sockets linger at once (the rest
/// close at once), so that refusing does not itself hold many descriptors.
inline void refuse_connection(asio::ip::tcp::socket socket, int status, std::string_view code,
                              std::string_view message, std::chrono::seconds retry_after, bool linger) {
    static std::atomic<int> lingering{0};
    std::error_code ec;
    socket.non_blocking(true, ec);
    http_response res = http_response::error(status, code, message);
    res.headers.emplace_back("Retry-After", std::to_string(retry_after.count()));
    std::string bytes = http1::response_head(res, false, "Content-Length: " + std::to_string(res.body.size()));
    bytes += res.body;
    socket.write_some(asio::buffer(bytes), ec);
    socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    if (!linger || lingering.load() >= 256) {
        socket.close(ec);
        return;
    }
    ++lingering;
    struct held {
        asio::ip::tcp::socket s;
        asio::steady_timer t;
        explicit held(asio::ip::tcp::socket&& sock) : s(std::move(sock)), t(s.get_executor()) {}
        ~held() { --lingering; }
        void drain(const std::shared_ptr<held>& self) {
            s.async_wait(asio::ip::tcp::socket::wait_read, [self](std::error_code e) {
                if (e) return;
                char sink[4096];
                const std::size_t n = self->s.read_some(asio::buffer(sink), e);
                if (e == asio::error::would_block || e == asio::error::try_again || (!e && n > 0)) {
                    self->drain(self);
                    return;
                }
                self->t.cancel();  // the peer closed (or failed): its timer handler closes
            });
        }
    };
    auto h = std::make_shared<held>(std::move(socket));
    h->t.expires_after(std::chrono::seconds(2));
    h->t.async_wait([h](std::error_code) {
        std::error_code ignored;
        h->s.close(ignored);
    });
    h->drain(h);
}

} // namespace herald::net::detail
