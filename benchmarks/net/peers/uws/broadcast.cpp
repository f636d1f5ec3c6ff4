// The uWebSockets broadcast server its users would write: uWS::App, one WebSocket route, uWS's
// own pub/sub (ws->subscribe(channel), app.publish(channel, text, TEXT): its topic tree and
// its corking), nlohmann/json like the websocketpp peer. It speaks the benchmark's subset of
// herald.v1 (subscribe -> subscribed; publish -> message to the channel's subscribers +
// published to the publisher) so that every server does the same work.
//   herald-bench-uws --port N        (prints "port N", runs until SIGTERM/SIGINT)
//
// Options that differ from uWS's defaults, so that it behaves like the ws and websocketpp peers:
// - maxBackpressure = 0 (unbounded): uWS's default (64 KiB) silently drops a publish to a
//   subscriber with more than that buffered, which the load generator counts as lost; the ws
//   and websocketpp peers buffer without limit too;
// - idleTimeout = 0: no idle timer and no automatic pings (the other peers have none);
// - compression off (uWS's default), built with UWS_NO_ZLIB.
// Built by benchmarks/run.sh --uws-src DIR (benchmarks/net/CMakeLists.txt, HERALD_UWS_SRC).
#include "App.h"

#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

namespace {
volatile std::sig_atomic_t stop_requested = 0;
void on_signal(int) { stop_requested = 1; }

struct per_socket {};  // uWS keeps each socket's topics itself and unsubscribes them on close
}  // namespace

int main(int argc, char** argv) {
    int port = 9004;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string_view(argv[i]) == "--port") port = std::atoi(argv[i + 1]);

    uWS::App app;
    uWS::App* const self = &app;
    app.ws<per_socket>("/*", {
        .compression = uWS::DISABLED,
        .maxPayloadLength = 16 * 1024,
        .idleTimeout = 0,
        .maxBackpressure = 0,
        .closeOnBackpressureLimit = false,
        .resetIdleTimeoutOnSend = false,
        .sendPingsAutomatically = false,
        .message = [self](auto* ws, std::string_view text, uWS::OpCode) {
            nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
            if (!j.is_object()) return;
            const std::string type = j.value("type", "");
            const std::string channel = j.value("channel", "");
            if (type == "subscribe") {
                ws->subscribe(channel);
                ws->send(nlohmann::json{{"type", "subscribed"}, {"channel", channel}}.dump(), uWS::OpCode::TEXT);
            } else if (type == "publish") {
                const std::string out = nlohmann::json{{"type", "message"}, {"channel", channel}, {"data", j["data"]}}.dump();
                self->publish(channel, out, uWS::OpCode::TEXT);
                ws->send(nlohmann::json{{"type", "published"}, {"channel", channel}}.dump(), uWS::OpCode::TEXT);
            }
        },
    });

    us_listen_socket_t* listening = nullptr;
    app.listen("127.0.0.1", port, [&](us_listen_socket_t* s) { listening = s; });
    if (!listening) {
        std::cerr << "herald-bench-uws: cannot listen on 127.0.0.1:" << port << std::endl;
        return 1;
    }

    // SIGTERM/SIGINT: a flag, seen by a 50 ms timer on the loop, which closes the listen socket
    // and every connection; the loop then has nothing left and run() returns.
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    struct stopper {
        uWS::App* app;
    };
    us_timer_t* timer = us_create_timer(reinterpret_cast<us_loop_t*>(uWS::Loop::get()), 0, sizeof(stopper));
    *static_cast<stopper*>(us_timer_ext(timer)) = stopper{self};
    us_timer_set(timer, [](us_timer_t* t) {
        if (!stop_requested) return;
        static_cast<stopper*>(us_timer_ext(t))->app->close();
        us_timer_close(t);
    }, 50, 50);

    std::cout << "port " << port << std::endl;
    app.run();
    return 0;
}
