// herald-doctor — the checks: what to ask herald through the proxies, what each answer
// means, and what a sysadmin should change. Each check gives one finding; the verdict and
// the exit code follow from the findings (see docs/operations.md).
#pragma once

#include "probe.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace herald::doctor {

enum class level { ok, note, skipped, warn, fail };

inline const char* to_string(level l) {
    switch (l) {
    case level::ok: return "OK";
    case level::note: return "NOTE";
    case level::skipped: return "SKIPPED";
    case level::warn: return "WARN";
    case level::fail: return "FAIL";
    }
    return "?";
}

/// What one check found.
struct finding {
    finding(std::string c, std::string t) : check(std::move(c)), title(std::move(t)) {}

    /// Sets the outcome; returns the finding, for `return f.set(...)`.
    finding set(level l, std::string s, std::string c = {}, std::vector<std::string> x = {}) {
        status = l;
        summary = std::move(s);
        cause = std::move(c);
        fix = std::move(x);
        return *this;
    }

    std::string check;             ///< server, websocket, longpoll, idle, buffering, headers
    std::string title;             ///< as printed: "WebSocket"
    level status = level::ok;
    std::string summary;           ///< one line
    std::string cause;             ///< why, for a person; empty when all is well
    std::vector<std::string> fix;  ///< what to change, one item a step
    nlohmann::json detail = nlohmann::json::object();  ///< what was measured
};

/// What the doctor was asked to do.
struct settings {
    location where;
    milliseconds step{5000};       ///< longest wait for one answer
    milliseconds hold{30000};      ///< idle check: how long a response is held (0: skip)
    milliseconds poll_hold{2000};  ///< held-poll check: the poll's timeout
    std::string channel = "herald-doctor";
    std::string origin;            ///< sent as Origin (empty: none)
    std::string cookie;            ///< sent as Cookie (empty: none)
    std::vector<std::pair<std::string, std::string>> headers;  ///< sent with every request
};

/// What /herald/info told, and what stands in front of herald.
struct server_facts {
    bool reachable = false;
    std::vector<std::string> transports;
    long long heartbeat_ms = 25000;
    std::string proxy;       ///< the Server/Via header of a proxy in front of herald, if one shows
    std::string proxy_kind;  ///< nginx, iis, apache, cdn, or empty (unknown or none)

    bool enabled(std::string_view t) const { return std::find(transports.begin(), transports.end(), t) != transports.end(); }
};

