// A CMS that serves browsers: herald::server from an installed herald, started on a free port
// and stopped again.
#include <herald/server.hpp>

#include <iostream>

int main() {
    herald::server_options opts;
    opts.port = 0;
    herald::server server(opts);
    server.start();
    const bool listening = server.port() != 0;
    server.stop(std::chrono::milliseconds(0));
    std::cout << "server consumer listened on a port: " << (listening ? "yes" : "no") << '\n';
    return listening ? 0 : 1;
}
