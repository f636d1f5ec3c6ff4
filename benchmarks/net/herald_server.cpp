// herald's side of benchmarks/net: a herald::basic_server with the WebSocket and long-poll
// transports and nothing else. Publishes come from clients (a `publish` frame over the
// WebSocket, or POST /herald/publish), as they do to the peers.
//   herald-bench-server --port N [--threads N]   (prints "port N", runs until SIGTERM/SIGINT)
#include <herald/server.hpp>
#include <herald/transport/longpoll.hpp>
#include <herald/transport/websocket.hpp>

#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>

int main(int argc, char** argv) {
    CLI::App app{"herald benchmark server"};
    herald::server_options opts;
    opts.port = 9001;
    app.add_option("--port", opts.port);
    app.add_option("--threads", opts.threads);
    app.add_option("--queue", opts.hub.session.max_queued_messages);
    CLI11_PARSE(app, argc, argv);

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    // Every load-generator connection comes from 127.0.0.1: the per-address cap (256, against
    // one hostile client) would refuse the 1000-subscriber scenarios, and 10,000 idle ones
    // pass max_connections. Off here, as behind a proxy: the descriptor limit only.
    opts.max_connections_per_address = 0;
    opts.max_connections = 0;
    herald::basic_server<herald::transport::websocket, herald::transport::longpoll> server(opts);
    server.options_of<herald::transport::longpoll>().max_held_polls = 100000;
    // The load generator's publisher connection publishes as a client: everything open, on purpose.
    server.set_authorizer(herald::insecure_allow_all{});
    server.start();
    std::cout << "port " << server.port() << std::endl;
    int sig = 0;
    sigwait(&stop_signals, &sig);
    server.stop(std::chrono::milliseconds(0));
    return 0;
}