namespace detail {

inline std::string seconds(double ms) {
    char b[32];
    if (ms < 10) std::snprintf(b, sizeof b, "%.1f ms", ms);
    else if (ms < 1000) std::snprintf(b, sizeof b, "%.0f ms", ms);
    else if (std::fmod(ms, 1000) == 0) std::snprintf(b, sizeof b, "%.0f s", ms / 1000);
    else std::snprintf(b, sizeof b, "%.1f s", ms / 1000);
    return b;
}

/// `j[key]` when `j` is an object holding a string there, else `otherwise`: answers come from
/// the network, and a proxy's JSON need not be herald's.
inline std::string text(const nlohmann::json& j, const char* key, std::string otherwise = {}) {
    if (!j.is_object()) return otherwise;
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : otherwise;
}

inline std::string nonce() {
    std::random_device rd;
    char b[17];
    std::snprintf(b, sizeof b, "%08x%08x", rd(), rd());
    return b;
}

/// The headers every request carries (auth, origin), plus `more`.
inline std::vector<std::pair<std::string, std::string>> request_headers(const settings& s,
                                                                       std::vector<std::pair<std::string, std::string>> more = {}) {
    std::vector<std::pair<std::string, std::string>> h = {{"User-Agent", "herald-doctor"}};
    if (!s.origin.empty()) h.emplace_back("Origin", s.origin);
    if (!s.cookie.empty()) h.emplace_back("Cookie", s.cookie);
    h.insert(h.end(), s.headers.begin(), s.headers.end());
    h.insert(h.end(), more.begin(), more.end());
    return h;
}

inline const std::string credentials_fix =
    "Run the doctor with a user's credentials: --cookie 'session=...' or --header 'Authorization: ...'.";

/// A failed exchange, told plainly: "connection refused", "closed without an answer"...
inline std::string what_failed(const http_reply& r, const settings& s) {
    if (r.error == asio::error::timed_out)
        return r.status ? "the answer did not finish within " + seconds(double(s.step.count()))
                        : "no answer within " + seconds(double(s.step.count()));
    if (r.error == asio::error::eof || r.error == asio::error::connection_reset)
        return r.status ? "the connection was closed in the middle of the answer" : "the connection was closed without an answer";
    if (r.error == asio::error::connection_refused) return "connection refused at " + s.where.host_header();
    if (r.error) return r.error.message();
    return "HTTP " + std::to_string(r.status) + " " + r.reason;
}

/// The proxy's fix, in its own words, for one problem.
inline std::vector<std::string> fix_upgrade(const server_facts& f, const std::string& prefix) {
    const std::string ws_path = prefix + "/herald/ws";
    std::vector<std::string> fix;
    if (f.proxy_kind == "nginx" || f.proxy_kind.empty())
        fix.push_back("nginx: in the location that proxies herald (e.g. location " + prefix + "/herald/ { proxy_pass ...; }), add\n"
                      "    proxy_http_version 1.1;\n"
                      "    proxy_set_header Upgrade $http_upgrade;\n"
                      "    proxy_set_header Connection \"upgrade\";\n"
                      "then `nginx -t && nginx -s reload`.");
    if (f.proxy_kind == "iis" || f.proxy_kind.empty())
        fix.push_back("IIS: enable the WebSocket Protocol feature (Server Manager > Web Server (IIS) > Application "
                      "Development > WebSocket Protocol, or `Install-WindowsFeature Web-WebSockets`); with ARR/URL Rewrite "
                      "in front of herald, IIS passes upgrades on once the feature is on.");
    if (f.proxy_kind == "apache" || f.proxy_kind.empty())
        fix.push_back("Apache: enable mod_proxy_wstunnel and proxy the upgrade: `ProxyPass " + ws_path +
                      " ws://HERALD-HOST:PORT" + ws_path + "` before the plain ProxyPass.");
    if (f.proxy_kind == "cdn" || f.proxy_kind.empty())
        fix.push_back("A CDN or load balancer: turn its WebSocket support on for this host (and let /herald/ws pass uncached).");
    return fix;
}

inline std::vector<std::string> fix_timeout(const server_facts& f) {
    std::vector<std::string> fix;
    if (f.proxy_kind == "nginx" || f.proxy_kind.empty())
        fix.push_back("nginx: in the location that proxies herald, `proxy_read_timeout 75s; proxy_send_timeout 75s;`.");
    if (f.proxy_kind == "iis" || f.proxy_kind.empty())
        fix.push_back("IIS ARR: Server Farm > Proxy > Time-out: 75 seconds or more.");
    if (f.proxy_kind != "nginx" && f.proxy_kind != "iis")
        fix.push_back("Any proxy, load balancer or firewall: let an idle connection live 75 s or more (AWS ALB: idle "
                      "timeout; HAProxy: timeout server/tunnel).");
    return fix;
}

} // namespace detail

