// herald-fuzz-http-request: HTTP/1.1 requests as the server's connection reads them
// (net/include/herald/net/detail/tcp_connection.hpp, tcp_connection::feed in http mode):
// websocketpp's request parser with a body limit, pipelined requests in one buffer, every
// exception a 4xx answer. Checks: no crash, no hang, and the parser never claims more bytes
// than it was given. The input is fed twice: in one read, and in two (two_reads.hpp).
#include "two_reads.hpp"

#include <websocketpp/http/request.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr std::size_t max_body_bytes = 64 * 1024;  // net::detail::connection_limits::max_body_bytes

// tcp_connection::feed's http mode, with routing replaced by taking the request's parts (as
// tcp_connection::make_request does) and answering at once (the next pipelined request follows).
// Keep it the one function the harness drives: it is to be re-pointed at herald's own HTTP
// codec once there is one.
class http_feed {
public:
    // @returns false once the connection is refused (answered 4xx and closed).
    bool feed(const char* data, std::size_t n) {
        while (n > 0 && status_ == 0) {
            if (!request_) {
                request_ = std::make_unique<websocketpp::http::parser::request>();
                request_->set_max_body_size(max_body_bytes);
            }
            std::size_t used = 0;
            try {
                used = request_->consume(data, n);
            } catch (const websocketpp::http::exception& e) {
                refuse(static_cast<int>(e.m_error_code));
                break;
            } catch (const std::exception&) {
                refuse(400);
                break;
            }
            if (used > n) __builtin_trap();
            data += used;
            n -= used;
            if (request_->ready()) {
                take(*request_);
                request_.reset();
            } else if (used == 0) {
                break;
            }
        }
        return status_ == 0;
    }

    std::size_t requests() const noexcept { return requests_; }

private:
    void refuse(int status) {
        if (status < 400 || status > 599) status = 400;  // as tcp_connection::refuse
        status_ = status;
    }

    void take(websocketpp::http::parser::request& p) {
        std::vector<std::pair<std::string, std::string>> headers;
        for (const auto& [k, v] : p.get_headers()) headers.emplace_back(k, v);
        const std::string target = p.get_uri(), method = p.get_method(), version = p.get_version();
        if (p.get_body().size() > max_body_bytes) __builtin_trap();
        (void)p.get_header("Upgrade");  // the route's first look
        ++requests_;
    }

    std::unique_ptr<websocketpp::http::parser::request> request_;
    std::size_t requests_ = 0;
    int status_ = 0;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    feed_in_one_and_two_reads<http_feed>(data, size);
    return 0;
}
