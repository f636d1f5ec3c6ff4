// herald with WebSocket switched off by its flag: the same server and client, long-poll only.
// For networks known to break WebSockets; the browser never tries one (no console error).
// Open http://127.0.0.1:8082/ and watch the counter; the state shows "open longpoll".
#include <herald/server.hpp>

#include <chrono>
#include <iostream>
#include <thread>

int main() {
    herald::server_options opts;
    opts.port = 8082;
    herald::server server(opts);  // both transports compiled in ...
    herald::rule_authorizer auth;  // anyone may follow the counter; no client publishes
    auth.allow(herald::action::subscribe, "counter");
    server.set_authorizer(auth);
    server.options_of<herald::transport::websocket>().enabled = false;  // ... one switched off
    server.handle("/", [](const herald::http_request&) {
        herald::http_response r;
        r.content_type = "text/html; charset=utf-8";
        r.body = R"html(<!doctype html><meta charset="utf-8"><title>herald long-poll</title>
<p>Counter: <b id="n">…</b> <small id="state"></small></p>
<script type="module">
  import { connect } from '/herald/client.js';
  const herald = connect();
  herald.on('state', (s) => { document.getElementById('state').textContent = `${s.state} ${s.transport ?? ''}`; });
  herald.subscribe('counter', (m) => { document.getElementById('n').textContent = m.n; });
</script>)html";
        return r;
    });
    server.start();
    std::cout << "http://127.0.0.1:" << server.port() << "/  (long-poll only; Ctrl-C stops)" << std::endl;
    for (long n = 1;; ++n) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        server.publish("counter", "{\"n\":" + std::to_string(n) + "}");
    }
}