/// (a) `GET /herald/info`: is herald there, which transports are on, who stands in front.
inline finding check_server(const settings& s, server_facts& facts) {
    finding f{"server", "Server"};
    http_request_spec req{"GET", s.where.path("/herald/info"), detail::request_headers(s)};
    const http_reply r = exchange(s.where, req, clock::now() + s.step);
    f.detail["status"] = r.status;
    f.detail["ms"] = r.done_ms;
    // A proxy shows itself in Server (nginx, IIS and CDNs replace herald's) or Via.
    std::string server = r.header("Server"), via = r.header("Via");
    if (!server.empty() && server != "herald") facts.proxy = server;
    else if (!via.empty()) facts.proxy = via;
    for (auto [needle, kind] : {std::pair{"nginx", "nginx"}, {"IIS", "iis"}, {"ARR", "iis"}, {"Apache", "apache"},
                                {"cloudflare", "cdn"}, {"CloudFront", "cdn"}, {"akamai", "cdn"}, {"varnish", "cdn"}})
        if (facts.proxy_kind.empty() && contains_nocase(facts.proxy, needle)) facts.proxy_kind = kind;
    f.detail["proxy"] = facts.proxy;

    if (r.error && !r.status && s.where.tls && r.error.category() == asio::error::get_ssl_category()) {
        f.status = level::fail;
        f.summary = "TLS with " + s.where.host_header() + " failed: " + detail::what_failed(r, s);
        f.cause = "Something answers here, but the TLS handshake failed: a certificate a browser would not trust "
                  "(self-signed, expired, for another name, an incomplete chain), or no TLS on this port.";
        f.fix.push_back("Serve the full chain (leaf first) for this host name (herald: server_options::tls.cert_chain_file); "
                        "`openssl s_client -connect " + s.where.host + ":" + s.where.port + " -servername " + s.where.host +
                        "` shows what is served. For a test certificate, --insecure checks the rest.");
        return f;
    }
    if (r.error && !r.status) {
        f.status = level::fail;
        f.summary = "cannot reach " + s.where.host_header() + ": " + detail::what_failed(r, s);
        f.cause = "Nothing answers HTTP at this address. Is the proxy (or herald) running, listening on this port, "
                  "and open to you through the firewall?";
        f.fix.push_back("Check the address and port; on the host, `ss -ltnp` lists what listens.");
        return f;
    }
    const nlohmann::json info = r.json_body();
    if (r.status != 200 || !info.is_object() || detail::text(info, "protocol").rfind("herald.v", 0) != 0) {
        f.status = level::fail;
        f.summary = "GET " + req.target + " answered " + detail::what_failed(r, s) + ", not herald's info";
        if (r.status == 502 || r.status == 503 || r.status == 504) {
            f.cause = "A proxy answered for herald: it cannot reach herald behind it (herald stopped, or the proxy points "
                      "to the wrong address or port).";
            f.fix.push_back("Check that herald runs and that the proxy's upstream (nginx: proxy_pass) names its address and port.");
        } else {
            f.cause = "What answers here is not herald, or the proxy does not pass " + s.where.path("/herald/") +
                      " on to herald.";
            f.fix.push_back("Route every path under " + s.where.path("/herald/") + " to herald (nginx: location " +
                            s.where.path("/herald/") + " { proxy_pass http://HERALD-HOST:PORT; ... }); give the doctor the "
                            "site's URL (herald's endpoints are under /herald/).");
        }
        return f;
    }
    facts.reachable = true;
    if (auto t = info.find("transports"); t != info.end() && t->is_array())
        for (const auto& name : *t)
            if (name.is_string()) facts.transports.push_back(name.get<std::string>());
    if (auto hb = info.find("heartbeat"); hb != info.end() && hb->is_number_unsigned()) facts.heartbeat_ms = hb->get<long long>();
    std::string transports;
    for (const auto& t : facts.transports) transports += (transports.empty() ? "" : " + ") + t;
    f.summary = "herald " + detail::text(info, "version", "?") + " (" + detail::text(info, "server", "?") +
                "), transports " + (transports.empty() ? "none" : transports) + ", heartbeat " +
                detail::seconds(double(facts.heartbeat_ms)) + (facts.proxy.empty() ? "" : ", through " + facts.proxy);
    f.detail["info"] = info;
    // /herald/health (this version on): ready, starting (the backplane never came up) or
    // draining, and the backplane's state.
    const http_reply h = exchange(s.where, {"GET", s.where.path("/herald/health"), detail::request_headers(s)}, clock::now() + s.step);
    const nlohmann::json health = h.json_body();
    if (health.is_object() && health.contains("status")) {
        f.detail["health"] = health;
        const std::string status = detail::text(health, "status", "?");
        const nlohmann::json bp = health.value("backplane", nlohmann::json::object());
        f.summary += ", " + status + ", backplane " + detail::text(bp, "name", "?") + " " + detail::text(bp, "state", "?");
        if (status != "ready") {
            f.status = level::warn;
            f.cause = status == "draining" ? "This server is draining (stopping): its clients are told to reconnect elsewhere."
                                           : "This server's backplane has not come up yet: it takes no clients until it does.";
            if (status != "draining")
                f.fix.push_back("Check that the backplane (Redis) is reachable from this server; its log says why not.");
        } else if (bp.is_object() && bp.value("up", true) == false) {
            f.status = level::warn;
            f.cause = "The backplane is down: publishes fail with backplane_unavailable; clients stay connected and resume once it is back.";
            f.fix.push_back("Check the backplane (Redis) and this server's link to it; /herald/diagnose shows its last error.");
        }
    }
    if (facts.transports.empty()) {
        f.status = level::fail;
        f.cause = "Every transport is switched off on this herald server: no browser can get updates.";
        f.fix.push_back("Switch a transport on in the server's configuration (transport options `enabled`).");
    }
    return f;
}

