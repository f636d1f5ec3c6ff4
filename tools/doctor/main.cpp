// herald-doctor URL — checks that herald works through the proxies between a browser and the
// server at URL, and says what to fix. See docs/operations.md for how to read its output.
//   herald-doctor http://cms.example.com [--hold 30] [--json] [--channel NAME] [--cookie C] ...
// Exit codes: 0 works; 1 unreachable or not herald; 2 no transport works; 3 WebSocket fails
// (long-poll works); 4 long-poll fails (WebSocket works); 5 works but the proxy needs a fix;
// 64 a URL the doctor cannot use; 70 an internal error; other non-zero: a command-line error.
#include "checks.hpp"

#include <herald/version.hpp>

#include <CLI/CLI.hpp>

#include <future>
#include <iostream>

namespace {

using namespace herald::doctor;

void print_text(const std::string& url, bool insecure, const std::vector<finding>& findings, const std::string& verdict, int code) {
    std::cout << "herald-doctor " << HERALD_VERSION_STRING << ": " << url << "\n";
    if (insecure) std::cout << "TLS: --insecure: the server's certificate was NOT verified (a browser would refuse one that does not verify)\n";
    std::cout << "\n";
    for (const auto& f : findings) std::cout << f.title << ": " << to_string(f.status) << " — " << f.summary << "\n";
    std::cout << "\nVerdict: " << verdict << "\n";
    // Fixes for what fails or will hurt, then recommendations (notes): each once, numbered.
    auto list = [&](const char* heading, auto wanted) {
        std::vector<std::string> fixes;
        for (const auto& f : findings)
            if (wanted(f.status))
                for (const auto& x : f.fix)
                    if (std::find(fixes.begin(), fixes.end(), x) == fixes.end()) fixes.push_back(x);
        if (fixes.empty()) return;
        std::cout << "\n" << heading << "\n";
        for (std::size_t i = 0; i < fixes.size(); ++i) {
            std::string x = fixes[i];
            for (std::size_t p = x.find('\n'); p != std::string::npos; p = x.find('\n', p + 1)) x.insert(p + 1, "   ");
            std::cout << "  " << i + 1 << ". " << x << "\n";
        }
    };
    list("To fix:", [](level l) { return l == level::fail || l == level::warn; });
    list("Recommended:", [](level l) { return l == level::note; });
    std::cout << "\nExit code " << code << ": " << exit_meaning(code) << ".\n";
}

void print_json(const std::string& url, bool insecure, const std::vector<finding>& findings, const std::string& verdict, int code) {
    nlohmann::json checks = nlohmann::json::array();
    for (const auto& f : findings)
        checks.push_back({{"check", f.check}, {"status", to_string(f.status)}, {"summary", f.summary},
                          {"cause", f.cause}, {"fix", f.fix}, {"detail", f.detail}});
    nlohmann::json out = {{"doctor", HERALD_VERSION_STRING}, {"url", url},       {"exit_code", code},
                          {"meaning", exit_meaning(code)},   {"verdict", verdict}, {"checks", checks}};
    if (insecure) out["tls_certificate_verified"] = false;
    std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"herald-doctor: checks that herald works through the proxies between browsers and the server at URL "
                 "(WebSocket upgrade, long-poll, idle timeouts, buffering, headers), and says what to fix."};
    std::string url, origin = "auto";
    settings s;
    double step_s = 5, hold_s = 30, poll_hold_s = 2;
    bool json = false;
    std::vector<std::string> headers;
    app.add_option("url", url, "the site's URL, as a browser reaches it (http[s]://host[:port][/prefix])")->required();
    app.add_option("--timeout", step_s, "seconds to wait for each answer")->capture_default_str()->check(CLI::Range(0.1, 120.0));
    app.add_option("--hold", hold_s, "seconds a response is held to find idle cuts (0: skip; at most 120)")
        ->capture_default_str()->check(CLI::Range(0.0, 120.0));
    app.add_option("--poll-hold", poll_hold_s, "seconds the held long-poll waits")->capture_default_str()->check(CLI::Range(0.1, 25.0));
    app.add_option("--channel", s.channel, "channel for the long-poll round trip (one the server lets the doctor follow)")
        ->capture_default_str();
    app.add_option("--origin", origin, "Origin to send, as the site's pages would (auto: the URL's origin; none: no Origin)")
        ->capture_default_str();
    app.add_option("--cookie", s.cookie, "Cookie to send (a user's session, when herald authenticates by cookie)");
    app.add_option("--header", headers, "header to send, \"Name: value\" (repeatable)");
    app.add_flag("--json", json, "print the findings as JSON");
    bool insecure = false;
    app.add_flag("--insecure", insecure, "https: accept a certificate that does not verify (self-signed); the output says so");
    CLI11_PARSE(app, argc, argv);

    std::string why;
    auto where = location::parse(url, why);
    if (!where) {
        std::cerr << "herald-doctor: " << url << ": " << why << "\n";
        return 64;
    }
    s.where = *where;
    s.where.insecure = insecure && where->tls;
    s.step = milliseconds(static_cast<long long>(step_s * 1000));
    s.hold = milliseconds(static_cast<long long>(hold_s * 1000));
    s.poll_hold = milliseconds(static_cast<long long>(poll_hold_s * 1000));
    s.origin = origin == "auto" ? s.where.origin() : origin == "none" ? "" : origin;
    for (const auto& h : headers) {
        const auto colon = h.find(':');
        if (colon == std::string::npos || colon == 0) {
            std::cerr << "herald-doctor: --header \"" << h << "\": expected \"Name: value\"\n";
            return 64;
        }
        const auto value = h.find_first_not_of(' ', colon + 1);
        s.headers.emplace_back(h.substr(0, colon), value == std::string::npos ? "" : h.substr(value));
    }

    std::vector<finding> findings;
    try {
        server_facts facts;
        findings.push_back(check_server(s, facts));
        if (facts.reachable) {
            // The idle check waits longest: it runs beside the others.
            auto idle = std::async(std::launch::async, [&s, &facts] { return check_idle(s, facts); });
            finding websocket = check_websocket(s, facts);
            finding longpoll = check_longpoll(s, facts);
            finding buffering = check_buffering(s, facts);
            finding headers_seen = check_headers(s, facts);
            for (finding* f : {&websocket, &longpoll}) findings.push_back(std::move(*f));
            findings.push_back(idle.get());
            for (finding* f : {&buffering, &headers_seen}) findings.push_back(std::move(*f));
        }
    } catch (const std::exception& e) {
        std::cerr << "herald-doctor: internal error: " << e.what() << "\n";
        return 70;
    }
    const int code = exit_code(findings);
    const std::string v = verdict(findings, code);
    if (json) print_json(url, s.where.insecure, findings, v, code);
    else print_text(url, s.where.insecure, findings, v, code);
    return code;
}
