// A consumer of the installed herald::postgres: headers, libpq and Asio found through
// heraldConfig.cmake. It makes an outbox consumer and never starts it.
#include <herald.hpp>
#include <herald/outbox/postgres.hpp>

int main() {
    asio::io_context io;
    herald::hub hub;
    herald::outbox::postgres outbox(io, hub, herald::outbox::postgres::options::at("host=127.0.0.1 port=1"));
    return outbox.state() == herald::outbox::postgres_state::stopped && !herald::outbox::postgres::schema().empty() ? 0 : 1;
}
