// herald-doctor — the network side: one TCP connection at a time, every step under a
// deadline, and what came back when. HTTP heads are parsed by websocketpp's parser; the
// WebSocket handshake and frames by websocketpp's hybi13 processor (nothing of RFC 6455 is
// written here). Bodies are read as HTTP/1.1 frames them: Content-Length, chunked, or up to
// the close.
#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <nlohmann/json.hpp>
#include <websocketpp/config/core_client.hpp>
#include <websocketpp/http/request.hpp>
#include <websocketpp/http/response.hpp>
#include <websocketpp/processors/hybi13.hpp>
#include <websocketpp/uri.hpp>

#include <algorithm>
#include <memory>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace herald::doctor {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

inline bool contains_nocase(std::string_view hay, std::string_view needle) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c + 32) : c; };
    return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                       [&](char a, char b) { return lower(a) == lower(b); }) != hay.end();
}

inline double ms_between(clock::time_point a, clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

/// Where herald is: `http[s]://host[:port][/prefix]`; its endpoints are `prefix + /herald/...`.
struct location {
    std::string host, port = "80", prefix;
    bool tls = false;       ///< https (and wss for the WebSocket check)
    bool insecure = false;  ///< https: accept a certificate that does not verify (--insecure)

    /// Parses a URL; a trailing `/herald/...` is dropped (so the info URL works too).
    /// @returns an empty optional, and `why`, for a URL the doctor cannot use.
    static std::optional<location> parse(std::string url, std::string& why) {
        location l;
        if (url.rfind("https://", 0) == 0) {
            l.tls = true;
            l.port = "443";
            url.erase(0, 8);
        } else if (url.rfind("http://", 0) == 0) {
            url.erase(0, 7);
        } else {
            why = "the URL must start with http:// or https://";
            return std::nullopt;
        }
        const std::size_t slash = url.find('/');
        std::string authority = url.substr(0, slash);
        l.prefix = slash == std::string::npos ? "" : url.substr(slash);
        if (auto h = l.prefix.find("/herald"); h != std::string::npos) l.prefix.erase(h);
        while (!l.prefix.empty() && l.prefix.back() == '/') l.prefix.pop_back();
        if (authority.find('@') != std::string::npos) {
            why = "credentials in the URL are not supported: use --header or --cookie";
            return std::nullopt;
        }
        const std::size_t colon = authority.rfind(':');
        if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
            l.port = authority.substr(colon + 1);
            authority.erase(colon);
        }
        if (!authority.empty() && authority.front() == '[' && authority.back() == ']')
            authority = authority.substr(1, authority.size() - 2);
        l.host = authority;
        if (l.host.empty() || l.port.empty() || l.port.find_first_not_of("0123456789") != std::string::npos) {
            why = "cannot read a host and port in the URL";
            return std::nullopt;
        }
        return l;
    }

    /// The Host header value (the port only when not the default).
    std::string host_header() const {
        const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
        return port == (tls ? "443" : "80") ? h : h + ":" + port;
    }
    /// The origin a page from this site would send.
    std::string origin() const { return (tls ? "https://" : "http://") + host_header(); }
    std::string path(std::string_view p) const { return prefix + std::string(p); }
};

/// One TCP connection whose every step ends by a deadline.
class wire {
public:
    wire() = default;
    wire(const wire&) = delete;
    wire& operator=(const wire&) = delete;

    std::error_code connect(const location& where, clock::time_point deadline) {
        asio::ip::tcp::resolver resolver(ioc_);
        asio::ip::tcp::resolver::results_type endpoints;
        std::error_code ec = run(deadline, [&](auto done) {
            resolver.async_resolve(where.host, where.port, [&, done](std::error_code e, auto results) {
                endpoints = std::move(results);
                done(e);
            });
        }, [&] { resolver.cancel(); });
        if (ec) return ec;
        ec = run(deadline, [&](auto done) {
            asio::async_connect(socket_, endpoints, [done](std::error_code e, const auto&) { done(e); });
        }, [&] { socket_.close(); });
        if (ec || !where.tls) return ec;
        return handshake(where, deadline);
    }