/// (b) The WebSocket upgrade, end to end: 101 and herald's `welcome`, or which failure.
inline finding check_websocket(const settings& s, const server_facts& facts) {
    finding f{"websocket", "WebSocket"};
    const std::string path = s.where.path("/herald/ws");
    if (!facts.enabled("websocket")) {
        f.status = level::note;
        f.summary = "switched off on the server: browsers use long-poll (not a network problem)";
        f.cause = "This herald server runs with its WebSocket transport disabled; clients learn it from /herald/info "
                  "and go straight to long-poll.";
        return f;
    }
    const websocket_outcome o = websocket_probe(s.where, path, detail::request_headers(s), clock::now() + s.step);
    const http_reply& r = o.reply;
    f.detail["status"] = r.status;
    f.detail["head_ms"] = r.head_ms;
    const std::string said = "GET " + path + " with Upgrade: websocket";
    if (!r.status) {
        if (r.error == asio::error::timed_out)
            return f.set(level::fail, said + ": no answer within " + detail::seconds(double(s.step.count())),
                        "Something between the browser and herald holds WebSocket handshakes without answering "
                        "(a firewall or proxy that does not know WebSockets).",
                        detail::fix_upgrade(facts, s.where.prefix));
        return f.set(level::fail, said + ": " + detail::what_failed(r, s),
                    "The connection ended without an answer to the upgrade: a proxy or firewall in between drops "
                    "WebSocket handshakes.",
                    detail::fix_upgrade(facts, s.where.prefix));
    }
    if (r.status == 101) {
        if (!o.handshake_error.empty())
            return f.set(level::fail, "101 Switching Protocols, but not a valid WebSocket handshake (" + o.handshake_error + ")",
                        "Something in between answered the upgrade itself, or changed the handshake headers.",
                        detail::fix_upgrade(facts, s.where.prefix));
        if (o.welcome) {
            f.summary = "101 and herald's welcome in " + detail::seconds(o.welcome_ms);
            f.detail["welcome_ms"] = o.welcome_ms;
            return f;
        }
        if (o.close_code)
            return f.set(level::fail, "101, then closed (" + std::to_string(*o.close_code) + " " + o.close_reason + ") before herald's welcome",
                        "herald, or something in between, closed the WebSocket at once.");
        return f.set(level::fail, "101 Switching Protocols, but no welcome frame within " + detail::seconds(double(s.step.count())) +
                        (r.error == asio::error::timed_out ? "" : " (" + detail::what_failed(r, s) + ")"),
                    "The upgrade went through, but something in between holds the socket's data (a proxy that buffers "
                    "upgraded connections, an antivirus or TLS-inspecting firewall).",
                    {"Let WebSocket traffic to " + path + " pass unbuffered and uninspected; meanwhile browsers that "
                     "get no welcome fall back to long-poll."});
    }
    const nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
    // herald refuses with {"frames":[error]} (earlier servers: {"error":{...}}).
    std::string herald_says;
    if (body.is_object() && body.contains("frames") && body["frames"].is_array() && !body["frames"].empty())
        herald_says = detail::text(body["frames"][0], "message");
    else if (body.is_object() && body.contains("error"))
        herald_says = detail::text(body["error"], "message");
    f.detail["body"] = r.body.substr(0, 500);
    const std::string answered = said + " answered " + std::to_string(r.status) + " " + r.reason;
    switch (r.status) {
    case 426:
        if (contains_nocase(herald_says, "upgrade"))
            return f.set(level::fail, answered + ": the Upgrade header was dropped on the way, herald saw a plain GET",
                        "A proxy between the browser and herald forwards requests without their Upgrade and Connection "
                        "headers (nginx does so unless told otherwise: it speaks HTTP/1.0 to its upstream and drops "
                        "hop-by-hop headers), so herald saw a plain GET and answered 426.",
                        detail::fix_upgrade(facts, s.where.prefix));
        return f.set(level::fail, answered, "Something in between refused the upgrade.", detail::fix_upgrade(facts, s.where.prefix));
    case 200:
        return f.set(level::fail, answered + ": the proxy answered instead of passing the upgrade on",
                    "Something other than herald answered the upgrade as a plain request (a proxy or CDN without "
                    "WebSocket support, or a catch-all route that sends " + path + " elsewhere).",
                    [&] {
                        auto fix = detail::fix_upgrade(facts, s.where.prefix);
                        fix.insert(fix.begin(), "Let " + path + " reach herald: no location, rewrite, cache or CDN rule may "
                                                "answer it (nginx: the location matching " + path + " must proxy_pass to herald).");
                        return fix;
                    }());
    case 403:
        return f.set(level::fail, answered + ": the Origin was refused",
                    "herald refused the Origin (" + s.origin + "). Either herald's allowed_origins does not list the site's "
                    "origin, or the proxy rewrites Host (herald's default same-origin rule compares Origin with Host).",
                    {"Forward the Host the browser used (nginx: `proxy_set_header Host $http_host;`), or list the site's "
                     "origin in server_options::allowed_origins."});
    case 401:
        return f.set(level::warn, answered + ": herald refused the doctor's credentials",
                     "The upgrade reached herald (it checks credentials after the Upgrade header), but herald's "
                     "authenticate hook refused the doctor, so the end of the handshake was not tested.",
                     {detail::credentials_fix});
    case 404:
        return f.set(level::fail, answered, "The proxy does not pass " + path + " on to herald.", detail::fix_upgrade(facts, s.where.prefix));
    case 502:
    case 504:
        return f.set(level::fail, answered, "The proxy could not get an answer from herald for the upgrade.",
                    {"Check the proxy's upstream address for " + path + " and its error log."});
    case 503:
        return f.set(level::fail, answered, "herald is draining (restarting), or the proxy has no healthy upstream.");
    default:
        return f.set(level::fail, answered, "The upgrade was refused on the way.", detail::fix_upgrade(facts, s.where.prefix));
    }
}

