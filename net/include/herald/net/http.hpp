// herald — the HTTP requests and responses that the server, its transports and the CMS's
// handlers exchange.
#pragma once

#include <herald/authorizer.hpp>
#include <herald/error.hpp>
#include <herald/frame.hpp>
#include <herald/protocol.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald {

/// An HTTP/1.1 request as herald's server read it: request_info (method, target, headers,
/// cookies, peer) plus the body.
struct http_request : request_info {
    std::string version = "HTTP/1.1";
    std::string body;

    /// The target without its query string.
    std::string_view path() const noexcept {
        std::string_view t = target;
        return t.substr(0, t.find('?'));
    }
    /// Whether the client asked to keep the connection open after the response.
    bool keep_alive() const noexcept {
        std::string_view c = header("connection");
        auto has = [&](std::string_view token) {
            for (std::size_t i = 0; i + token.size() <= c.size(); ++i) {
                bool eq = true;
                for (std::size_t k = 0; k < token.size() && eq; ++k)
                    eq = (c[i + k] | 0x20) == token[k];
                if (eq) return true;
            }
            return false;
        };
        if (version == "HTTP/1.0") return has("keep-alive");
        return !has("close");
    }
};

/// A response to write. `content_type` defaults to JSON, the usual answer of herald's endpoints.
struct http_response {
    int status = 200;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    /// Set by frames(): the body is `{"frames":[…]}` of these (and `body` stays empty). The
    /// connection writes each frame's shared text in place, so an answer costs no copy of
    /// what it carries however many clients it goes to.
    std::optional<std::vector<frame_ptr>> frame_body;
    /// How a frame body opens: `{"frames":[`, or with the protocol version the poll
    /// negotiated, `{"protocol":"herald.v2","frames":[` (envelope_for()). Static text.
    std::string_view envelope = envelope_open;

    /// Bytes of the body, either kind.
    std::size_t body_size() const noexcept {
        if (!frame_body) return body.size();
        std::size_t n = envelope.size() + envelope_close.size();
        for (const frame_ptr& f : *frame_body) n += f->text.size();
        if (!frame_body->empty()) n += frame_body->size() - 1;  // the commas
        return n;
    }
    /// The body as one string (a copy of a frame body: for tests and logs, not the write path).
    std::string body_text() const {
        return frame_body ? protocol::encode_poll_answer(*frame_body, envelope) : body;
    }
    static constexpr std::string_view envelope_open = "{\"frames\":[", envelope_close = "]}";
    /// The opening of an answer that names protocol version `v` (a poll that offered versions).
    static constexpr std::string_view envelope_for(int v) noexcept {
        constexpr std::string_view named[] = {"{\"protocol\":\"herald.v1\",\"frames\":[",
                                              "{\"protocol\":\"herald.v2\",\"frames\":["};
        static_assert(std::size(named) == protocol::latest_version);
        return named[std::clamp(v, 1, protocol::latest_version) - 1];
    }

    static http_response json(int status, std::string body) {
        http_response r;
        r.status = status;
        r.body = std::move(body);
        return r;
    }
    /// A herald.v1 answer, `{"frames":[…]}` (protocol::encode_poll_answer): what every
    /// long-poll, `/herald/publish` and `/herald/ws` request is answered with over HTTP.
    static http_response frames(int status, std::vector<frame_ptr> fs, std::string_view envelope = envelope_open) {
        http_response r;
        r.status = status;
        r.frame_body = std::move(fs);
        r.envelope = envelope;
        return r;
    }
    /// How the protocol endpoints refuse a request: `{"frames":[error]}`, one `error` frame
    /// with the code's wire name and `message` (by default the code's).
    static http_response refusal(int status, std::error_code ec, std::string_view message = {}) {
        return frames(status, {protocol::make_error(ec, {}, 0, message)});
    }
    /// herald's error body for its other endpoints (`/herald/diagnose`, the host's own
    /// refusals, the CMS's pages), `{"error":{"code":…,"message":…}}`: `code` is the wire name
    /// of a herald error (error.hpp), or of an HTTP-level problem ("not_found", "malformed_request").
    static http_response error(int status, std::string_view code, std::string_view message) {
        nlohmann::json j = {{"error", {{"code", std::string(code)}, {"message", std::string(message)}}}};
        return json(status, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    /// The same, for a herald error code (the message defaults to the code's).
    static http_response error(int status, std::error_code ec, std::string_view message = {}) {
        return error(status, to_wire(ec), message.empty() ? ec.message() : std::string(message));
    }
    static http_response text(int status, std::string body) {
        http_response r;
        r.status = status;
        r.content_type = "text/plain; charset=utf-8";
        r.body = std::move(body);
        return r;
    }
};

/// The reason phrase of an HTTP status code ("Unknown" for one herald does not send).
inline const char* http_reason(int status) noexcept {
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    }
    return "Unknown";
}

} // namespace herald