    std::error_code send(std::string_view bytes, clock::time_point deadline) {
        return run(deadline, [&](auto done) {
            auto cb = [done](std::error_code e, std::size_t) { done(e); };
            if (tls_) asio::async_write(*tls_, asio::buffer(bytes), cb);
            else asio::async_write(socket_, asio::buffer(bytes), cb);
        }, [&] { socket_.cancel(); });
    }

    /// Appends what arrives next to `in`. asio::error::eof when the peer closed,
    /// asio::error::timed_out at the deadline.
    std::error_code receive(std::string& in, clock::time_point deadline) {
        char buf[16384];
        std::size_t got = 0;
        std::error_code ec = run(deadline, [&](auto done) {
            auto cb = [&, done](std::error_code e, std::size_t n) {
                got = n;
                done(e);
            };
            if (tls_) tls_->async_read_some(asio::buffer(buf), cb);
            else socket_.async_read_some(asio::buffer(buf), cb);
        }, [&] { socket_.cancel(); });
        in.append(buf, got);
        // A TLS peer that closes without close_notify (a proxy cutting) is an end of stream too.
        if (ec == asio::ssl::error::stream_truncated) ec = asio::error::eof;
        return got > 0 ? std::error_code() : ec;
    }

private:
    // https: TLS 1.2+, ALPN http/1.1, SNI; the certificate checked against the system's trust
    // store and the host name, unless `insecure`.
    std::error_code handshake(const location& where, clock::time_point deadline) {
        ssl_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
        ssl_->set_options(asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
        static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
        SSL_CTX_set_alpn_protos(ssl_->native_handle(), alpn, sizeof alpn);
        std::error_code ec;
        if (!where.insecure) {
            ssl_->set_default_verify_paths(ec);
            ssl_->set_verify_mode(asio::ssl::verify_peer, ec);
            ssl_->set_verify_callback(asio::ssl::host_name_verification(where.host), ec);
        }
        tls_.emplace(socket_, *ssl_);
        SSL_set_tlsext_host_name(tls_->native_handle(), where.host.c_str());
        return run(deadline, [&](auto done) {
            tls_->async_handshake(asio::ssl::stream_base::client, [done](std::error_code e) { done(e); });
        }, [&] { socket_.close(); });
    }

    // Starts `op`, runs the io_context until it completes or the deadline passes; past the
    // deadline, `cancel` aborts it and the answer is timed_out.
    template <class Op, class Cancel>
    std::error_code run(clock::time_point deadline, Op op, Cancel cancel) {
        std::optional<std::error_code> result;
        op([&result](std::error_code e) { result = e; });
        ioc_.restart();
        ioc_.run_until(deadline);
        if (result) return *result;
        cancel();
        ioc_.restart();
        ioc_.run();
        return asio::error::timed_out;
    }

    asio::io_context ioc_;
    asio::ip::tcp::socket socket_{ioc_};
    std::unique_ptr<asio::ssl::context> ssl_;
    std::optional<asio::ssl::stream<asio::ip::tcp::socket&>> tls_;
};

/// An HTTP answer, with when each part of it came.
struct http_reply {
    std::error_code error;          ///< how reading ended early: refused, eof, timed_out...
    int status = 0;                 ///< 0: no status line came
    std::string reason;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    bool complete = false;          ///< the body came whole (by its framing)
    double head_ms = -1;            ///< when the head came, from the start
    double done_ms = -1;            ///< when the reading ended (complete, closed or timed out)
    std::vector<std::pair<double, std::size_t>> arrivals;  ///< (ms, body size so far)