/// (c) Long-poll: a round trip (a new channel answered `subscribed`), then a held poll at
/// the head that must come back when its timeout passes.
inline finding check_longpoll(const settings& s, const server_facts& facts) {
    finding f{"longpoll", "Long-poll"};
    if (!facts.enabled("longpoll")) {
        f.status = level::note;
        f.summary = "switched off on the server (browsers can only use WebSocket)";
        f.cause = "This herald server runs with long-poll disabled: browsers behind networks that break WebSockets get no updates.";
        return f;
    }
    const std::string path = s.where.path("/herald/poll");
    auto post = [&](const nlohmann::json& body, clock::time_point deadline) {
        http_request_spec req{"POST", path, detail::request_headers(s, {{"Content-Type", "text/plain"}}), body.dump()};
        return exchange(s.where, req, deadline);
    };
    auto refused = [&](const http_reply& r, const std::string& what) {
        const std::string answered = what + " answered " + detail::what_failed(r, s);
        if (r.status == 401) {
            return f.set(level::warn, answered + ": herald refused the doctor's credentials",
                         "The poll reached herald, but its authenticate hook refused the doctor.", {detail::credentials_fix});
        }
        if (r.status == 403)
            return f.set(level::fail, answered + ": the Origin was refused",
                        "herald refused the Origin (" + s.origin + "): its allowed_origins does not list the site, or the "
                        "proxy rewrites Host.",
                        {"Forward the Host the browser used (nginx: `proxy_set_header Host $http_host;`), or list the "
                         "site's origin in server_options::allowed_origins."});
        if (r.status == 502 || r.status == 504 || (r.error && r.status == 0))
            return f.set(level::fail, answered, "The poll did not come through the proxy.",
                        {"Check the proxy's upstream for " + path + " and its error log."});
        return f.set(level::fail, answered, "The proxy does not pass long-poll requests (POST " + path + ") on to herald unchanged.",
                    {"Route POST " + s.where.path("/herald/") + "* to herald with its body."});
    };

    // Round trip: a channel with no cursor is answered at once.
    const http_reply first = post({{"channels", {{s.channel, nullptr}}}}, clock::now() + s.step);
    f.detail["round_trip_ms"] = first.done_ms;
    const nlohmann::json body = first.json_body();
    if (first.status != 200 || !body.is_object() || !body.contains("frames")) return refused(first, "POST " + path);
    nlohmann::json cursor, frame;
    if (body["frames"].is_array())
        for (const auto& fr : body["frames"])
            if (detail::text(fr, "channel") == s.channel) frame = fr;
    std::string round_trip = "round trip " + detail::seconds(first.done_ms);
    if (detail::text(frame, "type") == "subscribed") {
        cursor = {{"epoch", frame["epoch"]}, {"offset", frame["offset"]}};
    } else if (detail::text(frame, "type") == "error") {
        // herald answered, so the transport works; only this channel is refused.
        round_trip += " (herald answered " + detail::text(frame, "code") + " for channel " + s.channel + ")";
        f.detail["channel_error"] = frame;
    } else {
        return f.set(level::fail, "POST " + path + " answered 200 without herald's frames", "Something other than herald answered the poll.");
    }

    // Held poll: at the head nothing is waiting, so herald holds it for its timeout.
    const auto hold = s.poll_hold;
    nlohmann::json channels = nlohmann::json::object();
    if (!cursor.is_null()) channels[s.channel] = cursor;
    const http_reply held = post({{"channels", channels}, {"timeout", hold.count()}}, clock::now() + hold + s.step);
    f.detail["held_ms"] = held.done_ms;
    f.detail["held_status"] = held.status;
    const nlohmann::json held_body = held.json_body();
    if (held.status != 200 || !held_body.is_object()) {
        if (held.status == 502 || held.status == 504 || (held.error && held.done_ms < double(hold.count())))
            return f.set(level::fail, round_trip + "; but a poll held " + detail::seconds(double(hold.count())) + " was cut after " +
                            detail::seconds(held.done_ms) + " (" + detail::what_failed(held, s) + ")",
                        "Something in between ends requests that wait for their answer; herald holds polls for up to 25 s.",
                        detail::fix_timeout(facts));
        return refused(held, "a held poll");
    }
    f.summary = round_trip + "; a poll held " + detail::seconds(double(hold.count())) + " came back after " +
                detail::seconds(held.done_ms);
    if (auto fr = held_body.find("frames"); fr != held_body.end() && fr->is_array() && !fr->empty()) f.summary += " (with news)";
    else if (held.done_ms > double(hold.count()) + 2500) {
        f.status = level::warn;
        f.cause = "The held poll came back late: something in between delays answers.";
    }
    return f;
}

