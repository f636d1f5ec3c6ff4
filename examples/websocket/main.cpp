// The smallest herald server over WebSocket: publishes the time every second to "clock";
// the page at http://127.0.0.1:8081/ shows it live.
#include <herald/server.hpp>

#include <chrono>
#include <ctime>
#include <iostream>
#include <thread>

static const char* page = R"html(<!doctype html>
<meta charset="utf-8"><title>herald clock</title>
<p>Server time: <b id="time">…</b> <small id="state"></small></p>
<script type="module">
  import { connect } from '/herald/client.js';
  const herald = connect();
  herald.on('state', ({ state, transport }) => { document.getElementById('state').textContent = `${state} ${transport ?? ''}`; });
  herald.subscribe('clock', (tick) => { document.getElementById('time').textContent = tick.time; });
</script>)html";

int main() {
    herald::server_options opts;
    opts.port = 8081;
    herald::websocket_server server(opts);
    // Anyone may watch the clock; no client publishes (only this process does, to any channel).
    herald::rule_authorizer auth;
    auth.allow(herald::action::subscribe, "clock");
    server.set_authorizer(auth);
    server.handle("/", [](const herald::http_request&) {
        herald::http_response r;
        r.content_type = "text/html; charset=utf-8";
        r.body = page;
        return r;
    });
    server.start();
    std::cout << "http://127.0.0.1:" << server.port() << "/  (Ctrl-C stops)" << std::endl;
    for (;;) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        const std::time_t now = std::time(nullptr);
        char text[32];
        std::strftime(text, sizeof text, "%H:%M:%S", std::localtime(&now));
        server.publish("clock", std::string("{\"time\":\"") + text + "\"}");
    }
}