    std::string header(std::string_view name) const {
        for (const auto& [k, v] : headers)
            if (k.size() == name.size() && contains_nocase(k, name))
                return v;
        return {};
    }
    nlohmann::json json_body() const { return nlohmann::json::parse(body, nullptr, false); }
    /// Content-Length, when present and a number.
    std::optional<std::size_t> content_length() const {
        const std::string v = header("Content-Length");
        if (v.empty() || v.size() > 15 || v.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
        return std::stoul(v);
    }
};

/// Longest body the doctor reads: herald's answers are small; a proxy's page may not be.
inline constexpr std::size_t max_body = 1 << 20;

/// A request to send: method, path (with query), headers, body.
struct http_request_spec {
    http_request_spec(std::string m, std::string t, std::vector<std::pair<std::string, std::string>> h, std::string b = {})
        : method(std::move(m)), target(std::move(t)), headers(std::move(h)), body(std::move(b)) {}

    std::string method, target;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    std::string bytes(const location& where) const {
        std::string r = method + " " + target + " HTTP/1.1\r\nHost: " + where.host_header() + "\r\n";
        for (const auto& [k, v] : headers) r += k + ": " + v + "\r\n";
        if (!body.empty() || method == "POST") r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
        return r + "\r\n" + body;
    }
};

namespace detail {

// Reads a head from `in` (more from `w` as needed) into `head` and `r` (status, reason,
// headers); leaves what follows the head in `in`.
inline bool read_head(wire& w, std::string& in, http_reply& r, websocketpp::http::parser::response& head,
                      clock::time_point sent, clock::time_point deadline) {
    std::size_t end;
    while ((end = in.find("\r\n\r\n")) == std::string::npos) {
        if (in.size() > 65536) { r.error = std::make_error_code(std::errc::message_size); return false; }
        if ((r.error = w.receive(in, deadline))) return false;
    }
    try {
        head.consume(in.data(), end + 4);
    } catch (const std::exception&) {
        r.error = std::make_error_code(std::errc::protocol_error);
        return false;
    }
    r.head_ms = ms_between(sent, clock::now());
    r.status = head.get_status_code();
    r.reason = head.get_status_msg();
    for (const auto& [k, v] : head.get_headers()) r.headers.emplace_back(k, v);
    in.erase(0, end + 4);
    return true;
}

// Moves whole chunks from `raw` to `body`. @returns true at the last (empty) chunk.
inline bool dechunk(std::string& raw, std::string& body) {
    for (;;) {
        const std::size_t eol = raw.find("\r\n");
        if (eol == std::string::npos) return false;
        std::size_t size = 0;
        try {
            size = std::stoul(raw.substr(0, eol), nullptr, 16);
        } catch (const std::exception&) {
            throw std::system_error(std::make_error_code(std::errc::protocol_error));
        }
        if (size == 0) return true;
        if (raw.size() < eol + 2 + size + 2) return false;
        body.append(raw, eol + 2, size);
        raw.erase(0, eol + 2 + size + 2);
    }
}

} // namespace detail

/// Sends `req` on a new connection and reads the answer until `deadline`; the times in the
/// reply count from the start (connecting included), as a browser's would.
inline http_reply exchange(const location& where, const http_request_spec& req, clock::time_point deadline) {
    http_reply r;
    wire w;
    const auto sent = clock::now();
    if ((r.error = w.connect(where, deadline))) return r;
    if ((r.error = w.send(req.bytes(where), deadline))) return r;
    std::string in;
    auto finish = [&] { r.done_ms = ms_between(sent, clock::now()); return r; };
    websocketpp::http::parser::response head;
    if (!detail::read_head(w, in, r, head, sent, deadline)) return finish();
    const bool chunked = contains_nocase(r.header("Transfer-Encoding"), "chunked");
    std::optional<std::size_t> want;
    if (!chunked) want = r.content_length();
    if (r.status == 204 || r.status == 304 || r.status < 200) want = 0;
    std::string raw;
    for (;;) {
        const std::size_t before = r.body.size();
        if (chunked) {
            raw += in;
            try {
                r.complete = detail::dechunk(raw, r.body);
            } catch (const std::system_error& e) {
                r.error = e.code();
                return finish();
            }
        } else {
            r.body += in;
            r.complete = want && r.body.size() >= *want;
        }
        in.clear();
        if (r.body.size() > before) r.arrivals.emplace_back(ms_between(sent, clock::now()), r.body.size());
        if (r.complete) return finish();
        if (r.body.size() + raw.size() > max_body) {
            r.error = std::make_error_code(std::errc::message_size);
            return finish();
        }
        if (std::error_code ec = w.receive(in, deadline)) {
            // A body without framing ends with the connection.
            if (ec == asio::error::eof && !chunked && !want) r.complete = true;
            else r.error = ec;
            return finish();
        }
    }
}

/// What a WebSocket handshake came to.
struct websocket_outcome {
    http_reply reply;              ///< the answer to the upgrade (head; body unless 101)
    std::string handshake_error;   ///< a 101 that is not a valid WebSocket handshake
    bool welcome = false;          ///< herald's `welcome` frame came
    double welcome_ms = -1;
    nlohmann::json first_frame;    ///< the first text frame, parsed
    std::optional<int> close_code; ///< the server's close frame, if one came instead
    std::string close_reason;
};

/// Opens a WebSocket to `target` with websocketpp's handshake, and waits for herald's
/// `welcome` frame until `deadline`. Closes politely after it.
inline websocket_outcome websocket_probe(const location& where, const std::string& target,
                                         const std::vector<std::pair<std::string, std::string>>& headers,
                                         clock::time_point deadline) {
    using config = websocketpp::config::core_client;
    websocket_outcome o;
    auto manager = std::make_shared<config::con_msg_manager_type>();
    config::rng_type rng;
    websocketpp::processor::hybi13<config> proc(false, false, manager, rng);

    websocketpp::http::parser::request req;
    auto uri = std::make_shared<websocketpp::uri>((where.tls ? "wss://" : "ws://") + where.host_header() + target);
    proc.client_handshake_request(req, uri, {"herald.v1"});
    for (const auto& [k, v] : headers) req.replace_header(k, v);

    wire w;
    const auto sent = clock::now();
    if ((o.reply.error = w.connect(where, deadline))) return o;
    if ((o.reply.error = w.send(req.raw(), deadline))) return o;
    std::string in;
    websocketpp::http::parser::response res;
    if (!detail::read_head(w, in, o.reply, res, sent, deadline)) return o;

    if (o.reply.status != 101) {
        // Not upgraded: read what the answer says (herald explains its 426 in the body).
        const auto body_deadline = std::min(deadline, clock::now() + milliseconds(2000));
        o.reply.body = in;
        const auto length = o.reply.content_length();
        while (o.reply.body.size() < 65536 && !(length && o.reply.body.size() >= *length))
            if (w.receive(o.reply.body, body_deadline)) break;
        return o;
    }
    if (auto ec = proc.validate_server_handshake_response(req, res)) {
        o.handshake_error = ec.message();
        return o;
    }
    for (;;) {
        std::error_code ec;
        std::size_t used = 0;
        while (used < in.size() && !ec) {
            used += proc.consume(reinterpret_cast<std::uint8_t*>(in.data()) + used, in.size() - used, ec);
            if (proc.ready()) {
                auto msg = proc.get_message();
                if (msg->get_opcode() == websocketpp::frame::opcode::close) {
                    o.close_code = websocketpp::close::extract_code(msg->get_payload(), ec);
                    o.close_reason = websocketpp::close::extract_reason(msg->get_payload(), ec);
                    return o;
                }
                if (msg->get_opcode() == websocketpp::frame::opcode::text) {
                    o.first_frame = nlohmann::json::parse(msg->get_payload(), nullptr, false);
                    o.welcome = o.first_frame.is_object() && o.first_frame.value("type", "") == "welcome";
                    o.welcome_ms = ms_between(sent, clock::now());
                    auto bye = manager->get_message();
                    if (!proc.prepare_close(websocketpp::close::status::normal, "herald-doctor done", bye))
                        w.send(bye->get_header() + bye->get_payload(), std::min(deadline, clock::now() + milliseconds(500)));
                    return o;
                }
            }
        }
        if (ec) {
            o.handshake_error = "bad WebSocket framing: " + ec.message();
            return o;
        }
        in.clear();
        if ((o.reply.error = w.receive(in, deadline))) return o;
    }
}

} // namespace herald::doctor
