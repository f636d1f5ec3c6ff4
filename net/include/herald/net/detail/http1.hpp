// herald — the HTTP/1.1 codec of the network host, without a socket: a request reader fed
// bytes as they come (one request at a time, so that pipelined ones wait their turn), and
// the response head and chunk encoders. tcp_connection drives it; a fuzzer can too.
#pragma once

#include <herald/net/http.hpp>

#include <websocketpp/http/request.hpp>

#include <cstddef>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace herald::net::detail::http1 {

struct reader_limits {
    std::size_t max_body_bytes = 64 * 1024;
};

/// Reads one HTTP/1.1 request at a time from bytes fed in any cut. feed() consumes at most
/// up to the end of the current request: what follows (a pipelined request) is the caller's
/// to keep and feed after take(). After an error, reset() before feeding again.
///
/// @code
/// request_reader rd(limits);
/// auto r = rd.feed(p, n);
/// if (r.what == request_reader::ready) { http_request q = rd.take(); /* p + r.used: next */ }
/// @endcode
class request_reader {
public:
    enum status { need_more, ready, error };
    struct result {
        status what = need_more;
        std::size_t used = 0;  ///< bytes of the input that belong to this request
        int code = 0;          ///< with `error`: the HTTP status to answer (4xx/5xx)
        std::string why;       ///< with `error`: for the error body
    };

    explicit request_reader(const reader_limits& l) : limits_(l) {}

    /// Consumes bytes of the current request (a new one starts on the first byte after take()).
    result feed(const char* data, std::size_t n) {
        result out;
        if (!parser_) {
            parser_ = std::make_unique<websocketpp::http::parser::request>();
            parser_->set_max_body_size(limits_.max_body_bytes);
            raw_.clear();
            bytes_ = 0;
        }
        try {
            out.used = parser_->consume(data, n);
        } catch (const websocketpp::http::exception& e) {
            return fail(static_cast<int>(e.m_error_code), e.what());
        } catch (const std::exception& e) {
            return fail(400, e.what());
        }
        if (raw_.size() + out.used <= 16384 + limits_.max_body_bytes) raw_.append(data, out.used);
        bytes_ += out.used;
        if (parser_->ready()) out.what = ready;
        return out;
    }

    /// Whether a request has begun to arrive (some of its bytes were fed).
    bool started() const noexcept { return parser_ && bytes_ > 0; }

    /// The ready request; the reader goes on to the next one.
    http_request take(const std::string& remote) {
        http_request r;
        r.method = parser_->get_method();
        r.target = parser_->get_uri();
        r.version = parser_->get_version();
        r.remote = remote;
        for (const auto& [k, v] : parser_->get_headers()) r.headers.emplace_back(k, v);
        r.body = parser_->get_body();
        parser_.reset();
        return r;
    }

    /// The last request as received, head and body (for a WebSocket handshake, which
    /// websocketpp reads again); empties it.
    std::string take_raw() {
        std::string r = std::move(raw_);
        raw_.clear();
        raw_.shrink_to_fit();
        return r;
    }

    /// Forgets the current request.
    void reset() noexcept {
        parser_.reset();
        bytes_ = 0;
    }

private:
    result fail(int code, std::string why) {
        result out;
        out.what = error;
        out.code = (code < 400 || code > 599) ? 400 : code;
        out.why = std::move(why);
        reset();
        return out;
    }

    const reader_limits& limits_;
    std::unique_ptr<websocketpp::http::parser::request> parser_;
    std::size_t bytes_ = 0;
    std::string raw_;
};

/// The status line and headers of `res`, with `framing` (a Content-Length or
/// Transfer-Encoding line; empty: the body ends with the connection).
inline std::string response_head(const http_response& res, bool keep_alive, std::string_view framing) {
    std::string head;
    head.reserve(160 + res.body.size());
    head += "HTTP/1.1 ";
    head += std::to_string(res.status);
    head += ' ';
    head += http_reason(res.status);
    head += "\r\nServer: herald\r\nCache-Control: no-store\r\nContent-Type: ";
    head += res.content_type;
    if (!framing.empty()) { head += "\r\n"; head += framing; }
    head += keep_alive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
    for (const auto& [k, v] : res.headers) { head += k; head += ": "; head += v; head += "\r\n"; }
    head += "\r\n";
    return head;
}

/// One chunk of a `Transfer-Encoding: chunked` body (`bytes` not empty: an empty chunk ends it).
inline std::string chunk(std::string_view bytes) {
    char size[20];
    const int n = std::snprintf(size, sizeof size, "%zx\r\n", bytes.size());
    std::string c(size, static_cast<std::size_t>(n));
    c.append(bytes);
    c += "\r\n";
    return c;
}

/// The end of a chunked body.
inline constexpr std::string_view last_chunk = "0\r\n\r\n";

} // namespace herald::net::detail::http1