/// (d1) A response held `s.hold` (`/herald/diagnose?hold=`): a proxy that cuts idle
/// connections answers 502/504 or closes before it.
inline finding check_idle(const settings& s, const server_facts& facts) {
    finding f{"idle", "Idle connections"};
    if (s.hold.count() == 0) {
        f.status = level::skipped;
        f.summary = "not checked (--hold 0)";
        return f;
    }
    const std::string target = s.where.path("/herald/diagnose") + "?hold=" + std::to_string(s.hold.count());
    const http_reply r = exchange(s.where, {"GET", target, detail::request_headers(s)}, clock::now() + s.hold + s.step);
    f.detail["hold_ms"] = s.hold.count();
    f.detail["status"] = r.status;
    f.detail["ms"] = r.done_ms;
    const nlohmann::json body = r.json_body();
    if (r.status == 200 && body.is_object() && body.contains("held_ms")) {
        f.summary = "a response held " + detail::seconds(double(s.hold.count())) + " came through";
        return f;
    }
    if (r.status == 200 || r.status == 400) {
        f.status = level::skipped;
        f.summary = "this herald server does not hold diagnose answers (an older version)";
        return f;
    }
    // Cut: how soon, and what that breaks.
    const double cut = r.done_ms;
    f.detail["cut_ms"] = cut;
    const double herald_hold = std::max(25000.0, double(facts.heartbeat_ms));
    f.status = cut < herald_hold + 1000 ? level::fail : level::warn;
    f.summary = "a response held " + detail::seconds(double(s.hold.count())) + " was cut after " + detail::seconds(cut) + " (" +
                detail::what_failed(r, s) + "): a proxy closes connections idle for about " + detail::seconds(cut);
    if (f.status == level::fail)
        f.cause = "A proxy's idle (read) timeout of about " + detail::seconds(cut) + " is shorter than what herald needs: held "
                  "polls wait up to 25 s and a quiet WebSocket hears from herald every " +
                  detail::seconds(double(facts.heartbeat_ms)) + ", so quiet polls end in " +
                  (r.status ? std::to_string(r.status) : std::string("a closed connection")) +
                  " and quiet WebSockets are closed; clients reconnect again and again.";
    else
        f.cause = "The proxy's idle timeout fits herald's 25 s holds, but with little room; 75 s is recommended.";
    f.fix = detail::fix_timeout(facts);
    return f;
}

/// (d2) A response in two parts 1.5 s apart (`/herald/diagnose?stream=1`): a buffering
/// proxy delivers the first part only with the second.
inline finding check_buffering(const settings& s, const server_facts& facts) {
    finding f{"buffering", "Buffering"};
    const std::string target = s.where.path("/herald/diagnose") + "?stream=1";
    const http_reply r = exchange(s.where, {"GET", target, detail::request_headers(s)}, clock::now() + s.step + milliseconds(1500));
    double first = -1;
    for (const auto& [ms, size] : r.arrivals)
        if (first < 0 && r.body.find('\n') < size) first = ms;
    f.detail["status"] = r.status;
    f.detail["first_part_ms"] = first;
    f.detail["done_ms"] = r.done_ms;
    if (r.status != 200 || r.body.find("\"part\":2") == std::string::npos) {
        f.status = r.status == 400 || r.status == 200 ? level::skipped : level::warn;
        f.summary = r.status == 400 || r.status == 200 ? "this herald server does not stream diagnose answers (an older version)"
                                                       : "the streamed answer did not come whole (" + detail::what_failed(r, s) + ")";
        return f;
    }
    if (first < 750) {
        f.summary = "the first part came after " + detail::seconds(first) + ", the rest after " + detail::seconds(r.done_ms) +
                    ": answers pass unbuffered";
        return f;
    }
    f.status = level::note;
    f.summary = "the first part came only with the last, after " + detail::seconds(first) + ": a proxy buffers answers";
    f.cause = "A proxy holds answers until they are complete. herald's long-poll answers are complete when sent, so "
              "they are not delayed; but the proxy is not set up for herald as recommended.";
    if (facts.proxy_kind == "nginx" || facts.proxy_kind.empty())
        f.fix.push_back("nginx: `proxy_buffering off;` in the location that proxies herald.");
    if (facts.proxy_kind != "nginx")
        f.fix.push_back("Other proxies and CDNs: turn response buffering off for " + s.where.path("/herald/") + ".");
    return f;
}

