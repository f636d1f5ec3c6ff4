// herald — `/herald/diagnose`: what the server saw of a request, answered at once, after a
// hold, or in two parts, so that herald-doctor can tell which proxies on the way cut idle
// connections (they answer 502/504, or close, before the hold ends) and which buffer
// responses (they deliver the first part only with the last).
#pragma once

#include <herald/net/http.hpp>
#include <herald/net/detail/tcp_connection.hpp>

#include <asio.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace herald::detail {

using net::clock;
using net::stream_handler;
using connection = net::detail::tcp_connection;

/// Longest `?hold=` accepted: past typical proxy read timeouts (60–100 s), short of tying a
/// connection up for long.
inline constexpr std::chrono::milliseconds diagnose_max_hold{120000};
/// How long `?stream=1` waits between its first part and the rest.
inline constexpr std::chrono::milliseconds diagnose_stream_gap{1500};
/// Diagnose answers held (`?hold`) or streaming (`?stream`) at once, server-wide: past it,
/// 429 with `Retry-After`. herald-doctor needs one at a time; a few more leave room for
/// several operators, not for a flood of held connections.
inline constexpr int diagnose_max_held = 8;
/// Seconds a refused held diagnose is told to wait (Retry-After).
inline constexpr int diagnose_retry_after_s = 5;

/// Whether header `name` carries credentials, whose values diagnose never echoes.
inline bool is_credential_header(std::string_view name) {
    std::string n(name);
    std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return n == "cookie" || n == "authorization" || n == "proxy-authorization" || n == "set-cookie" ||
           n == "set-cookie2" || n == "x-api-key" || n == "x-auth-token" || n == "x-csrf-token" || n == "x-xsrf-token";
}

/// What diagnose shows of a header's value: the value, or for credentials only its length.
inline std::string shown_header_value(std::string_view name, const std::string& value) {
    if (!is_credential_header(name)) return value;
    return "<redacted, " + std::to_string(value.size()) + " bytes>";
}

/// What diagnose shows of a request target: the target, with the value of an `access_token`
/// query parameter (herald.js's credentials) replaced by its length.
inline std::string shown_target(std::string_view target) {
    std::string out(target);
    constexpr std::string_view key = "access_token=";
    const std::size_t q = out.find('?');
    for (std::size_t at = q; at != std::string::npos && at < out.size(); at = out.find('&', at)) {
        ++at;  // past '?' or '&'
        if (out.compare(at, key.size(), key) != 0) continue;
        const std::size_t from = at + key.size();
        const std::size_t to = std::min(out.find('&', from), out.size());
        const std::string shown = "<redacted, " + std::to_string(to - from) + " bytes>";
        out.replace(from, to - from, shown);
        at = from + shown.size();
    }
    return out;
}

/// One place among the diagnose answers held at once (diagnose_max_held); given back once.
class diagnose_slot {
public:
    diagnose_slot() = default;
    explicit diagnose_slot(std::atomic<int>& held) : held_(&held) {}
    diagnose_slot(diagnose_slot&& o) noexcept : held_(std::exchange(o.held_, nullptr)) {}
    diagnose_slot& operator=(diagnose_slot&&) = delete;
    ~diagnose_slot() { release(); }
    /// Takes a place. @returns an empty slot when all are taken.
    static diagnose_slot take(std::atomic<int>& held) {
        if (held.fetch_add(1) >= diagnose_max_held) {
            held.fetch_sub(1);
            return {};
        }
        return diagnose_slot(held);
    }
    explicit operator bool() const noexcept { return held_ != nullptr; }
    void release() noexcept {
        if (held_) std::exchange(held_, nullptr)->fetch_sub(1);
    }

private:
    std::atomic<int>* held_ = nullptr;
};

