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
    std::size_t max_body_bytes = 64 * 1024;  ///< 413 over it
    std::size_t max_header_bytes = 8 * 1024; ///< 431 over it (websocketpp's parser stops at 16000)
    std::size_t max_headers = 100;           ///< 431 over it
};

/// Reads one HTTP/1.1 request at a time from bytes fed in any cut. feed() consumes at most
/// up to the end of the current request: what follows (a pipelined request) is the caller's
/// to keep and feed after take(). After an error, reset() before feeding again.
///
/// Strict where leniency lets a request be read two ways (request smuggling through a proxy
/// that reads it the other way): a request with `Transfer-Encoding` is refused (501: herald
/// reads no chunked request bodies), so is a `Content-Length` that is not plain digits (400);
/// `CONNECT` (405), an absolute-form target naming another host than `Host` (400; one naming
/// the same host is rewritten to origin-form), any other target not starting with `/` (400,
/// `*` allowed for OPTIONS) and versions other than HTTP/1.0 and 1.1 (505). The head is
/// checked as soon as it is whole, before any body is read.
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
            head_ = 0;
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
        if (head_ == 0) {
            // The head ends at the first blank line; look only at what is new (and the 3
            // bytes before it, where the blank line may begin).
            const std::size_t from = raw_.size() - out.used;
            const std::size_t end = raw_.find("\r\n\r\n", from < 3 ? 0 : from - 3);
            if (end == std::string::npos) {
                if (raw_.size() > limits_.max_header_bytes) return fail(431, "request head too large");
            } else {
                head_ = end + 4;
                if (head_ > limits_.max_header_bytes) return fail(431, "request head too large");
                if (result bad = check_head(); bad.what == error) return bad;
            }
        }
        if (parser_->ready()) out.what = ready;
        return out;
    }

    /// Whether the current request's head has arrived whole (its body may follow).
    bool head_done() const noexcept { return parser_ && head_ > 0; }

    /// Whether a request has begun to arrive (some of its bytes were fed).
    bool started() const noexcept { return parser_ && bytes_ > 0; }

    /// The ready request; the reader goes on to the next one.
    http_request take(const std::string& remote) {
        http_request r;
        r.method = parser_->get_method();
        r.target = target_.empty() ? parser_->get_uri() : std::move(target_);
        target_.clear();
        r.version = parser_->get_version();
        r.remote = remote;
        for (const auto& [k, v] : parser_->get_headers()) r.headers.emplace_back(k, v);
        r.body = parser_->get_body();
        r.credentials = percent_decode(r.query("access_token"));
        parser_.reset();
        return r;
    }

    /// `%XX` sequences decoded (a malformed one is kept as is; `+` stays `+`: a token's
    /// base64 keeps its meaning whether or not the client encoded it).
    static std::string percent_decode(std::string_view s) {
        auto hex = [](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        std::string out;
        out.reserve(s.size());
        for (std::size_t i = 0; i < s.size(); ++i) {
            int hi, lo;
            if (s[i] == '%' && i + 2 < s.size() && (hi = hex(s[i + 1])) >= 0 && (lo = hex(s[i + 2])) >= 0) {
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
            } else {
                out += s[i];
            }
        }
        return out;
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
        bytes_ = head_ = 0;
        target_.clear();
    }

private:
    static bool iequal(std::string_view a, std::string_view b) noexcept {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
        return true;
    }

    // The head is whole and websocketpp took it: what it lets through that herald must not.
    result check_head() {
        std::size_t lines = 0;  // the request line and each header line end with a CRLF
        for (std::size_t i = raw_.find("\r\n"); i + 4 <= head_; i = raw_.find("\r\n", i + 2)) ++lines;
        if (lines > limits_.max_headers + 1) return fail(431, "too many header fields");
        const std::string& version = parser_->get_version();
        if (version != "HTTP/1.1" && version != "HTTP/1.0") return fail(505, "herald speaks HTTP/1.1 and 1.0");
        if (!parser_->get_header("Transfer-Encoding").empty())
            return fail(501, "Transfer-Encoding in a request is not supported: send Content-Length");
        const std::string& length = parser_->get_header("Content-Length");
        if (!length.empty() && (length.size() > 18 || length.find_first_not_of("0123456789") != std::string::npos))
            return fail(400, "malformed Content-Length");
        const std::string& method = parser_->get_method();
        if (method == "CONNECT") return fail(405, "herald is not a proxy: CONNECT is refused");
        const std::string& uri = parser_->get_uri();
        if (uri.empty() || uri[0] == '/') return {};
        if (uri == "*" && method == "OPTIONS") return {};
        // Absolute form (RFC 9112 3.2.2): accepted for this host only, read as origin-form.
        std::string_view t = uri;
        std::size_t scheme = 0;
        if (t.size() > 7 && iequal(t.substr(0, 7), "http://")) scheme = 7;
        else if (t.size() > 8 && iequal(t.substr(0, 8), "https://")) scheme = 8;
        if (scheme == 0) return fail(400, "malformed request target");
        t.remove_prefix(scheme);
        const std::size_t slash = t.find_first_of("/?");
        const std::string_view authority = t.substr(0, slash);
        if (authority.empty() || !iequal(authority, parser_->get_header("Host")))
            return fail(400, "request target names another host: herald is not a proxy");
        target_ = slash == std::string_view::npos ? std::string("/") : std::string(t.substr(slash));
        if (target_[0] == '?') target_.insert(0, "/");
        return {};
    }

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
    std::size_t head_ = 0;  // the head's length once it is whole
    std::string raw_;
    std::string target_;    // an absolute-form target, as origin-form
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