/// (e) Which of the headers the doctor sent reached herald (`/herald/diagnose` tells what
/// arrived), and what the proxy added.
inline finding check_headers(const settings& s, const server_facts&) {
    finding f{"headers", "Headers"};
    const std::string mark = detail::nonce();
    std::vector<std::pair<std::string, std::string>> sent = {
        {"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"X-Herald-Doctor", mark}};
    settings with_cookie = s;
    with_cookie.cookie = (s.cookie.empty() ? "" : s.cookie + "; ") + "herald_doctor=" + mark;
    const auto headers = detail::request_headers(with_cookie, sent);
    const http_reply r = exchange(s.where, {"GET", s.where.path("/herald/diagnose"), headers}, clock::now() + s.step);
    const nlohmann::json body = r.json_body();
    if (r.status != 200 || !body.is_object() || !body.contains("request")) {
        f.status = level::skipped;
        f.summary = "GET " + s.where.path("/herald/diagnose") + " answered " + detail::what_failed(r, s);
        return f;
    }
    const nlohmann::json& request = body["request"];
    const nlohmann::json arrived = request.is_object() ? request.value("headers", nlohmann::json::object()) : nlohmann::json::object();
    auto got = [&](std::string_view name) -> std::optional<std::string> {
        if (!arrived.is_object()) return std::nullopt;
        for (auto it = arrived.begin(); it != arrived.end(); ++it)
            if (it.key().size() == name.size() && contains_nocase(it.key(), name) && it.value().is_string())
                return it.value().get<std::string>();
        return std::nullopt;
    };
    std::vector<std::string> lost, changed, added;
    for (const auto& [name, value] : headers) {
        if (name == "User-Agent") continue;
        const auto a = got(name);
        // herald shows credentials (Cookie, Authorization...) as "<redacted, N bytes>": that
        // they arrived is all it tells.
        const bool redacted = a && a->rfind("<redacted, ", 0) == 0;
        if (!a) lost.push_back(name);
        else if (redacted) continue;
        else if (name == "Cookie" ? a->find("herald_doctor=" + mark) == std::string::npos
                                  : !(a->size() == value.size() && contains_nocase(*a, value)))
            changed.push_back(name + " (sent \"" + value + "\", arrived \"" + *a + "\")");
    }
    const auto host = got("Host");
    if (host && *host != s.where.host_header()) changed.push_back("Host (sent \"" + s.where.host_header() + "\", arrived \"" + *host + "\")");
    for (const char* name : {"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-IP", "Forwarded", "Via"})
        if (auto a = got(name)) added.push_back(std::string(name) + ": " + *a);
    f.detail["sent"] = headers;
    f.detail["arrived"] = arrived;
    f.detail["lost"] = lost;
    f.detail["changed"] = changed;
    f.detail["added"] = added;
    f.detail["remote"] = detail::text(request, "remote");

    auto join = [](const std::vector<std::string>& v) {
        std::string out;
        for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
        return out;
    };
    if (!lost.empty()) f.summary += "did not arrive: " + join(lost);
    if (!changed.empty()) f.summary += std::string(f.summary.empty() ? "" : "; ") + "changed: " + join(changed);
    if (!added.empty()) f.summary += std::string(f.summary.empty() ? "" : "; ") + "added on the way: " + join(added);
    if (f.summary.empty()) f.summary = "every header arrived as sent";

    auto is_lost = [&](std::string_view n) { return std::find(lost.begin(), lost.end(), n) != lost.end(); };
    std::vector<std::string> causes;
    if (is_lost("Cookie")) {
        causes.push_back("Cookie was dropped: herald's authenticate hook cannot see a user's session cookie (CDN cache "
                         "policies often strip cookies).");
        f.fix.push_back("Forward the Cookie header to " + s.where.path("/herald/") + " (CDN: an origin request policy with all cookies).");
    }
    if (is_lost("Origin")) {
        causes.push_back("Origin was dropped: herald's origin check cannot protect the site against other sites' pages.");
        f.fix.push_back("Forward the Origin header to " + s.where.path("/herald/") + ".");
    }
    // herald's default origin rule compares Origin with Host: a rewritten Host refuses every browser.
    const auto origin = got("Origin");
    if (host && origin && *host != s.where.host_header() && *origin == s.origin && s.origin == s.where.origin()) {
        causes.push_back("The proxy rewrites Host (to \"" + *host + "\"): with herald's default allowed_origins (same "
                         "origin: Origin must name the Host) browsers get 403 on /herald/ws and /herald/poll.");
        f.fix.push_back("nginx: `proxy_set_header Host $http_host;` (the browser's Host, with its port), or list the site's "
                        "origin in server_options::allowed_origins.");
    }
    if (!causes.empty()) {
        f.status = level::warn;
        for (const auto& c : causes) f.cause += (f.cause.empty() ? "" : " ") + c;
    } else if (!lost.empty() || !changed.empty()) {
        f.status = level::note;
        f.cause = "Upgrade and Connection are hop-by-hop headers: a proxy passes them on only when told to (the "
                  "WebSocket check says whether upgrades get through).";
    }
    return f;
}

/// How the run ends, worst first: 1 unreachable, 2 no transport works, 3 WebSocket fails
/// (long-poll works), 4 long-poll fails (WebSocket works), 5 works but needs a fix
/// (idle cut, lost headers, refused credentials), 0 all well.
inline int exit_code(const std::vector<finding>& findings) {
    auto status = [&](std::string_view check) {
        for (const auto& f : findings)
            if (f.check == check) return f.status;
        return level::skipped;
    };
    if (status("server") == level::fail) return 1;
    const bool ws_fails = status("websocket") == level::fail, lp_fails = status("longpoll") == level::fail;
    const bool ws_off = status("websocket") == level::note, lp_off = status("longpoll") == level::note;
    if ((ws_fails || ws_off) && (lp_fails || lp_off)) return 2;
    if (ws_fails) return 3;
    if (lp_fails) return 4;
    for (const auto& f : findings)
        if (f.status == level::fail || f.status == level::warn) return 5;
    return 0;
}

inline const char* exit_meaning(int code) {
    switch (code) {
    case 0: return "herald works through this path";
    case 1: return "herald cannot be reached, or this is not herald";
    case 2: return "no transport works: browsers get no updates";
    case 3: return "WebSocket fails; herald works over long-poll";
    case 4: return "long-poll fails; herald works over WebSocket where the network allows it";
    case 5: return "herald works, but the proxy needs a fix";
    }
    return "?";
}

/// The verdict, in a few sentences a sysadmin can act on.
inline std::string verdict(const std::vector<finding>& findings, int code) {
    auto get = [&](std::string_view check) -> const finding* {
        for (const auto& f : findings)
            if (f.check == check) return &f;
        return nullptr;
    };
    std::string v;
    auto say = [&](const std::string& s) { v += (v.empty() ? "" : " ") + s; };
    const finding* ws = get("websocket");
    const finding* lp = get("longpoll");
    switch (code) {
    case 1: say("herald cannot be reached here: " + get("server")->summary + ". " + get("server")->cause); return v;
    case 2: say("No herald transport works through this path: browsers get no live updates."); break;
    case 3:
        say("WebSocket does not work through this path. " + ws->cause);
        say("herald still works meanwhile: browsers fall back to long-poll by themselves and get every update (with a "
            "little more latency and load), so fixing the proxy is an improvement, not an emergency.");
        break;
    case 4: say("Long-poll does not work through this path. " + lp->cause + " Browsers whose network breaks WebSockets get no updates."); break;
    default:
        if (ws && ws->status == level::note) say("WebSocket is switched off on the server, by its configuration; herald works over long-poll.");
        else if (ws && ws->status == level::ok) say("WebSocket works end to end.");
        if (lp && lp->status == level::ok) say("Long-poll works, including held polls.");
        break;
    }
    bool recommended = false;
    for (const char* check : {"idle", "headers", "buffering"}) {
        const finding* f = get(check);
        if (f && (f->status == level::warn || f->status == level::fail)) say(f->cause);
        recommended = recommended || (f && f->status == level::note && !f->fix.empty());
    }
    if (code == 0) say(recommended ? "Nothing needs fixing for herald to work; see the recommendation below." : "Nothing needs fixing.");
    return v;
}

} // namespace herald::doctor