/// JSON text of a report; header values that are not UTF-8 are replaced, not thrown on.
inline std::string report_text(const nlohmann::json& j, int indent = 2) {
    return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// Answers a diagnose request with `report` (the server's view of the request, as JSON):
/// - no parameter: at once;
/// - `?hold=MS` (0..120000): after MS milliseconds, with `"held_ms": MS` added;
/// - `?stream=1`: `application/x-ndjson` in parts, `{"part":1,...}` at once and
///   `{"part":2,...,"diagnose":report}` 1.5 s later. The first part is small on purpose: a
///   buffering proxy holds it until the response ends.
/// Neither ties up an I/O thread: a timer on the connection's strand answers. On drain, a
/// hold answers 503 at once and a stream ends at once. Bad parameters get 400. At most
/// diagnose_max_held holds and streams at once (`held` counts them): past it, 429.
inline void serve_diagnose(const std::shared_ptr<connection>& c, const http_request& r, nlohmann::json report,
                           std::atomic<int>& held);

/// A diagnose answer in waiting: its timer, and the request to answer.
class diagnose_reply final : public stream_handler, public std::enable_shared_from_this<diagnose_reply> {
public:
    diagnose_reply(const std::shared_ptr<connection>& c, http_request r, nlohmann::json report, diagnose_slot slot)
        : conn_(c), request_(std::move(r)), report_(std::move(report)), timer_(c->get_executor()),
          since_(clock::now()), slot_(std::move(slot)) {}

    /// Answers `report` after `delay`.
    void hold(std::chrono::milliseconds delay) {
        report_["held_ms"] = delay.count();
        auto c = conn_.lock();
        if (!c) return;
        c->hold(shared_from_this());
        wait(delay, [this] { answer(http_response::json(200, report_text(report_))); });
    }

    /// Sends the first part now and the rest after diagnose_stream_gap.
    void stream() {
        auto c = conn_.lock();
        if (!c) return;
        http_response head;
        head.content_type = "application/x-ndjson";
        head.body = part(1) + "\n";
        streaming_ = true;
        c->respond_in_parts(request_, std::move(head), shared_from_this());
        wait(diagnose_stream_gap, [this] { finish_stream(); });
    }

    void on_read(const char*, std::size_t) override {}
    void on_drain(std::chrono::milliseconds) override {
        timer_.cancel();
        if (streaming_) finish_stream();
        else answer(http_response::json(503, R"({"error":{"code":"shutting_down","message":"the server is draining"}})"));
    }
    void on_close() override {
        done_ = true;
        slot_.release();
        timer_.cancel();
    }

private:
    template <class F>
    void wait(std::chrono::milliseconds delay, F then) {
        timer_.expires_after(delay);
        timer_.async_wait([self = shared_from_this(), then](std::error_code ec) {
            if (!ec && !self->done_) then();
        });
    }

    std::string part(int n) const {
        nlohmann::json p = {{"part", n}, {"of", 2}, {"after_ms", elapsed_ms()}};
        if (n == 2) p["diagnose"] = report_;
        return report_text(p, -1);
    }

    long long elapsed_ms() const {
        return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - since_).count();
    }

    void finish_stream() {
        auto c = conn_.lock();
        if (!c || done_) return;
        done_ = true;
        slot_.release();
        c->write_part(part(2) + "\n");
        c->end_parts();
    }

    void answer(http_response&& res) {
        auto c = conn_.lock();
        if (!c || done_) return;
        done_ = true;
        slot_.release();
        c->respond(request_, std::move(res));
    }

    std::weak_ptr<connection> conn_;
    http_request request_;
    nlohmann::json report_;
    asio::steady_timer timer_;
    clock::time_point since_;
    bool streaming_ = false, done_ = false;
    diagnose_slot slot_;
};

inline void serve_diagnose(const std::shared_ptr<connection>& c, const http_request& r, nlohmann::json report,
                           std::atomic<int>& held) {
    auto bad = [&](std::string_view message) {
        c->respond(r, http_response::json(400, nlohmann::json({{"error", {{"code", "malformed_request"}, {"message", message}}}}).dump()));
    };
    auto later = [&](std::shared_ptr<diagnose_reply>& reply) {
        diagnose_slot slot = diagnose_slot::take(held);
        if (!slot) {
            http_response busy = http_response::error(429, "too_many_requests", "too many held diagnose answers; retry later");
            busy.headers.emplace_back("Retry-After", std::to_string(diagnose_retry_after_s));
            c->respond(r, std::move(busy));
            return false;
        }
        reply = std::make_shared<diagnose_reply>(c, r, std::move(report), std::move(slot));
        return true;
    };
    std::shared_ptr<diagnose_reply> reply;
    const std::string_view hold = r.query("hold"), stream = r.query("stream");
    if (!stream.empty()) {
        if (stream != "1") return bad("`stream` must be 1");
        if (!hold.empty()) return bad("`stream` and `hold` do not combine");
        if (r.method == "HEAD") return c->respond(r, http_response::json(200, report_text(report)));
        if (later(reply)) reply->stream();
        return;
    }
    if (!hold.empty()) {
        long long ms = 0;
        for (char d : hold) {
            if (d < '0' || d > '9' || ms > diagnose_max_hold.count()) return bad("`hold` must be 0..120000 (milliseconds)");
            ms = ms * 10 + (d - '0');
        }
        if (ms > diagnose_max_hold.count()) return bad("`hold` must be 0..120000 (milliseconds)");
        if (later(reply)) reply->hold(std::chrono::milliseconds(ms));
        return;
    }
    c->respond(r, http_response::json(200, report_text(report)));
}

} // namespace herald::detail
